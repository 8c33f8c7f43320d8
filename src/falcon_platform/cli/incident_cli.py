"""`falcon incident ...`: list, show, open, ack, note, mitigate, resolve, severity.

Talks to the supervisor's control API (``/incidents``); changes need the admin token::

    falcon incident list --status open
    falcon incident show INC-2026-11-30-001 --json
    falcon incident ack INC-2026-11-30-001 --by alice
    falcon incident resolve INC-2026-11-30-001 --note "rolled back to r1; hotfix r3 queued"
"""

from __future__ import annotations

import getpass
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from falcon_platform.cli.options import EnvFileOpt, ProfileOpt

app = typer.Typer(
    help="Incidents: opened by Falcon from alerts, crash loops, OOM bursts, aborted "
    "rollouts; acknowledged, noted, mitigated and resolved by humans.",
    no_args_is_help=True,
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print the API's JSON.")]
ById = Annotated[str, typer.Argument(help="Incident id, e.g. INC-2026-11-30-001.")]
SEVERITY_STYLE = {"P0": "bold red", "P1": "red", "P2": "yellow", "P3": "cyan"}
STATUS_STYLE = {"open": "bold red", "mitigated": "yellow", "resolved": "green"}


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "operator"


ByOpt = Annotated[str | None, typer.Option("--by", help="Who acts (default: your login).")]


def _severity(text: str) -> str:
    from falcon_platform.errors import InvalidInputError

    level = text.strip().upper()
    if level not in {"P0", "P1", "P2", "P3"}:
        raise InvalidInputError(f"severity {text!r}: use P0 (worst), P1, P2 or P3")
    return level


def _id(text: str) -> str:
    from falcon_platform.incidents.model import check_incident_id

    return check_incident_id(text.strip())


def _client(profile: str | None, env_file: Path | None) -> Any:
    from falcon_platform.cli.options import control_client

    return control_client(profile, env_file)


def when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def span(seconds: float) -> str:
    seconds = max(0, round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h {m:02d}m {s:02d}s" if h else f"{m}m {s:02d}s"


def incidents_table(found: list[dict[str, Any]], now: float) -> Table:
    """A Rich table of incidents (pure)."""
    table = Table(title="Falcon incidents")
    for column in ("id", "sev", "status", "detected", "duration"):
        table.add_column(column, no_wrap=True)
    table.add_column("title", ratio=1)
    for inc in found:
        end = inc.get("mitigated_at") or inc.get("resolved_at") or now
        table.add_row(
            inc["id"],
            f"[{SEVERITY_STYLE.get(inc['severity'], '')}]{inc['severity']}[/]",
            f"[{STATUS_STYLE.get(inc['status'], '')}]{inc['status']}[/]",
            when(inc.get("detected_at")),
            span(end - inc["started_at"]),
            inc["title"],
        )
    return table


def incident_text(inc: dict[str, Any], now: float) -> str:
    """A plain-text page about one incident (pure)."""
    end = inc.get("mitigated_at") or inc.get("resolved_at") or now
    lines = [
        f"{inc['id']}  {inc['severity']}  {inc['status'].upper()}  {inc['title']}",
        f"  started     {when(inc['started_at'])}  (first related signal)",
        f"  detected    {when(inc['detected_at'])}  (opened by {inc['opened_by']})",
        f"  acknowledged {when(inc.get('acknowledged_at'))}",
        f"  mitigated   {when(inc.get('mitigated_at'))}"
        + (f"  by {inc['mitigated_by']}" if inc.get("mitigated_by") else ""),
        f"  resolved    {when(inc.get('resolved_at'))}"
        + (f"  by {inc['resolved_by']}" if inc.get("resolved_by") else ""),
        f"  duration    {span(end - inc['started_at'])}",
        f"  commander   {inc.get('commander') or '-'}; responders: "
        f"{', '.join(inc.get('responders') or []) or '-'}",
        f"  releases    {', '.join(inc.get('releases') or []) or '-'}",
        f"  alerts      {', '.join(inc.get('alerts') or []) or '-'}",
        f"  tags        {', '.join(inc.get('tags') or []) or '-'}",
        "  triggers:",
    ]
    for t in inc.get("triggers", []):
        state = "ACTIVE" if t["active"] else f"cleared {when(t.get('cleared_ts'))}"
        lines.append(f"    - {t['key']}: {state}; since {when(t['first_ts'])}")
    if inc.get("notes"):
        lines.append("  notes:")
        lines += [f"    - {when(n['ts'])} {n['author']}: {n['text']}" for n in inc["notes"]]
    return "\n".join(lines)


def _print(inc: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(inc, indent=2, sort_keys=True))
    else:
        typer.echo(incident_text(inc, time.time()))


@app.command("list")
def list_(
    status: Annotated[
        list[str] | None, typer.Option("--status", help="open, mitigated or resolved (repeat).")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 50,
    as_json: JsonOpt = False,
    profile: ProfileOpt = None,
    env_file: EnvFileOpt = None,
) -> None:
    """List incidents, newest first."""
    with _client(profile, env_file) as client:
        found = client.incidents(status=status or (), limit=limit)
    if as_json:
        typer.echo(json.dumps({"incidents": found}, indent=2, sort_keys=True))
        return
    if not found:
        Console(stderr=True).print("no incidents")
        return
    Console(highlight=False, soft_wrap=True).print(incidents_table(found, time.time()))


@app.command()
def show(
    incident_id: ById,
    as_json: JsonOpt = False,
    profile: ProfileOpt = None,
    env_file: EnvFileOpt = None,
) -> None:
    """One incident: times, triggers, releases, alerts, notes."""
    with _client(profile, env_file) as client:
        _print(client.incident(_id(incident_id)), as_json)


@app.command("open")
def open_(
    title: Annotated[str, typer.Argument(help="What is wrong, in one line.")],
    severity: Annotated[str, typer.Option("--severity", help="P0 (worst) .. P3.")] = "P2",
    tag: Annotated[list[str] | None, typer.Option("--tag", help="A tag (repeat).")] = None,
    commander: Annotated[str | None, typer.Option("--commander")] = None,
    release: Annotated[str | None, typer.Option("--release", help="Release concerned.")] = None,
    by: ByOpt = None,
    as_json: JsonOpt = False,
    profile: ProfileOpt = None,
    env_file: EnvFileOpt = None,
) -> None:
    """Declare an incident by hand (Falcon opens its own from signals)."""
    payload = {
        "title": title,
        "severity": _severity(severity),
        "tags": tag or [],
        "commander": commander,
        "release": release,
        "by": by or _who(),
    }
    with _client(profile, env_file) as client:
        _print(client.incident_open(payload), as_json)


def _act(
    incident_id: str,
    action: str,
    payload: dict[str, Any],
    as_json: bool,
    profile: str | None,
    env_file: Path | None,
) -> None:
    with _client(profile, env_file) as client:
        _print(client.incident_action(_id(incident_id), action, payload), as_json)


@app.command()
def ack(
    incident_id: ById,
    by: ByOpt = None,
    as_json: JsonOpt = False,
    profile: ProfileOpt = None,
    env_file: EnvFileOpt = None,
) -> None:
    """Acknowledge: you are on it (the first to ack becomes commander)."""
    _act(incident_id, "ack", {"by": by or _who()}, as_json, profile, env_file)


@app.command()
def note(
    incident_id: ById,
    text: Annotated[str, typer.Argument(help="What you saw or did (goes on the timeline).")],
    by: ByOpt = None,
    as_json: JsonOpt = False,
    profile: ProfileOpt = None,
    env_file: EnvFileOpt = None,
) -> None:
    """Add a note to the incident's timeline."""
    _act(incident_id, "note", {"by": by or _who(), "text": text}, as_json, profile, env_file)


NoteOpt = Annotated[str | None, typer.Option("--note", help="What was done (on the timeline).")]


@app.command()
def mitigate(
    incident_id: ById,
    text: NoteOpt = None,
    by: ByOpt = None,
    as_json: JsonOpt = False,
    profile: ProfileOpt = None,
    env_file: EnvFileOpt = None,
) -> None:
    """Mark the impact as stopped (Falcon does this itself when every trigger clears)."""
    _act(incident_id, "mitigate", {"by": by or _who(), "text": text}, as_json, profile, env_file)


@app.command()
def resolve(
    incident_id: ById,
    text: NoteOpt = None,
    by: ByOpt = None,
    as_json: JsonOpt = False,
    profile: ProfileOpt = None,
    env_file: EnvFileOpt = None,
) -> None:
    """Close the incident (a human decision: Falcon never resolves)."""
    _act(incident_id, "resolve", {"by": by or _who(), "text": text}, as_json, profile, env_file)


@app.command()
def severity(
    incident_id: ById,
    level: Annotated[str, typer.Argument(help="P0 (worst) .. P3.")],
    by: ByOpt = None,
    as_json: JsonOpt = False,
    profile: ProfileOpt = None,
    env_file: EnvFileOpt = None,
) -> None:
    """Override the severity (Falcon stops adjusting it)."""
    _act(
        incident_id,
        "severity",
        {"by": by or _who(), "severity": _severity(level)},
        as_json,
        profile,
        env_file,
    )


@app.command()
def postmortem(
    incident_id: ById,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Directory for <ID>.md, its graphs (PNG, SVG) and bundle."),
    ] = None,
    fmt: Annotated[
        str, typer.Option("--format", help="md or html (to stdout; --out writes both).")
    ] = "md",
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the bundle (all numbers) as JSON.")
    ] = False,
    profile: ProfileOpt = None,
    env_file: EnvFileOpt = None,
) -> None:
    """The postmortem in the seed template's shape, computed from the data.

    From the journal, the request log and the SLI store: Markdown (or HTML) to stdout, or
    with its graphs (PNG, SVG), the HTML page and the bundle into --out DIR.
    """
    from falcon_platform.errors import InvalidInputError
    from falcon_platform.incidents.graphs import render_graphs
    from falcon_platform.incidents.postmortem import (
        render_html,
        render_markdown,
        write_postmortem,
    )

    if fmt not in ("md", "html"):
        raise InvalidInputError(f"--format {fmt!r}: use md or html")
    with _client(profile, env_file) as client:
        bundle = client.incident(_id(incident_id), part="/bundle")
    if as_json:
        typer.echo(json.dumps(bundle, indent=2, sort_keys=True))
    if out is None:
        if not as_json:
            text = (
                render_markdown(bundle)
                if fmt == "md"
                else render_html(bundle, render_graphs(bundle))
            )
            typer.echo(text, nl=False)
        return
    console = Console(stderr=True)
    with console.status("drawing graphs..."):
        written = write_postmortem(bundle, out)
    for path in written:
        console.print(f"wrote {path}", highlight=False)
