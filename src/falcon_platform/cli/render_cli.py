"""`falcon render prometheus|grafana [--out DIR]`: outputs rendered from the spec.

Without ``--out`` the text goes to stdout (pipe it anywhere); with ``--out`` each file
is written atomically (temp file + rename) and its path printed on stderr::

    falcon render prometheus --out deploy/prometheus
    falcon render grafana --spec falcon.yaml > dashboard.json
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from falcon_platform.config.spec import Spec

app = typer.Typer(
    help="Render Prometheus rules and the Grafana dashboard from the spec.", no_args_is_help=True
)

SpecOpt = Annotated[
    Path | None,
    typer.Option(
        "--spec", help="Spec file (default: falcon.yaml, or the built-in defaults if absent)."
    ),
]
OutOpt = Annotated[
    Path | None,
    typer.Option("--out", help="Directory to write into (created if missing); stdout if omitted."),
]


def _emit(
    render: Callable[[Spec], dict[str, str]], spec_path: Path | None, out: Path | None
) -> None:
    from falcon_platform.config.specfile import load_spec
    from falcon_platform.files import write_atomic

    files = render(load_spec(spec_path))
    if out is None:
        for text in files.values():
            typer.echo(text, nl=False)
        return
    stderr = Console(stderr=True, highlight=False)
    for name, text in files.items():
        write_atomic(out / name, text)
        stderr.print(f"wrote {out / name}")


@app.command()
def prometheus(spec: SpecOpt = None, out: OutOpt = None) -> None:
    """Prometheus rule file: SLI recording rules, burn-rate and runtime alerts."""
    from falcon_platform.render.prometheus import render_prometheus

    _emit(render_prometheus, spec, out)


@app.command()
def grafana(spec: SpecOpt = None, out: OutOpt = None) -> None:
    """Grafana dashboard JSON (import it; pick the Prometheus data source)."""
    from falcon_platform.render.grafana import render_grafana

    _emit(render_grafana, spec, out)
