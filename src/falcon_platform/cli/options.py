"""The options every command shares, and the one way a command finds a running Falcon.

A command that talks to a running Falcon (its control API or its public port) takes
``--profile`` and ``--env-file`` and builds its settings and client here, so ``falcon status``,
``falcon alerts``, ``falcon loadtest run`` and every later command look for the supervisor in
the same place::

    from falcon_platform.cli.options import EnvFileOpt, JsonOpt, ProfileOpt, control_client

    def status(json_out: JsonOpt = False, profile: ProfileOpt = None,
               env_file: EnvFileOpt = None) -> None:
        with control_client(profile, env_file) as client:
            data = client.status()

``tests/unit/test_cli_usage.py`` walks the command tree: a command whose code builds a
control client must offer both options.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from falcon_platform.client.control import ControlClient
    from falcon_platform.config.settings import Settings

ProfileOpt = Annotated[
    str | None,
    typer.Option("--profile", "-p", help="dev, staging or prod (default FALCON_PROFILE)."),
]
EnvFileOpt = Annotated[
    Path | None,
    typer.Option("--env-file", help="Env file to read instead of ./.env (where Falcon runs)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output on stdout.")]
BaseReleaseOpt = Annotated[
    bool,
    typer.Option(
        "--base",
        help="Start the base release (the env file as it is) instead of resuming the last "
        "stable release; journaled as skipped on purpose.",
    ),
]

# The option names a command must offer when it talks to a running Falcon.
ADDRESS_OPTIONS = ("--profile", "--env-file")


def settings_for(
    profile: str | None = None, env_file: Path | None = None, **overrides: Any
) -> Settings:
    """The settings of the Falcon these options name (the same layers as `falcon up`)."""
    from falcon_platform.config.settings import load_settings

    return load_settings(profile=profile, env_file=env_file, **overrides)


def client_for(settings: Settings, *, timeout: float = 10.0) -> ControlClient:
    """A control-API client for the supervisor ``settings`` describe (socket or TCP port)."""
    from falcon_platform.client.control import ControlClient

    return ControlClient.from_settings(settings, timeout=timeout)


def control_client(
    profile: str | None = None, env_file: Path | None = None, *, timeout: float = 10.0
) -> ControlClient:
    """``client_for(settings_for(profile, env_file))``: the common case in one call."""
    return client_for(settings_for(profile, env_file), timeout=timeout)


def address_args(profile: str | None, env_file: Path | None) -> str:
    """The address options as typed again in a hint (`falcon events` + these)."""
    import shlex

    parts = ([f"--profile {shlex.quote(profile)}"] if profile else []) + (
        [f"--env-file {shlex.quote(str(env_file))}"] if env_file else []
    )
    return "".join(" " + p for p in parts)
