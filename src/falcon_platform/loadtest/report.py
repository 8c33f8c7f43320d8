"""A self-contained HTML report of a run: latency, rate and memory plots embedded as PNG.

``render_report(result) -> str`` returns the page (generators return text; the CLI writes it
with ``files.write_atomic``). Readable offline: no script, no external stylesheet or image::

    write_atomic(Path("run.html"), render_report(result))
"""

from __future__ import annotations

import base64
import io
import math
from typing import Any

from jinja2 import Environment

from falcon_platform.loadtest.capacity import CapacitySearch
from falcon_platform.loadtest.result import LoadResult


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _figures(result: LoadResult) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")  # no display; idempotent
    from matplotlib.figure import Figure  # Figure, not pyplot: no global state

    plots: list[tuple[str, str]] = []
    ts = [s.t + 0.5 for s in result.series]

    fig = Figure(figsize=(9, 3.2))
    ax = fig.subplots()
    for name, label in (("p50_ms", "p50"), ("p99_ms", "p99"), ("max_ms", "max")):
        ys = [getattr(s, name) if getattr(s, name) is not None else math.nan for s in result.series]
        ax.plot(ts, ys, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("seconds (by scheduled start)")
    ax.set_ylabel("latency (ms)")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    plots.append(("Latency over time (from each request's scheduled start)", _png(fig)))

    fig = Figure(figsize=(9, 3.2))
    ax = fig.subplots()
    ax.plot(ts, [s.target for s in result.series], label="target", linestyle="--")
    ax.plot(ts, [s.sent for s in result.series], label="sent")
    ax.plot(ts, [s.ok for s in result.series], label="2xx")
    ax.plot(ts, [s.errors for s in result.series], label="errors")
    ax.plot(ts, [s.dropped for s in result.series], label="dropped")
    ax.set_xlabel("seconds")
    ax.set_ylabel("requests per second")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    plots.append(("Rate: target, sent, answered, errors and drops", _png(fig)))

    workers = [w for w in result.server.workers if w.samples]
    if workers:
        fig = Figure(figsize=(9, 3.2))
        ax = fig.subplots()
        for w in workers:
            xs = [t for t, _ in w.samples]
            label = w.worker + (f" ({w.fit.describe()})" if w.fit else "")
            ax.plot(xs, [mb for _, mb in w.samples], marker=".", label=label)
            if w.limit_mb:
                ax.axhline(w.limit_mb, color="red", linestyle=":", linewidth=1)
        ax.set_xlabel("seconds")
        ax.set_ylabel("memory (MB, as the limit measures it)")
        ax.legend(loc="upper left", fontsize="small")
        ax.grid(alpha=0.3)
        plots.append(("Memory per worker (dotted: the limit)", _png(fig)))
    return plots


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Falcon load test: {{ title }}</title>
<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 980px; color: #222; }
table { border-collapse: collapse; margin: 0.6em 0 1.4em; }
td, th { border: 1px solid #ccc; padding: 3px 9px; text-align: right; }
th { background: #f4f4f4; } td.l, th.l { text-align: left; }
.pass { color: #0a7a2f; font-weight: 600; } .fail { color: #b00020; font-weight: 600; }
.warn { background: #fff4d6; padding: 6px 10px; border-left: 4px solid #e0a800; }
</style></head><body>
<h1>Falcon load test: {{ title }}</h1>
<p>{{ summary }}</p>
{% for w in warnings %}<p class="warn">{{ w }}</p>{% endfor %}
{% if verdicts %}<h2>Thresholds: <span class="{{ 'pass' if passed else 'fail' }}">{{ 'passed' if passed else 'FAILED' }}</span></h2>
<table><tr><th class="l">threshold</th><th>measured</th><th>verdict</th></tr>
{% for v in verdicts %}<tr><td class="l">{{ v.threshold }}</td><td>{{ v.shown() }}</td>
<td class="{{ 'pass' if v.passed else 'fail' }}">{{ 'pass' if v.passed else 'FAIL' }}</td></tr>{% endfor %}
</table>{% endif %}
<h2>Latency (ms)</h2>
<table><tr><th class="l">measured from</th>{% for p in pct_names %}<th>{{ p }}</th>{% endfor %}</tr>
{% for label, row in latency_rows %}<tr><td class="l">{{ label }}</td>{% for v in row %}<td>{{ v }}</td>{% endfor %}</tr>{% endfor %}
</table>
<h2>Requests</h2>
<table>{% for k, v in counts %}<tr><th class="l">{{ k }}</th><td>{{ v }}</td></tr>{% endfor %}</table>
{% if workers %}<h2>Server side (control API)</h2>
<table><tr><th class="l">worker</th><th>slope MB/min</th><th>± stderr</th><th>last MB</th><th>max MB</th>
<th>limit MB</th><th>time to limit</th><th>restarts</th><th>OOM kills</th></tr>
{% for w in workers %}<tr><td class="l">{{ w[0] }}</td>{% for v in w[1:] %}<td>{{ v }}</td>{% endfor %}</tr>{% endfor %}
</table>{% else %}<p>Server side: {{ server_why }}</p>{% endif %}
{% if capacity %}<h2>Capacity search</h2><p>{{ capacity }}</p>
<table><tr><th>rate</th><th>achieved</th><th>p50</th><th>p95</th><th>p99</th><th>p99.9</th><th>failures</th><th class="l">SLO</th></tr>
{% for row in curve %}<tr>{% for v in row[:-1] %}<td>{{ v }}</td>{% endfor %}<td class="l">{{ row[-1] }}</td></tr>{% endfor %}
</table>{% endif %}
{% for caption, png in plots %}<h2>{{ caption }}</h2>
<img alt="{{ caption }}" src="data:image/png;base64,{{ png }}">{% endfor %}
</body></html>
"""


def _fmt(x: float | None, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, float) and math.isinf(x):
        return "never"
    return f"{x:.{digits}f}"


def render_report(
    result: LoadResult, *, title: str = "", capacity: CapacitySearch | None = None
) -> str:
    """The HTML page for ``result`` (and the capacity curve, when given)."""
    pct_names = ["p50", "p90", "p95", "p99", "p99.9", "max", "mean"]
    fields = ["p50_ms", "p90_ms", "p95_ms", "p99_ms", "p999_ms", "max_ms", "mean_ms"]
    latency_rows = [
        (label, [_fmt(getattr(p, f)) for f in fields])
        for label, p in (
            ("scheduled start (corrected)", result.latency),
            ("actual send", result.service),
            ("generator lag", result.lag),
        )
    ]
    counts = [
        ("target rate (req/s)", _fmt(result.target_rps)),
        ("achieved rate (req/s)", _fmt(result.achieved_rps)),
        ("scheduled", result.scheduled),
        ("sent", result.sent),
        ("dropped (all connections busy)", result.dropped),
        ("error ratio", f"{result.error_ratio:.5f}"),
        ("statuses", ", ".join(f"{k}: {v}" for k, v in sorted(result.statuses.items())) or "–"),
        (
            "transport errors",
            ", ".join(f"{k}: {v}" for k, v in result.transport_errors.items()) or "none",
        ),
    ]
    workers = [
        (w.worker, _fmt(w.fit.slope_mb_per_min) if w.fit else "–",
         _fmt(w.fit.stderr_mb_per_min) if w.fit else "–", _fmt(w.last_mb, 1),
         _fmt(w.max_mb, 1), _fmt(w.limit_mb, 0), _fmt(w.time_to_limit_min, 1) + " min"
         if not math.isinf(w.time_to_limit_min) else "never", w.restarts, w.oom_kills)
        for w in result.server.workers
    ]  # fmt: skip
    curve = []
    cap_text = ""
    if capacity is not None:
        cap = capacity.capacity_rps
        cap_text = (f"Highest rate at which the SLO ({capacity.slo}) held: "
                    f"{_fmt(cap, 1) if cap is not None else 'none of the rates tried'} req/s.")  # fmt: skip
        for s in capacity.curve():
            lat = s.result.latency
            curve.append((_fmt(s.rate, 1), _fmt(s.result.achieved_rps, 1), _fmt(lat.p50_ms),
                          _fmt(lat.p95_ms), _fmt(lat.p99_ms), _fmt(lat.p999_ms),
                          f"{s.to_dict()['failure_ratio']:.4f}",
                          "holds" if s.holds else f"broken: {s.why}"))  # fmt: skip
    summary = (
        f"{result.model}-model run against {result.target} ({result.endpoint}, {result.texts} "
        f"texts, {result.connections} connections): {result.sent} requests in "
        f"{result.elapsed_s:.1f} s, planned {result.planned_s:.1f} s."
    )
    env = Environment(autoescape=True)
    return env.from_string(_PAGE).render(
        title=title or result.target,
        summary=summary,
        warnings=result.warnings,
        verdicts=result.verdicts,
        passed=result.passed,
        pct_names=pct_names,
        latency_rows=latency_rows,
        counts=counts,
        workers=workers,
        server_why=result.server.why,
        capacity=cap_text,
        curve=curve,
        plots=_figures(result),
    )
