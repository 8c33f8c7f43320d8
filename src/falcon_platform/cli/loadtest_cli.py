"""`falcon loadtest`: open-model load tests with thresholds, and a capacity search.

    falcon loadtest run smoke                        # a profile from falcon.yaml (loadtest:)
    falcon loadtest run --rate 200 --duration 30s --threshold 'p99_ms < 50'
    falcon loadtest run --stages '30s:50,60s:200,30s:0' --json --out run.json --report run.html
    falcon loadtest capacity                         # highest rate at which the SLO holds
    falcon loadtest profiles

Exit codes: 0 every threshold passed, 99 a threshold failed (the failing lines on stderr),
others from the error tree (2 bad input, 5 the target does not answer).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, cast

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from falcon_platform.cli.consoles import stderr_console, stdout_console
from falcon_platform.cli.options import EnvFileOpt, ProfileOpt

if TYPE_CHECKING:
    from falcon_platform.config.settings import Settings
    from falcon_platform.loadtest.capacity import Step
    from falcon_platform.loadtest.result import LoadResult
    from falcon_platform.loadtest.run import Progress

THRESHOLDS_FAILED = 99  # k6's exit code for failed thresholds

app = typer.Typer(help="Load tests: open model, honest latency, server memory, thresholds.",
                  no_args_is_help=True)  # fmt: skip

TargetOpt = Annotated[
    str | None,
    typer.Option("--target", help="Base URL (default http://FALCON_HOST:FALCON_PORT)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
OutOpt = Annotated[Path | None, typer.Option("--out", help="Also write the JSON to this file.")]
ReportOpt = Annotated[
    Path | None, typer.Option("--report", help="Write a self-contained HTML report here.")
]
SpecOpt = Annotated[
    Path | None, typer.Option("--spec", help="falcon.yaml to read (default FALCON_SPEC_PATH).")
]


def _out() -> Console:
    return stdout_console()


def _err() -> Console:
    return stderr_console()


def _settings(profile: str | None = None, env_file: Path | None = None) -> Settings:
    from falcon_platform.cli.options import settings_for

    return settings_for(profile, env_file)


def _default_target(settings: Settings) -> str:
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    return f"http://{host}:{settings.port}"


def _ms(x: float | None) -> str:
    return "–" if x is None or math.isnan(x) else f"{x:.2f}"


# --- rendering (pure: data in, Rich renderables out) -------------------------------------------
def progress_line(p: Progress) -> str:
    """One plain line per second when stderr is not a terminal."""
    mem = " ".join(f"{w}={mb:.0f}MB" for w, mb in sorted(p.worker_memory_mb.items()))
    planned = "" if math.isinf(p.planned_s) else f"/{p.planned_s:.0f}s"
    return (f"t={p.elapsed_s:.0f}s{planned} target={p.target_rps:.0f}/s sent={p.sent_last_s}/s "
            f"p99={_ms(p.p99_last_s_ms)}ms errors={p.errors} dropped={p.dropped} "
            f"in_flight={p.in_flight} lag_p99={p.lag_p99_ms:.1f}ms {mem}").rstrip()  # fmt: skip


def progress_table(p: Progress) -> Table:
    table = Table(title="falcon loadtest", show_header=True, expand=False)
    for col in ("elapsed", "target/s", "sent/s", "p99 (last s)", "errors", "dropped",
                "in flight", "lag p99", "worker memory"):  # fmt: skip
        table.add_column(col, justify="right")
    planned = "" if math.isinf(p.planned_s) else f" / {p.planned_s:.0f}s"
    mem = ", ".join(f"{w} {mb:.0f} MB" for w, mb in sorted(p.worker_memory_mb.items())) or "–"
    table.add_row(f"{p.elapsed_s:.0f}s{planned}", f"{p.target_rps:.0f}", str(p.sent_last_s),
                  f"{_ms(p.p99_last_s_ms)} ms", str(p.errors), str(p.dropped), str(p.in_flight),
                  f"{p.lag_p99_ms:.1f} ms", mem)  # fmt: skip
    return table


def summary_renderable(result: LoadResult, name: str) -> Group:
    parts: list[Any] = []
    head = Table(title=f"load test: {name} — {result.model} model against {result.target}")
    for col in ("latency from", "p50", "p90", "p95", "p99", "p99.9", "max"):
        head.add_column(col, justify="right")
    for label, p in (("scheduled start", result.latency), ("actual send", result.service),
                     ("generator lag", result.lag)):  # fmt: skip
        head.add_row(label, *(_ms(getattr(p, f)) for f in
                              ("p50_ms", "p90_ms", "p95_ms", "p99_ms", "p999_ms", "max_ms")))  # fmt: skip
    parts.append(head)
    statuses = ", ".join(f"{k}: {v}" for k, v in sorted(result.statuses.items())) or "none"
    transport = ", ".join(f"{k}: {v}" for k, v in result.transport_errors.items()) or "none"
    parts.append(Text(
        f"rate: target {result.target_rps:.1f}/s, achieved {result.achieved_rps:.1f}/s "
        f"({result.achieved_rate_ratio:.2%}); sent {result.sent}, dropped {result.dropped}, "
        f"error ratio {result.error_ratio:.4%}\nstatuses: {statuses}; transport errors: "
        f"{transport}"))  # fmt: skip
    side = result.server
    if side.reachable:
        mem = Table(title="server side (control API)")
        for col in ("worker", "memory slope", "last MB", "limit MB", "time to limit",
                    "restarts", "OOM kills"):  # fmt: skip
            mem.add_column(col, justify="right")
        for w in side.workers:
            ttl = ("never" if math.isinf(w.time_to_limit_min)
                   else f"{w.time_to_limit_min:.1f} min")  # fmt: skip
            mem.add_row(w.worker, w.fit.describe() if w.fit else "too few samples",
                        _ms(w.last_mb), _ms(w.limit_mb), ttl, str(w.restarts), str(w.oom_kills))  # fmt: skip
        parts.append(mem)
        parts.append(Text(f"shed requests (503 overloaded): {side.shed_requests}; queue depth "
                          f"max {side.queue_depth_max:g}"))  # fmt: skip
    else:
        parts.append(Text(f"server side: {side.why}"))
    for warning in result.warnings:
        parts.append(Text(f"warning: {warning}", style="yellow"))
    if result.verdicts:
        th = Table(title="thresholds")
        for col in ("threshold", "measured", "verdict"):
            th.add_column(col)
        for v in result.verdicts:
            th.add_row(v.threshold, v.shown(), "[green]pass[/]" if v.passed else "[red]FAIL[/]")
        parts.append(th)
    return Group(*parts)


# --- shared shell ---------------------------------------------------------------------------
def _emit(result: LoadResult, name: str, as_json: bool, out: Path | None,
          report: Path | None) -> None:  # fmt: skip
    from falcon_platform.files import write_atomic

    payload = json.dumps({"profile": name, **result.to_dict()}, indent=2)
    if out is not None:
        write_atomic(out, payload + "\n")
    if report is not None:
        from falcon_platform.loadtest.report import render_report

        write_atomic(report, render_report(result, title=name))
    if as_json:
        typer.echo(payload)
    else:
        _out().print(summary_renderable(result, name))
    if not result.passed:
        err = _err()
        for v in result.failed:
            err.print(f"threshold failed: {v.threshold} (measured {v.shown()})")
        raise typer.Exit(THRESHOLDS_FAILED)


@app.command()
def run(
    profile: Annotated[str | None, typer.Argument(help="A profile of falcon.yaml's loadtest: section.")] = None,
    rate: Annotated[float | None, typer.Option("--rate", help="Constant arrival rate (req/s).")] = None,
    duration: Annotated[str | None, typer.Option("--duration", help="With --rate: 30s, 5m.")] = None,
    stages: Annotated[str | None, typer.Option("--stages", help="Ramps: '30s:50,60s:200,30s:0'.")] = None,
    target: TargetOpt = None,
    endpoint: Annotated[str | None, typer.Option("--endpoint", help="infer, batch or v2.")] = None,
    texts: Annotated[str | None, typer.Option("--texts", help="unique, repeated or corpus.")] = None,
    connections: Annotated[int | None, typer.Option("--connections", min=1, help="Cap on requests in flight; more are dropped.")] = None,
    timeout: Annotated[str | None, typer.Option("--timeout", help="Per request, e.g. 10s.")] = None,
    threshold: Annotated[list[str] | None, typer.Option("--threshold", help="'p99_ms < 50' (repeat; replaces the profile's).")] = None,
    closed_loop: Annotated[bool, typer.Option("--closed-loop", help="Users wait for each answer (hides stalls: for comparison only).")] = False,
    memory_warmup: Annotated[str | None, typer.Option("--memory-warmup", help="Leave memory samples before this out of the slope, e.g. 10s.")] = None,
    as_json: JsonOpt = False,
    out: OutOpt = None,
    report: ReportOpt = None,
    spec_path: SpecOpt = None,
    config_profile: ProfileOpt = None,
    env_file: EnvFileOpt = None,
) -> None:  # fmt: skip
    """Run a load test (a profile, or --rate/--duration, or --stages); exit 99 if a threshold fails."""
    from falcon_platform.cli.options import client_for
    from falcon_platform.config.spec import parse_duration
    from falcon_platform.config.specfile import load_spec
    from falcon_platform.errors import InvalidInputError
    from falcon_platform.loadtest.profiles import Overrides, resolve
    from falcon_platform.loadtest.run import run_load

    settings = _settings(config_profile, env_file)
    spec = load_spec(spec_path or settings.spec_path)
    try:
        over = Overrides(
            rate=rate,
            duration_s=parse_duration(duration) if duration is not None else None,
            stages=stages,
            endpoint=cast(Any, endpoint),
            texts=cast(Any, texts),
            connections=connections,
            timeout_s=parse_duration(timeout) if timeout is not None else None,
            thresholds=tuple(threshold) if threshold else None,
            closed_loop=closed_loop,
            memory_warmup_s=parse_duration(memory_warmup) if memory_warmup is not None else None,
        )
    except ValueError as exc:
        raise InvalidInputError(str(exc)) from None
    if endpoint is not None and endpoint not in ("infer", "batch", "v2"):
        raise InvalidInputError(f"--endpoint {endpoint!r}: choose infer, batch or v2")
    if texts is not None and texts not in ("unique", "repeated", "corpus"):
        raise InvalidInputError(f"--texts {texts!r}: choose unique, repeated or corpus")
    job = resolve(spec.loadtest, profile, over)
    url = target or _default_target(settings)
    err = _err()
    live_mode: Literal["live", "lines", "quiet"] = (
        "live" if err.is_terminal else "quiet" if as_json else "lines"
    )
    with client_for(settings, timeout=5.0) as control:
        if live_mode == "live":
            with Live(console=err, auto_refresh=False, transient=True) as live:
                result = run_load(job.plan, url, options=job.options, thresholds=job.thresholds,
                                  control=control, memory_warmup_s=job.memory_warmup_s,
                                  sample_interval_s=spec.loadtest.sample_interval,
                                  progress=lambda p: live.update(progress_table(p),
                                                                 refresh=True))  # fmt: skip
        else:

            def lines(p: Progress) -> None:
                if live_mode == "lines":
                    print(progress_line(p), file=sys.stderr, flush=True)

            result = run_load(job.plan, url, options=job.options, thresholds=job.thresholds,
                              control=control, sample_interval_s=spec.loadtest.sample_interval,
                              memory_warmup_s=job.memory_warmup_s, progress=lines)  # fmt: skip
    _emit(result, job.name, as_json, out, report)


@app.command()
def capacity(
    target: TargetOpt = None,
    start_rate: Annotated[float | None, typer.Option("--start-rate", help="First rate tried.")] = None,
    max_rate: Annotated[float | None, typer.Option("--max-rate", help="Never above this.")] = None,
    step_duration: Annotated[str | None, typer.Option("--step-duration", help="Per step, e.g. 10s.")] = None,
    max_steps: Annotated[int | None, typer.Option("--max-steps", min=2, help="Runs at most.")] = None,
    as_json: JsonOpt = False,
    out: OutOpt = None,
    report: ReportOpt = None,
    spec_path: SpecOpt = None,
    config_profile: ProfileOpt = None,
    env_file: EnvFileOpt = None,
) -> None:  # fmt: skip
    """Find the highest arrival rate at which the spec's SLO holds; print the knee's curve."""
    from falcon_platform.config.spec import CapacitySpec, parse_duration
    from falcon_platform.config.specfile import load_spec
    from falcon_platform.errors import InvalidInputError
    from falcon_platform.files import write_atomic
    from falcon_platform.loadtest.capacity import find_capacity

    settings = _settings(config_profile, env_file)
    spec = load_spec(spec_path or settings.spec_path)
    changes: dict[str, Any] = {"start_rate": start_rate, "max_rate": max_rate,
                               "max_steps": max_steps}  # fmt: skip
    try:
        if step_duration is not None:
            changes["step_duration"] = parse_duration(step_duration)
        cfg = CapacitySpec.model_validate(
            {
                **spec.loadtest.capacity.model_dump(),
                **{k: v for k, v in changes.items() if v is not None},
            }
        )
    except ValueError as exc:
        raise InvalidInputError(str(exc)) from None
    url = target or _default_target(settings)
    err = _err()

    def on_step(step: Step) -> None:
        if not as_json:
            lat = step.result.latency
            err.print(f"{step.rate:8.1f} req/s: p50 {_ms(lat.p50_ms)} p99 {_ms(lat.p99_ms)} ms, "
                      f"failures {step.to_dict()['failure_ratio']:.4f} -> "
                      f"{'holds' if step.holds else 'broken: ' + step.why}")  # fmt: skip

    search = find_capacity(url, spec.slo, cfg, on_step=on_step)
    payload = json.dumps({"target": url, **search.to_dict()}, indent=2)
    if out is not None:
        write_atomic(out, payload + "\n")
    if report is not None and search.steps:
        from falcon_platform.loadtest.report import render_report

        knee = max(search.steps, key=lambda s: (s.holds, s.rate)).result
        write_atomic(report, render_report(knee, title="capacity", capacity=search))
    if as_json:
        typer.echo(payload)
        return
    table = Table(title=f"capacity of {url}: SLO {search.slo}")
    for col in ("rate/s", "achieved/s", "p50", "p95", "p99", "p99.9", "failures", "SLO"):
        table.add_column(col, justify="right")
    for s in search.curve():
        lat = s.result.latency
        table.add_row(f"{s.rate:.1f}", f"{s.result.achieved_rps:.1f}", _ms(lat.p50_ms),
                      _ms(lat.p95_ms), _ms(lat.p99_ms), _ms(lat.p999_ms),
                      f"{s.to_dict()['failure_ratio']:.4f}",
                      "[green]holds[/]" if s.holds else f"[red]broken[/] ({s.why})")  # fmt: skip
    out_console = _out()
    out_console.print(table)
    cap = search.capacity_rps
    out_console.print(
        f"capacity: {cap:.1f} req/s"
        if cap is not None
        else "capacity: the SLO broke at every rate tried"
    )
    if search.generator_limited:
        err.print("warning: the generator, not the server, limited the last step (see its lag)")


@app.command()
def profiles(
    as_json: JsonOpt = False,
    spec_path: SpecOpt = None,
) -> None:
    """List the load-test profiles of the spec with their stages and thresholds."""
    from falcon_platform.config.spec import format_duration
    from falcon_platform.config.specfile import load_spec

    settings = _settings()
    spec = load_spec(spec_path or settings.spec_path)
    found = spec.loadtest.profiles
    if as_json:
        typer.echo(json.dumps({k: v.model_dump() for k, v in found.items()}, indent=2))
        return
    table = Table(title="load-test profiles (falcon.yaml loadtest.profiles)")
    for col in ("profile", "stages", "thresholds", "description"):
        table.add_column(col)
    for name, p in found.items():
        stages = ", ".join(f"{format_duration(s.duration)}:{s.rate:g}" for s in p.stages)
        table.add_row(name, stages, "\n".join(p.thresholds), p.description)
    _out().print(table)


def register(main: typer.Typer) -> None:
    """Add `falcon loadtest ...` to the main app."""
    main.add_typer(app, name="loadtest")
