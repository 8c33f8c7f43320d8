"""The postmortem's graphs (matplotlib, PNG and SVG) from a bundle's ``series`` and markers.

Error ratio, p99 latency, request rate, and memory per worker against its limit, each with
vertical markers for deploy steps, alerts, kills and rollbacks, and the incident's window
shaded::

    files = render_graphs(bundle)          # {"error_ratio.png": b"...", "error_ratio.svg": ...}
"""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

GRAPHS = (
    ("error_ratio", "Error ratio (5xx / requests)"),
    ("p99_ms", "p99 latency (ms)"),
    ("rps", "Request rate (req/s)"),
    ("memory", "Memory per worker (MB) and limit"),
)
MARKER_STYLE = {
    "deploy": ("tab:blue", "--"),
    "alert": ("tab:orange", ":"),
    "kill": ("tab:red", "-"),
    "rollback": ("tab:green", "-."),
    "incident": ("black", ":"),
}


def _clock(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S")


def render_graphs(bundle: dict[str, Any]) -> dict[str, bytes]:
    """``{name.png: bytes, name.svg: bytes}`` for every graph (deterministic for one bundle)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    series = bundle["series"]
    window = bundle["window"]
    incident_id = bundle["incident"]["id"]
    origin = series["start"]
    out: dict[str, bytes] = {}
    with matplotlib.rc_context({"svg.hashsalt": "falcon", "font.size": 9}):
        for name, title in GRAPHS:
            fig, ax = plt.subplots(figsize=(8, 2.6), dpi=100)
            if name == "memory":
                for worker, points in series.get("memory", {}).items():
                    if points:
                        ax.plot(
                            [p[0] - origin for p in points],
                            [p[1] / 1e6 for p in points],
                            label=worker,
                            linewidth=1.2,
                        )
                limit = series.get("memory_limit_bytes")
                if limit:
                    ax.axhline(limit / 1e6, color="tab:red", linewidth=1, label="limit")
                if ax.get_legend_handles_labels()[0]:
                    ax.legend(loc="upper left", fontsize=7, ncols=4)
            else:
                t = [x - origin for x in series["t"]]
                ax.plot(t, series[name], color="tab:purple", linewidth=1.4)
                if name == "error_ratio":
                    ax.set_ylim(0, 1.05)
            ax.axvspan(
                window["start"] - origin, window["end"] - origin, color="tab:red", alpha=0.08
            )
            for m in bundle.get("markers", []):
                color, style = MARKER_STYLE.get(m["kind"], ("grey", ":"))
                ax.axvline(m["ts"] - origin, color=color, linestyle=style, linewidth=0.9)
            ax.set_title(f"{incident_id}: {title}", loc="left")
            ax.set_xlim(0, series["end"] - origin)
            ax.set_xlabel(f"seconds after {_clock(origin)} UTC (shaded: incident window)")
            ax.grid(alpha=0.3)
            fig.tight_layout()
            for fmt in ("png", "svg"):
                buffer = io.BytesIO()
                meta = {"Software": None} if fmt == "png" else {"Date": None, "Creator": None}
                fig.savefig(buffer, format=fmt, metadata=meta)
                out[f"{name}.{fmt}"] = buffer.getvalue()
            plt.close(fig)
    return out
