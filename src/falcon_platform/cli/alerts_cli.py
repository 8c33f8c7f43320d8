"""`falcon alerts [--json]`: what the supervisor's alert evaluator has firing (and pending).

Reads ``GET /alerts`` of the control API; exit code 0 either way (scripts use ``--json``)::

    falcon alerts
    falcon alerts --profile prod --env-file /etc/falcon/prod.env
    falcon alerts --json | jq '.alerts[] | select(.state == "firing") | .name'
"""

from __future__ import annotations

import json
import time
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from falcon_platform.cli.consoles import stdout_console
from falcon_platform.cli.options import EnvFileOpt, ProfileOpt, control_client

SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def alerts_table(alerts: list[dict[str, Any]], now: float) -> Table:
    """A Rich table of alerts (pure: data in, table out)."""
    table = Table(title="Falcon alerts", show_lines=False)
    for column in ("state", "severity", "alert", "since"):
        table.add_column(column, no_wrap=True)  # names must stay greppable
    table.add_column("labels")
    table.add_column("summary", ratio=1)
    for a in alerts:
        labels = {
            k: v
            for k, v in a.get("labels", {}).items()
            if k not in {"alertname", "severity", "service"}
        }
        since = a.get("active_since")
        table.add_row(
            a.get("state", ""),
            f"[{SEVERITY_STYLE.get(a.get('severity', ''), '')}]{a.get('severity', '')}[/]",
            a.get("name", ""),
            _age(now - since) if isinstance(since, int | float) else (a.get("starts_at") or ""),
            ", ".join(f"{k}={v}" for k, v in sorted(labels.items())),
            a.get("annotations", {}).get("summary", ""),
        )
    return table


def alerts(
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON.")] = False,
    profile: ProfileOpt = None,
    env_file: EnvFileOpt = None,
) -> None:
    """List firing and pending alerts (local evaluator and Alertmanager webhooks)."""
    with control_client(profile, env_file) as client:
        body: dict[str, Any] = client.alerts()
    if as_json:
        typer.echo(json.dumps(body, indent=2, sort_keys=True))
        return
    found = body.get("alerts", [])
    if not found:
        Console(stderr=True).print("no alerts pending or firing")
        return
    stdout_console().print(alerts_table(found, time.time()))


def register(app: typer.Typer) -> None:
    """Add this domain's commands to the main `falcon` app."""
    app.command(name="alerts")(alerts)
