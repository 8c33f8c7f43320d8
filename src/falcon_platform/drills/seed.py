"""The seed incident's own numbers, and Falcon's beside them (pure).

The seed (``/work/shared/seed/POSTMORTEM_TEMPLATE.md``): a release turned on a debug flag that
kept 5 MB per request; at ~100 RPS every worker hit its 1 GB limit in ~2 minutes and was
OOM-killed, again and again; 47 minutes of 100% failures; alerts after 5 minutes; a rollback
by hand. ``side_by_side`` puts what a drill measured in each act next to that::

    rows = side_by_side({"refused by the gate": act1, "forced past the gate": act2})
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ActNumbers:
    """What one act of the replay measured (None: did not happen / not measured)."""

    impact_s: float | None  # first failed request -> last failed request
    failed: int
    total: int
    detect_s: float | None  # first traffic on the bad release -> Falcon noticed
    mitigate_s: float | None  # first traffic on the bad release -> back on the good release
    oom_kills: int
    manual_steps: str
    postmortem: str | None = None


SEED_ROWS: dict[str, str] = {
    "duration of user impact": "47 min",
    "share of requests failed": "100%",
    "time to detect": "5 min (alerts, then paged)",
    "time to mitigate": "25 min (rollback ordered 14:45, healthy 14:55)",
    "OOM kills": "every worker, repeatedly",
    "manual steps": "diagnose by hand (10 min), roll back by hand",
    "requests affected": "~50,000",
    "postmortem": "written by hand within 48 h",
}


def _dur(s: float | None) -> str:
    if s is None:
        return "—"
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min"


def falcon_cells(act: ActNumbers) -> dict[str, str]:
    share = f"{act.failed / act.total:.2%}" if act.total else "—"
    return {
        "duration of user impact": "0 s" if act.failed == 0 else _dur(act.impact_s),
        "share of requests failed": f"{share} ({act.failed} of {act.total})",
        "time to detect": _dur(act.detect_s),
        "time to mitigate": _dur(act.mitigate_s),
        "OOM kills": str(act.oom_kills),
        "manual steps": act.manual_steps,
        "requests affected": str(act.failed),
        "postmortem": act.postmortem or "—",
    }


def side_by_side(acts: Mapping[str, ActNumbers]) -> list[list[str]]:
    """Rows ``[measure, seed, act 1, act 2, ...]`` with a header row first."""
    cells = {name: falcon_cells(act) for name, act in acts.items()}
    rows = [["", "seed incident", *(f"Falcon: {name}" for name in acts)]]
    for measure, seed in SEED_ROWS.items():
        rows.append([measure, seed, *(cells[name][measure] for name in acts)])
    return rows


def markdown_table(rows: list[list[str]]) -> str:
    head, *body = rows
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    return "\n".join(lines) + "\n"
