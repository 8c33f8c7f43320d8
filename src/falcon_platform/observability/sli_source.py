"""The SLI source interface: what alert evaluation, canary analysis and postmortems read.

The supervisor's SLI store (``runtime``) implements it from its once-a-second
scrapes of every worker; ``testing.FakeSLISource`` implements it in memory.
Series are named and labelled exactly as the Prometheus metrics in
``observability.names`` (counters cumulative, gauges as sampled, histogram
buckets as ``<name>_bucket`` with ``le``), so the local evaluator computes what
PromQL computes over the same data.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    labels: Mapping[str, str]
    samples: Sequence[tuple[float, float]] = field(
        default_factory=tuple
    )  # (epoch s, value), ascending


class SLISource(Protocol):
    def query(
        self,
        name: str,
        start: float,
        end: float,
        match: Mapping[str, str] | None = None,
    ) -> list[Series]:
        """Every series called ``name`` whose labels include ``match``, with samples in [start, end]."""
        ...
