"""`falcon actions ...`: postmortem action items (Prevent / Detect / Respond / Long-term).

    falcon actions list --overdue
    falcon actions add INC-2026-11-30-001 "Lower the soft memory limit" --category Prevent \\
        --owner @sre --due 2026-12-15
    falcon actions done AI-3
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from falcon_platform.cli.incident_cli import ByOpt, JsonOpt, _client, _who
from falcon_platform.cli.options import EnvFileOpt, ProfileOpt

app = typer.Typer(help="Postmortem action items: who does what by when.", no_args_is_help=True)
ItemId = Annotated[str, typer.Argument(help="Action item id, e.g. AI-3.")]


def actions_table(items: list[dict[str, Any]]) -> Table:
    """A Rich table of action items (pure)."""
    table = Table(title="Falcon action items")
    for column in ("id", "incident", "category", "status", "owner", "due"):
        table.add_column(column, no_wrap=True)
    table.add_column("description", ratio=1)
    for i in items:
        due = f"[bold red]{i['due']} (overdue)[/]" if i.get("overdue") else i["due"]
        table.add_row(
            i["id"], i["incident"], i["category"], i["status"], i["owner"], due, i["description"]
        )
    return table


@app.command("list")
def list_(
    overdue: Annotated[bool, typer.Option("--overdue", help="Past due and not DONE.")] = False,
    incident: Annotated[str | None, typer.Option("--incident", help="One incident's.")] = None,
    as_json: JsonOpt = False,
    profile: ProfileOpt = None,
    env_file: EnvFileOpt = None,
) -> None:
    """List action items (overdue ones are marked)."""
    with _client(profile, env_file) as client:
        body = client.actions(incident=incident, overdue=overdue)
    if as_json:
        typer.echo(json.dumps(body, indent=2, sort_keys=True))
        return
    if not body["actions"]:
        Console(stderr=True).print("no action items")
        return
    Console(highlight=False, soft_wrap=True).print(actions_table(body["actions"]))


@app.command()
def add(
    incident: Annotated[str, typer.Argument(help="The incident, e.g. INC-2026-11-30-001.")],
    description: Annotated[str, typer.Argument(help="What is to be done.")],
    category: Annotated[
        str, typer.Option("--category", help="Prevent, Detect, Respond or Long-term.")
    ] = "Prevent",
    owner: Annotated[str, typer.Option("--owner", help="Who does it.")] = "",
    due: Annotated[str, typer.Option("--due", help="YYYY-MM-DD.")] = "",
    link: Annotated[str | None, typer.Option("--link", help="Ticket or PR.")] = None,
    by: ByOpt = None,
    as_json: JsonOpt = False,
    profile: ProfileOpt = None,
    env_file: EnvFileOpt = None,
) -> None:
    """Add an action item to an incident."""
    from falcon_platform.incidents.actions import parse_category, parse_due
    from falcon_platform.incidents.model import check_incident_id

    payload = {
        "incident": check_incident_id(incident.strip()),
        "description": description,
        "category": parse_category(category).value,
        "due": parse_due(due),
        "owner": owner or by or _who(),
        "link": link,
        "by": by or _who(),
    }
    with _client(profile, env_file) as client:
        item = client.action_add(payload)
    typer.echo(json.dumps(item, indent=2, sort_keys=True) if as_json else f"{item['id']} added")


def _step(
    item_id: str,
    verb: str,
    by: str | None,
    as_json: bool,
    profile: str | None,
    env_file: Path | None,
) -> None:
    from falcon_platform.incidents.actions import check_action_id

    check_action_id(item_id.strip())
    with _client(profile, env_file) as client:
        item = client.action_step(item_id, verb, {"by": by or _who()})
    typer.echo(
        json.dumps(item, indent=2, sort_keys=True) if as_json else f"{item['id']} {item['status']}"
    )


@app.command()
def start(
    item_id: ItemId,
    by: ByOpt = None,
    as_json: JsonOpt = False,
    profile: ProfileOpt = None,
    env_file: EnvFileOpt = None,
) -> None:
    """Mark an action item IN PROGRESS."""
    _step(item_id, "start", by, as_json, profile, env_file)


@app.command()
def done(
    item_id: ItemId,
    by: ByOpt = None,
    as_json: JsonOpt = False,
    profile: ProfileOpt = None,
    env_file: EnvFileOpt = None,
) -> None:
    """Mark an action item DONE."""
    _step(item_id, "done", by, as_json, profile, env_file)
