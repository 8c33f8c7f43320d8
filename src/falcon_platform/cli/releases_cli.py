"""Release commands: list and show releases, create one.

    falcon releases                         # every release, its state, gate and steps
    falcon releases show r3 [--json]        # one release: verdicts with numbers, config diff
    falcon releases create --env-file r3.env --reason "raise the batch size"

All of them talk to the supervisor's control API (``/releases``).
"""

from __future__ import annotations

import getpass
import json
import socket
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from falcon_platform.cli.options import EnvFileOpt
from falcon_platform.errors import ConfigError

app = typer.Typer(
    help="Releases: numbered model + settings + spec, with their gate and canary verdicts.",
    invoke_without_command=True,
    no_args_is_help=False,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
ProfileOpt = Annotated[
    str | None,
    typer.Option("--profile", "-p", help="dev, staging or prod (default FALCON_PROFILE)."),
]
ReleaseEnvOpt = Annotated[
    Path | None,
    typer.Option("--env-file", help="FALCON_* settings of the new release (KEY=VALUE lines)."),
]
SetOpt = Annotated[
    list[str] | None, typer.Option("--set", help="FALCON_KEY=VALUE for the new release.")
]
ModelOpt = Annotated[
    Path | None, typer.Option("--model", help="Model directory the new release serves.")
]
ReasonOpt = Annotated[str, typer.Option("--reason", help="Why (shown in `falcon releases list`).")]
SkipGateOpt = Annotated[
    str | None,
    typer.Option("--skip-gate", help="Skip the gate (config, model, load test); reason journaled."),
]
FaultsOpt = Annotated[
    bool, typer.Option("--allow-faults", help="Allow FALCON_FAULTS (a deliberate fault drill).")
]


def _out() -> Console:
    return Console(highlight=False, soft_wrap=True)


def _err() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def client(profile: str | None, env_file: Path | None = None, *, timeout: float = 30.0) -> Any:
    from falcon_platform.cli.options import control_client

    return control_client(profile, env_file, timeout=timeout)


def who() -> str:
    """``user@host``: who created a release."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def release_env(
    env_file: Path | None, sets: list[str] | None, model: Path | None
) -> dict[str, str]:
    """The new release's ``FALCON_*`` overrides from ``--env-file``, ``--set`` and ``--model``
    (later ones win). Anything but ``FALCON_*`` keys is a usage error."""
    from dotenv import dotenv_values  # python-dotenv: the parser pydantic-settings uses

    env: dict[str, str] = {}
    if env_file is not None:
        if not env_file.is_file():
            raise ConfigError(f"--env-file {env_file}: no such file")
        for key, value in dotenv_values(env_file).items():
            if not key.startswith("FALCON_"):
                raise ConfigError(
                    f"--env-file {env_file}: {key} is not a FALCON_* setting; a release changes "
                    "only FALCON_* settings"
                )
            env[key] = value or ""
    for item in sets or []:
        key, sep, value = item.partition("=")
        if not sep or not key.startswith("FALCON_"):
            raise ConfigError(
                f"--set {item!r}: write FALCON_KEY=VALUE, e.g. --set FALCON_BATCH_MAX_SIZE=16"
            )
        env[key] = value
    if model is not None:
        env["FALCON_MODEL_PATH"] = str(model.resolve())
    return env


def _when(ts: Any) -> str:
    if not isinstance(ts, int | float):
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))


def _gate_line(gate: dict[str, Any] | None, skip: str | None) -> str:
    if skip:
        return f"skipped ({skip})"
    if not gate:
        return "-"
    return str(gate.get("verdict", "-"))


def releases_table(body: dict[str, Any]) -> Table:
    """A Rich table of releases (pure: data in, table out)."""
    table = Table(title="Falcon releases")
    for column in ("release", "state", "created (UTC)", "by", "gate", "steps", "changed", "reason"):
        table.add_column(column, no_wrap=column not in {"reason", "changed"})
    for r in body.get("releases", []):
        steps = r.get("steps") or []
        last = steps[-1].get("verdict", "-") if steps else "-"
        changed = ", ".join(d["key"] for d in r.get("diff") or []) or "-"
        table.add_row(
            r["id"] + (" *" if r["id"] == body.get("stable") else ""),
            r["state"],
            _when(r.get("created_at")),
            r.get("created_by", ""),
            _gate_line(r.get("gate"), r.get("skip_gate_reason")),
            f"{len(steps)} (last {last})" if steps else "-",
            changed,
            r.get("reason", ""),
        )
    return table


def show_release(record: dict[str, Any], out: Console) -> None:
    """Print one release for a human (what ``falcon releases show`` prints)."""
    out.print(f"release {record['id']}  state {record['state']}  from {record.get('from_release')}")
    out.print(f"  created   {_when(record.get('created_at'))} UTC by {record.get('created_by')}")
    out.print(f"  reason    {record.get('reason')}")
    out.print(f"  model     sha256 {record.get('model_sha256') or '-'}")
    out.print(f"  settings  fingerprint {record.get('settings_fingerprint') or '-'}")
    out.print(f"  spec      sha256 {record.get('spec_hash')}")
    if record.get("skip_gate_reason"):
        out.print(f"  gate      SKIPPED: {record['skip_gate_reason']}")
    gate = record.get("gate") or {}
    if gate:
        out.print(f"  gate      {gate.get('verdict')}")
        for check in gate.get("checks", []):
            mark = "pass" if check.get("passed") else "FAIL"
            out.print(f"    {mark}  {check.get('check')}: {check.get('detail')}", markup=False)
    diff = record.get("diff") or []
    out.print(f"  config diff against {record.get('from_release')}: {len(diff)} key(s)")
    for row in diff:
        out.print(f"    {row['key']}: {row['old']} -> {row['new']}", markup=False)
    for step in record.get("steps") or []:
        out.print(
            f"  step {step.get('step')} ({step.get('weight')}%): {step.get('verdict')}  "
            + "; ".join(step.get("reasons", [])),
            markup=False,
        )
    for entry in record.get("history") or []:
        out.print(
            f"  {_when(entry.get('ts'))}  -> {entry.get('state')}: {entry.get('why')}", markup=False
        )


@app.callback()
def releases(ctx: typer.Context, as_json: JsonOpt = False, profile: ProfileOpt = None) -> None:
    """List releases (the stable one is marked *); `falcon releases show rN` for one."""
    if ctx.invoked_subcommand is not None:
        return
    list_releases(as_json=as_json, profile=profile)


@app.command("list")
def list_releases(
    as_json: JsonOpt = False, profile: ProfileOpt = None, env_file: EnvFileOpt = None
) -> None:
    """Every release: state, created, by, gate, steps, changed keys, reason."""
    with client(profile, env_file) as c:
        body = c.releases()
    if as_json:
        typer.echo(json.dumps(body, indent=2))
        return
    _out().print(releases_table(body))
    resume = body.get("resume") or {}
    if resume.get("line"):
        _out().print(f"release: {resume['line']}", markup=False, highlight=False)


@app.command()
def show(
    release_id: Annotated[str, typer.Argument(help="The release, e.g. r3.")],
    as_json: JsonOpt = False,
    profile: ProfileOpt = None,
    env_file: EnvFileOpt = None,
) -> None:
    """One release: state, who/when/why, gate and canary verdicts with numbers, config diff."""
    with client(profile, env_file) as c:
        record = c.release(release_id)
    if as_json:
        typer.echo(json.dumps(record, indent=2))
        return
    show_release(record, _out())


@app.command()
def create(
    reason: ReasonOpt,
    env_file: ReleaseEnvOpt = None,
    set_env: SetOpt = None,
    model: ModelOpt = None,
    skip_gate: SkipGateOpt = None,
    allow_faults: FaultsOpt = False,
    as_json: JsonOpt = False,
    profile: ProfileOpt = None,
) -> None:
    """Create a release (judged by the config gate) without rolling it out."""
    env = release_env(env_file, set_env, model)
    with client(profile) as c:
        record = c.create_release(
            env, reason=reason, created_by=who(), skip_gate=skip_gate, allow_faults=allow_faults
        )
    if as_json:
        typer.echo(json.dumps(record, indent=2))
        return
    show_release(record, _out())


# ----------------------------------------------------------------------------- rollouts
rollout_app = typer.Typer(help="The rollout in progress: status, promote, abort.")

EXIT_PROMOTED, EXIT_REFUSED, EXIT_ABORTED = 0, 3, 4


def rollout_line(r: dict[str, Any]) -> str:
    """One line about a rollout for a human (pure)."""
    head = f"{r['release']} (from {r['from_release']}): {r['phase']}"
    if r["phase"] in ("canary", "promoting", "aborting"):
        head += (
            f", step {r['step']}/{len(r['steps'])} at {r['weight']}% "
            f"({r['canary_workers']}/{r['total_workers']} workers)"
        )
    last = r.get("last_analysis") or {}
    if last:
        head += f"; last analysis: {last.get('verdict')}"
    if r.get("waiting") and not r.get("done"):
        head += f"; {r['waiting']}"
    if r.get("done") and r.get("reason"):
        head += f"; {r['reason']}"
    synthetic = r.get("synthetic") or {}
    if "sent" in synthetic:  # canary.synthetic_rps: what the last step got (not user traffic)
        head += (
            f"; synthetic traffic: {synthetic['sent']} requests at {synthetic['rps']:g}/s "
            f"({synthetic['failed']} failed)"
        )
    return head


def _exit_code(r: dict[str, Any]) -> int:
    return {"promoted": EXIT_PROMOTED, "refused": EXIT_REFUSED}.get(r["phase"], EXIT_ABORTED)


def _follow(c: Any, *, as_json: bool, timeout: float) -> int:
    """Print the rollout's progress until it ends; the exit code of its outcome."""
    deadline = time.monotonic() + timeout
    last_line = ""
    err = _err()
    while True:
        body = c.rollout()
        r = body.get("rollout")
        if r is None:
            raise ConfigError("no rollout to follow; start one with `falcon deploy`")
        line = rollout_line(r)
        if line != last_line and not as_json:
            err.print(f"{time.strftime('%H:%M:%S')}  {line}", markup=False)
            last_line = line
        if r.get("done"):
            if as_json:
                typer.echo(json.dumps(body, indent=2))
            else:
                _report(r)
            return _exit_code(r)
        if time.monotonic() > deadline:
            from falcon_platform.errors import RuntimeStateError

            raise RuntimeStateError(
                f"the rollout of {r['release']} is still running after {timeout:g} s; it goes "
                "on in the supervisor: `falcon rollout status --watch`"
            )
        time.sleep(0.5)


def _report(r: dict[str, Any]) -> None:
    out, err = _out(), _err()
    if r["phase"] == "promoted":
        out.print(f"{r['release']} promoted: every worker runs it ({r['reason']})")
        return
    if r["phase"] == "refused":
        err.print(f"gate refused {r['release']}; no user request reached it:", markup=False)
        for check in (r.get("gate") or {}).get("checks", []):
            if not check.get("passed"):
                err.print(f"  FAIL {check['check']}: {check['detail']}", markup=False)
        err.print(
            f"see `falcon releases show {r['release']}`; to deploy it anyway: "
            "`falcon deploy ... --skip-gate '<reason>'` (journaled)",
            markup=False,
        )
        return
    err.print(
        f"{r['release']} ABORTED and rolled back to {r['from_release']}: {r['reason']}",
        markup=False,
    )
    if r.get("seconds_from_first_canary_traffic_to_abort") is not None:
        err.print(
            f"  {r['seconds_from_first_canary_traffic_to_abort']:.1f} s from first canary traffic "
            f"to abort, canary share {r['canary_workers']}/{r['total_workers']} workers, "
            f"canary peak memory {r.get('canary_peak_memory_mb')} MB of "
            f"{r.get('memory_limit_mb')} MB",
            markup=False,
        )
    err.print(
        f"  see `falcon releases show {r['release']}` and `falcon events --kind rollout_aborted`"
    )


def deploy(
    reason: ReasonOpt,
    env_file: ReleaseEnvOpt = None,
    set_env: SetOpt = None,
    model: ModelOpt = None,
    skip_gate: SkipGateOpt = None,
    allow_faults: FaultsOpt = False,
    detach: Annotated[
        bool, typer.Option("--detach", help="Return once the rollout started.")
    ] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to follow the rollout.")] = 3600.0,
    as_json: JsonOpt = False,
    profile: ProfileOpt = None,
) -> None:
    """Create a release and roll it out: gate (config, model, load test), canary steps, promote.

    The supervisor runs the rollout (a terminal that dies does not stop it). Exit codes:
    0 promoted, 3 refused by the gate, 4 aborted and rolled back, 2 bad usage."""
    from falcon_platform.errors import ReleaseRefusedError

    env = release_env(env_file, set_env, model)
    with client(profile) as c:
        try:
            started = c.deploy(
                env, reason=reason, created_by=who(), skip_gate=skip_gate, allow_faults=allow_faults
            )
        except ReleaseRefusedError as exc:
            _err().print(f"gate refused the release: {exc.detail}", markup=False)
            raise typer.Exit(EXIT_REFUSED) from None
        r = started["rollout"]
        if detach:
            if as_json:
                typer.echo(json.dumps(started, indent=2))
            else:
                _out().print(
                    f"rollout of {r['release']} started; follow it: `falcon rollout status --watch`"
                )
            return
        code = _follow(c, as_json=as_json, timeout=timeout)
    raise typer.Exit(code)


@rollout_app.command("status")
def rollout_status(
    watch: Annotated[bool, typer.Option("--watch", help="Follow until it ends.")] = False,
    as_json: JsonOpt = False,
    profile: ProfileOpt = None,
    env_file: EnvFileOpt = None,
) -> None:
    """The rollout in progress (or the last one): phase, step, last analysis."""
    with client(profile, env_file) as c:
        if watch:
            raise typer.Exit(_follow(c, as_json=as_json, timeout=86400.0))
        body = c.rollout()
    if as_json:
        typer.echo(json.dumps(body, indent=2))
        return
    r = body.get("rollout")
    if r is None:
        _out().print(f"no rollout since the supervisor started; stable release {body['stable']}")
        return
    _out().print(rollout_line(r), markup=False)
    for reason in (r.get("last_analysis") or {}).get("reasons", []):
        _out().print(f"  {reason}", markup=False)


@rollout_app.command("promote")
def rollout_promote(
    reason: Annotated[str, typer.Option("--reason", help="Why (journaled).")] = "",
    profile: ProfileOpt = None,
    env_file: EnvFileOpt = None,
) -> None:
    """Promote the canary now, skipping the remaining steps (journaled)."""
    with client(profile, env_file) as c:
        body = c.promote(reason or f"promoted by hand by {who()}")
    _out().print(f"promoting {body['rollout']['release']}; `falcon rollout status --watch`")


@rollout_app.command("abort")
def rollout_abort(
    reason: Annotated[str, typer.Option("--reason", help="Why (journaled).")] = "",
    profile: ProfileOpt = None,
    env_file: EnvFileOpt = None,
) -> None:
    """Abort the canary: the stable pool is restored first, then the canary drained."""
    with client(profile, env_file) as c:
        body = c.abort(reason or f"aborted by hand by {who()}")
    _out().print(f"aborting {body['rollout']['release']}; `falcon rollout status --watch`")


def rollback(
    to: Annotated[
        str | None,
        typer.Option("--to", help="The release, e.g. r2 (default: the previous good one)."),
    ] = None,
    reason: Annotated[str, typer.Option("--reason", help="Why (journaled).")] = "",
    as_json: JsonOpt = False,
    profile: ProfileOpt = None,
    env_file: EnvFileOpt = None,
) -> None:
    """Return to the previous (or the named) good release: its workers start beside the
    current ones, then those drain; no request is dropped."""
    with client(profile, env_file, timeout=300.0) as c:  # returns once the workers are ready
        body = c.rollback(to, reason or f"rollback by {who()}")
    if as_json:
        typer.echo(json.dumps(body, indent=2))
        return
    _out().print(
        f"rolled back from {body['from_release']} to {body['to_release']} in {body['seconds']:.1f} s"
    )


def register(main: typer.Typer) -> None:
    """Add the release commands to the main `falcon` app."""
    main.add_typer(app, name="releases")
    main.add_typer(rollout_app, name="rollout")
    main.command()(deploy)
    main.command()(rollback)
