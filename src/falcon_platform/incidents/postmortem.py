"""The postmortem in the seed template's shape, rendered from a bundle (pure), and written
with its graphs (atomic)::

    text = render_markdown(bundle)                     # str; graphs referenced as files
    page = render_html(bundle, render_graphs(bundle))  # one self-contained page
    paths = write_postmortem(bundle, Path("pm/"))      # .md, .html, graphs (.png/.svg), bundle
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2

from falcon_platform.files import write_atomic
from falcon_platform.incidents.graphs import GRAPHS


def _utc(ts: float | None, fmt: str = "%Y-%m-%d %H:%M:%S UTC") -> str:
    return datetime.fromtimestamp(ts, UTC).strftime(fmt) if ts is not None else "-"


def span(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    total = max(0, round(seconds))
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)

    def unit(n: int, word: str) -> str:
        return f"{n} {word}{'' if n == 1 else 's'}"

    if h:
        return f"{unit(h, 'hour')} {unit(m, 'minute')}"
    return f"{unit(m, 'minute')} {unit(s, 'second')}" if m else unit(s, "second")


def _pct(x: float) -> str:
    return f"{x:.2%}"


def _e_md(text: object) -> str:
    """Table-safe Markdown: pipes and newlines would break a row."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def suggest_actions(bundle: dict[str, Any]) -> list[dict[str, str]]:
    """Action items Falcon can suggest from what it saw (pure)."""
    kinds = {r["kind"] for r in bundle["timeline"]}
    events = " ".join(r["event"] for r in bundle["timeline"])
    inc = bundle["incident"]
    out: list[dict[str, str]] = []
    if "OOMKilled" in events:
        out += [
            {
                "category": "Prevent",
                "description": "Lower workers.memory_soft_limit_percent so leaking workers are "
                "recycled before the kernel kills them",
            },
            {
                "category": "Detect",
                "description": "Gate releases on a load test with memory_slope_mb_per_min "
                "(falcon loadtest run) long enough to reach the limit",
            },
        ]
    if "service_unavailable" in kinds:
        out.append(
            {
                "category": "Respond",
                "description": "No worker was ready: review workers.count and restart back-off "
                "so one worker survives the fault",
            }
        )
    if "crash_loop_entered" in kinds:
        out.append(
            {
                "category": "Prevent",
                "description": "Crash loop: make the release gate boot the release before it "
                "takes traffic",
            }
        )
    if kinds & {"gate_override", "gate_skipped"}:
        out.append(
            {
                "category": "Prevent",
                "description": "A gate was overridden or skipped: add a policy rule that "
                "refuses it for this kind of change",
            }
        )
    if "rollout_aborted" in kinds:
        out.append(
            {
                "category": "Long-term",
                "description": "The canary caught it: add the failing check to the "
                "pre-deploy gate so it is caught before any traffic",
            }
        )
    ttd = inc["detected_at"] - inc["started_at"]
    if ttd > 120:
        out.append(
            {
                "category": "Detect",
                "description": f"Detection took {span(ttd)}: shorten the alert's `for` "
                "or add an alert on the first symptom",
            }
        )
    return out


def _summary(bundle: dict[str, Any]) -> str:
    inc, im = bundle["incident"], bundle["impact"]
    releases = ", ".join(inc["releases"]) or "the running release"
    text = (
        f"On {_utc(inc['started_at'], '%Y-%m-%d at %H:%M UTC')}, {bundle['service']} "
        f"({releases}): {inc['title']}. "
        f"For {span(im['duration_s'])}, {im['failed']} of {im['requests']} requests failed "
        f"({_pct(im['error_rate'])}), affecting {im['clients_affected']} of {im['clients']} "
        f"clients. Falcon declared {inc['id']} ({inc['severity']}) "
        f"{span(inc['detected_at'] - inc['started_at'])} after the first symptom"
    )
    if inc.get("mitigated_at"):
        text += (
            f"; it was mitigated {span(inc['mitigated_at'] - inc['started_at'])} after the start"
            f" by {inc.get('mitigated_by') or '?'}"
        )
    return text + ". The root cause and the fix: _(human)_."


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("falcon_platform.incidents", "templates"),
        autoescape=False,  # noqa: S701 -- Markdown, not HTML; table cells go through e_md
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters["e_md"] = _e_md
    return env


def render_markdown(bundle: dict[str, Any], *, graph_prefix: str | None = None) -> str:
    """The postmortem (Markdown) of ``bundle``; graphs referenced as ``<prefix><name>.png``."""
    inc, im, window = bundle["incident"], bundle["impact"], bundle["window"]
    prefix = graph_prefix if graph_prefix is not None else f"{inc['id']}-"
    timeline = bundle["timeline"]
    excerpt_kinds = {"worker_exited", "alert_firing", "alert_resolved", "service_unavailable"}
    excerpt = [
        json.dumps(
            {
                "time": _utc(r["ts"], "%Y-%m-%dT%H:%M:%SZ"),
                "kind": r["kind"],
                "worker": r["worker"],
                "release": r["release"],
                "event": r["event"],
            },
            sort_keys=True,
        )
        for r in timeline
        if r["kind"] in excerpt_kinds or r["kind"].startswith("incident_")
    ][:20]

    def since_start(ts: float | None) -> str:
        return span(ts - inc["started_at"]) if ts is not None else "-"

    return (
        _environment()
        .get_template("postmortem.md.j2")
        .render(
            inc=inc,
            im=im,
            window=window,
            timeline=timeline,
            decisions=[r for r in timeline if r["decision"]],
            root_cause=bundle["root_cause"],
            resolution=bundle["resolution"],
            actions=suggest_actions(bundle),
            tracked=bundle.get("actions", []),
            overdue=bundle.get("overdue_actions", []),
            graphs=[(name, title) for name, title in GRAPHS],
            graph_prefix=prefix,
            log_excerpt=excerpt,
            related=bundle["related"],
            queries=bundle["queries"],
            method=bundle["method"],
            generated=_utc(bundle["generated_at"]),
            start_utc=_utc(inc["started_at"], "%Y-%m-%d %H:%M UTC"),
            day=_utc(inc["started_at"], "%Y-%m-%d"),
            duration=span(im["duration_s"]),
            summary=_summary(bundle),
            ttd=since_start(inc["detected_at"]),
            tta=since_start(inc.get("acknowledged_at")),
            ttm=since_start(inc.get("mitigated_at")),
            ttr=since_start(inc.get("resolved_at")),
            mitigation_line=f"Mitigated by {inc.get('mitigated_by') or '-'} at "
            f"{_utc(inc.get('mitigated_at'))}",
            window_text=f"{_utc(window['start'])} to {_utc(window['end'])} "
            f"(start: first related signal; end: mitigation, else resolution, else now)",
            pct=_pct,
        )
    )


HTML_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem;
       line-height: 1.45; color: #222; }}
table {{ border-collapse: collapse; margin: 0.8rem 0; }}
th, td {{ border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: left; vertical-align: top; }}
th {{ background: #f4f4f4; }}
code, pre {{ background: #f6f6f6; }} pre {{ padding: 0.6rem; overflow-x: auto; }}
img {{ max-width: 100%; }} blockquote {{ border-left: 4px solid #ddd; margin: 0; padding-left: 1rem; }}
</style></head><body>
{body}
</body></html>
"""


def render_html(bundle: dict[str, Any], graphs: dict[str, bytes]) -> str:
    """The same postmortem as one self-contained HTML page (graphs inlined as PNG data URIs).

    Markdown to HTML with markdown-it-py (already installed with Rich), raw HTML disabled."""
    import base64
    import html

    from markdown_it import MarkdownIt

    prefix = f"{bundle['incident']['id']}-"
    text = render_markdown(bundle, graph_prefix=prefix)
    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(text)
    for name, data in graphs.items():
        if name.endswith(".png"):
            uri = "data:image/png;base64," + base64.b64encode(data).decode()
            body = body.replace(f'src="{prefix}{name}"', f'src="{uri}"')
    title = html.escape(f"{bundle['incident']['id']}: {bundle['incident']['title']}")
    return HTML_PAGE.format(title=title, body=body)


def write_postmortem(
    bundle: dict[str, Any], out_dir: Path, *, graphs: dict[str, bytes] | None = None
) -> list[Path]:
    """Write ``<id>.md``, ``<id>.html`` (self-contained), the graphs and ``<id>.bundle.json``
    into ``out_dir`` (each file atomically)."""
    from falcon_platform.incidents.graphs import render_graphs

    out_dir.mkdir(parents=True, exist_ok=True)
    iid = bundle["incident"]["id"]
    files = graphs if graphs is not None else render_graphs(bundle)
    written: list[Path] = []
    for name, data in sorted(files.items()):
        path = out_dir / f"{iid}-{name}"
        write_atomic(path, data)
        written.append(path)
    bundle_path = out_dir / f"{iid}.bundle.json"
    write_atomic(bundle_path, json.dumps(bundle, indent=1, sort_keys=True).encode())
    md = out_dir / f"{iid}.md"
    write_atomic(md, render_markdown(bundle).encode())
    page = out_dir / f"{iid}.html"
    write_atomic(page, render_html(bundle, files).encode())
    return [md, page, bundle_path, *written]
