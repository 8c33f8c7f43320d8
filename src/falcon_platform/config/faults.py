"""The syntax of ``FALCON_FAULTS`` (pure): which faults exist, their bounds, strict parsing.

Kept in ``config`` because the gate judges fault settings; ``chaos.faults`` acts on them::

    parse_faults("leak_mb_per_request=5,seed=7")   # ({"leak_mb_per_request": 5.0}, 7)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from falcon_platform.errors import ConfigError


@dataclass(frozen=True)
class FaultKind:
    """One accepted ``FALCON_FAULTS`` key: its bounds and what it does."""

    name: str
    low: float
    high: float
    integer: bool
    meaning: str

    def parse(self, raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(self._fix(f"{raw!r} is not a number")) from None
        if not math.isfinite(value) or not (self.low <= value <= self.high):
            raise ConfigError(self._fix(f"{raw} is out of range"))
        if self.integer and value != int(value):
            raise ConfigError(self._fix(f"{raw} is not a whole number"))
        return value

    def _fix(self, problem: str) -> str:
        kind = "a whole number" if self.integer else "a number"
        return (
            f"FALCON_FAULTS: {self.name}={problem}; write {kind} in "
            f"[{self.low:g}, {self.high:g}] ({self.meaning})"
        )


FAULT_KINDS: dict[str, FaultKind] = {
    k.name: k
    for k in (
        FaultKind("leak_mb_per_request", 0.001, 1024, False, "MB kept for ever per request"),
        FaultKind("latency_ms", 0.001, 60_000, False, "added latency per request"),
        FaultKind("error_ratio", 0.0001, 1, False, "share of requests answered 500"),
        FaultKind("crash_after", 1, 1e9, True, "exit non-zero after N requests"),
        FaultKind("cpu_burn_ms", 0.001, 60_000, False, "busy CPU per request, blocking the loop"),
    )
}
# Not a fault: makes error_ratio reproducible.
SEED_KEY = "seed"


def parse_faults(text: str) -> tuple[dict[str, float], int | None]:
    """``"leak_mb_per_request=5,error_ratio=0.2,seed=7"`` -> ({faults}, seed). Strict.

    Unknown keys, duplicates, missing ``=`` and values out of range raise ConfigError
    naming the fix; an empty string means no faults.
    """
    faults: dict[str, float] = {}
    seed: int | None = None
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        key, sep, raw = (s.strip() for s in item.partition("="))
        if not sep or not raw:
            raise ConfigError(
                f"FALCON_FAULTS: {item!r} has no value; write name=value, e.g. latency_ms=50"
            )
        if key == SEED_KEY:
            if not raw.isdigit():
                raise ConfigError(f"FALCON_FAULTS: seed={raw!r}; write a whole number, e.g. seed=7")
            seed = int(raw)
            continue
        kind = FAULT_KINDS.get(key)
        if kind is None:
            import difflib  # only on the error path

            prefixed = [k for k in FAULT_KINDS if k.startswith(key) or key.startswith(k)]
            close = prefixed or difflib.get_close_matches(key, FAULT_KINDS, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise ConfigError(
                f"FALCON_FAULTS: unknown fault {key!r}; {hint}accepted: "
                f"{', '.join(FAULT_KINDS)} (and seed)"
            )
        if key in faults:
            raise ConfigError(f"FALCON_FAULTS: {key} is given twice; keep one")
        faults[key] = kind.parse(raw)
    return faults, seed
