"""What the serving layer needs from a model: labels, identity, and batched probabilities."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt


class ServableModel(Protocol):
    name: str
    version: str
    sha256: str
    labels: tuple[str, ...]
    metadata: dict[str, Any]

    def predict_proba(self, texts: Sequence[str]) -> npt.NDArray[np.float64]:
        """Shape ``(len(texts), len(labels))``; each row sums to 1."""
        ...
