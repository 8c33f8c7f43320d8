"""`falcon model ...`: train, info, verify.

falcon model train                      # into FALCON_HOME/models/<FALCON_MODEL_NAME>
falcon model train --out DIR --json     # report as JSON on stdout, progress on stderr
falcon model info --path DIR --json
falcon model verify --path DIR          # exit 0 if the model loads and checks out, 3 if not
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from falcon_platform.cli.consoles import stderr_console, stdout_console

if TYPE_CHECKING:
    from falcon_platform.model.artifact import ModelMetadata
    from falcon_platform.model.training import ProgressCallback

app = typer.Typer(help="Train, inspect and verify models.", no_args_is_help=True)

PathOpt = Annotated[
    Path | None,
    typer.Option(
        "--path", help="Model directory (default FALCON_MODEL_PATH or FALCON_HOME/models/NAME)."
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]


def _stdout() -> Console:
    return stdout_console()


def _stderr() -> Console:
    return stderr_console()


@contextlib.contextmanager
def training_progress(console: Console | None = None) -> Iterator[ProgressCallback]:
    """A Rich progress bar (on stderr) driven by training's progress callback.

    Also used by ``falcon up`` when it trains the default model on first start::

        with training_progress() as progress:
            ensure_model(settings, progress=progress)
    """
    bar = Progress(
        SpinnerColumn(),
        TextColumn("[bold]training model[/]"),
        BarColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=console or _stderr(),
        transient=False,
    )
    task = bar.add_task("starting", total=None)

    def update(step: str, completed: int, total: int) -> None:
        bar.update(task, description=step, completed=completed, total=total)

    with bar:
        yield update


def _default_model_path() -> Path:
    from falcon_platform.config.settings import load_settings

    return load_settings().resolved_model_path


@app.command()
def train(
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Output directory (default: the configured model path)."),
    ] = None,
    corpus: Annotated[
        Path | None,
        typer.Option("--corpus", help="CSV with text,label columns (default: shipped corpus)."),
    ] = None,
    json_output: JsonOpt = False,
) -> None:
    """Train the default model (deterministic) and print its held-out report."""
    from falcon_platform.config.settings import load_settings
    from falcon_platform.model.registry import train_and_save

    settings = load_settings()
    target = out if out is not None else settings.resolved_model_path
    with training_progress() as progress:
        metadata = train_and_save(
            target, name=settings.model_name, corpus_path=corpus, progress=progress
        )
    report = {"path": str(target), **metadata.model_dump(mode="json")}
    if json_output:
        typer.echo(json.dumps(report, indent=2))
        return
    _render_report(metadata, target)


@app.command()
def info(path: PathOpt = None, json_output: JsonOpt = False) -> None:
    """Show a model's metadata (no loading, no verification: see `falcon model verify`)."""
    from falcon_platform.model.artifact import read_metadata

    target = path if path is not None else _default_model_path()
    metadata = read_metadata(target)
    if json_output:
        typer.echo(json.dumps({"path": str(target), **metadata.model_dump(mode="json")}, indent=2))
        return
    _render_report(metadata, target)


@app.command()
def verify(path: PathOpt = None) -> None:
    """Load the model as a worker would (sha256, probes, trusted types, a test prediction),
    and check that its lean export and its skops artifact agree."""
    from falcon_platform.model.registry import verify_model

    target = path if path is not None else _default_model_path()
    model = verify_model(target)
    lean = model.metadata.get("lean")
    served = (
        f"served with NumPy only from {lean['file']}, probes equal to scikit-learn's"
        if isinstance(lean, dict)
        else "served through skops and scikit-learn (no lean export)"
    )
    _stdout().print(
        f"[green]ok[/] {model.name} {model.version} sha256={model.sha256} "
        f"labels={','.join(model.labels)} ({target}); {served}"
    )


def _render_report(metadata: ModelMetadata, path: Path) -> None:
    console = _stdout()
    summary = Table(title=f"model {metadata.name} {metadata.version}", show_header=False)
    summary.add_column(style="bold")
    summary.add_column(overflow="fold")
    metrics = metadata.metrics
    rows: list[tuple[str, Any]] = [
        ("path", path),
        ("sha256", metadata.sha256),
        ("data hash", metadata.data_hash or "-"),
        ("created (UTC)", metadata.created_at.isoformat()),
        ("labels", ", ".join(metadata.labels)),
    ]
    for key, label in (
        ("n_train", "train texts"),
        ("n_test", "held-out texts"),
        ("accuracy", "held-out accuracy"),
        ("macro_f1", "held-out macro-F1"),
        ("log_loss", "held-out log loss"),
        ("expected_calibration_error", "calibration error (ECE)"),
    ):
        if key in metrics:
            value = metrics[key]
            rows.append((label, f"{value:.4f}" if isinstance(value, float) else value))
    for key, value in rows:
        summary.add_row(key, str(value))
    console.print(summary)
    matrix = metrics.get("confusion_matrix")
    if isinstance(matrix, dict) and "labels" in matrix and "matrix" in matrix:
        table = Table(title="confusion matrix (rows: true, columns: predicted)")
        table.add_column("true \\ predicted", style="bold")
        for label in matrix["labels"]:
            table.add_column(str(label), justify="right")
        for label, counts in zip(matrix["labels"], matrix["matrix"], strict=False):
            table.add_row(str(label), *(str(count) for count in counts))
        console.print(table)
    per_class = metrics.get("per_class")
    if isinstance(per_class, dict):
        table = Table(title="per class (held-out)")
        for column in ("label", "precision", "recall", "f1", "support"):
            table.add_column(column, justify="left" if column == "label" else "right")
        for label, scores in per_class.items():
            table.add_row(
                str(label),
                *(f"{scores[key]:.3f}" for key in ("precision", "recall", "f1")),
                str(scores["support"]),
            )
        console.print(table)
