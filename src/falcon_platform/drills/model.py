"""What a drill is (data) and what one run of it measured (plain data, JSON-ready).

A drill is a Chaos-Toolkit-style experiment: a steady-state hypothesis checked before the
injection and after the restore, one injection, and expectations with time bounds::

    DrillDef("kill-worker", ..., expectations=(Expectation("replaced", "...", bound_s=30),))
    DrillOutcome(...).status in ("passed", "failed", "not_applicable", "refused")
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from falcon_platform.events.journal import format_ts

Status = Literal["passed", "failed", "not_applicable", "refused"]
# What a drill needs from the deployment before it can run at all.
Need = Literal["signals", "faults", "redis", "postgres", "releases", "incidents"]


@dataclass(frozen=True, slots=True)
class Expectation:
    """One promise the drill checks: ``key`` is stable (reports, tests), ``text`` is for people."""

    key: str
    text: str
    bound_s: float | None = None  # a time bound, when the promise has one


@dataclass(frozen=True, slots=True)
class DrillDef:
    """A drill as data: what must hold, what is done, what is expected."""

    name: str
    summary: str
    hypothesis: str  # the steady state, checked before injecting and after restoring
    injection: str
    expectations: tuple[Expectation, ...]
    needs: tuple[Need, ...] = ()
    seconds: float = 20.0  # the longest the drill waits for its expectations after injecting
    rps: float | None = None  # its own paced load (the seed's ~100 RPS), else the CLI's --rps

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "summary": self.summary,
            "hypothesis": self.hypothesis,
            "injection": self.injection,
            "expectations": [asdict(e) for e in self.expectations],
            "needs": list(self.needs),
            "seconds": self.seconds,
            "rps": self.rps,
        }


@dataclass(frozen=True, slots=True)
class Check:
    """One expectation, judged: met or not, with what was measured."""

    key: str
    text: str
    met: bool
    measured: str

    def line(self) -> str:
        return f"{'met' if self.met else 'NOT MET'}: {self.text} (measured: {self.measured})"


@dataclass(frozen=True, slots=True)
class Moment:
    """One line of a drill's timeline (wall-clock epoch seconds)."""

    ts: float
    what: str

    def to_dict(self) -> dict[str, Any]:
        return {"ts": round(self.ts, 3), "time": format_ts(self.ts), "what": self.what}


@dataclass(slots=True)
class DrillOutcome:
    """One run of one drill."""

    name: str
    status: Status
    reason: str = ""  # why not applicable / refused, or which expectation failed
    target: str = ""
    profile: str = ""
    started_at: float = 0.0
    finished_at: float = 0.0
    injected_at: float | None = None
    detection_s: float | None = None  # injection -> the platform noticed (event or alert)
    mitigation_s: float | None = None  # injection -> users no longer affected
    requests: int = 0
    failed: int = 0
    rows_lost: int | None = None  # 2xx answers without exactly one request-log row
    checks: list[Check] = field(default_factory=list)
    timeline: list[Moment] = field(default_factory=list)
    measured: dict[str, Any] = field(default_factory=dict)  # drill-specific numbers
    report_paths: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Passed or not applicable: nothing an operator must act on."""
        return self.status in ("passed", "not_applicable")

    def note(self, what: str, ts: float) -> None:
        self.timeline.append(Moment(ts, what))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "reason": self.reason,
            "target": self.target,
            "profile": self.profile,
            "started_at": round(self.started_at, 3),
            "finished_at": round(self.finished_at, 3),
            "duration_s": round(max(0.0, self.finished_at - self.started_at), 1),
            "injected_at": round(self.injected_at, 3) if self.injected_at else None,
            "detection_s": _r(self.detection_s),
            "mitigation_s": _r(self.mitigation_s),
            "requests": self.requests,
            "failed": self.failed,
            "rows_lost": self.rows_lost,
            "checks": [asdict(c) for c in self.checks],
            "timeline": [m.to_dict() for m in sorted(self.timeline, key=lambda m: m.ts)],
            "measured": self.measured,
            "reports": self.report_paths,
        }


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 2)
