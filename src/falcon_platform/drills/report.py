"""A drill's report as Markdown (pure text; :mod:`records` writes it)::

text = render_markdown(outcome, drill)
"""

from __future__ import annotations

from falcon_platform.drills.model import DrillDef, DrillOutcome
from falcon_platform.events.journal import format_ts


def _s(x: float | None) -> str:
    return "—" if x is None else f"{x:.1f} s"


def render_markdown(outcome: DrillOutcome, drill: DrillDef | None) -> str:
    o = outcome
    lines = [
        f"# Drill `{o.name}`: {o.status.upper().replace('_', ' ')}",
        "",
    ]
    if o.reason:
        lines += [f"> {o.reason}", ""]
    if drill is not None:
        lines += [
            f"- **What**: {drill.summary}",
            f"- **Steady state**: {drill.hypothesis}",
            f"- **Injection**: {drill.injection}",
        ]
    lines += [
        f"- **Target**: {o.target or '—'} (profile {o.profile or '—'})",
        f"- **Started**: {format_ts(o.started_at)}; took {max(0.0, o.finished_at - o.started_at):.1f} s",
        "",
        "| measure | value |",
        "|---|---|",
        f"| time to detect | {_s(o.detection_s)} |",
        f"| time to mitigate | {_s(o.mitigation_s)} |",
        f"| requests failed | {o.failed} of {o.requests} |",
        f"| request-log rows lost | {'not measured' if o.rows_lost is None else o.rows_lost} |",
    ]
    for key, value in o.measured.items():
        if not key.startswith("side_by_side"):
            lines.append(f"| {key} | {value} |")
    if "side_by_side_markdown" in o.measured:
        lines += ["", "## Beside the seed incident", "", str(o.measured["side_by_side_markdown"])]
    if o.checks:
        lines += ["", "## Expectations", "", "| | expectation | measured |", "|---|---|---|"]
        lines += [f"| {'✅' if c.met else '❌'} | {c.text} | {c.measured} |" for c in o.checks]
    if o.timeline:
        lines += ["", "## Timeline (UTC)", "", "| time | +s | what |", "|---|---|---|"]
        t0 = o.injected_at or o.started_at
        for m in sorted(o.timeline, key=lambda m: m.ts):
            lines.append(f"| {format_ts(m.ts)} | {m.ts - t0:+.1f} | {m.what} |")
    return "\n".join(lines) + "\n"
