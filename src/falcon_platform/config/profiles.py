"""Profiles and the layering of ``FALCON_*`` variables, as plain data.

Lowest precedence first::

    field defaults < config/<profile>.env < .env (or --env-file) < process environment < overrides

:func:`collect_layers` reads the files and the environment it is given and returns
which value each field gets and where it came from; it never builds ``Settings``
(``settings.load_settings`` does), so the layering is testable on its own::

    layers = collect_layers(profile=None, env_file=None, environ={"FALCON_PORT": "9000"},
                            cwd=Path("/srv/falcon"))
    layers.values["port"], layers.sources["port"]   # ("9000", "environment")
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dotenv import dotenv_values

from falcon_platform.config.switches import enabled_switches
from falcon_platform.errors import ConfigError

PROFILES = ("dev", "staging", "prod")
PREFIX = "FALCON_"
CONFIG_DIR = Path("config")
DEFAULT_ENV_FILE = Path(".env")


@dataclass(frozen=True)
class UnknownVariable:
    """A ``FALCON_*`` name that is no setting (a typo, or a removed switch)."""

    name: str
    source: str
    suggestion: str | None

    def message(self) -> str:
        hint = f"; did you mean {self.suggestion}?" if self.suggestion else ""
        return f"{self.name} (from {self.source}) is not a Falcon setting{hint}"


@dataclass(frozen=True)
class Layers:
    """The merged variables: field name -> raw string, plus provenance."""

    profile: str
    values: dict[str, str] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    files: tuple[Path, ...] = ()
    unknown: tuple[UnknownVariable, ...] = ()
    # Debug/fault switches switched on in any layer: "NAME" -> "value (source)".
    switches: dict[str, str] = field(default_factory=dict)


def profile_file(profile: str, cwd: Path) -> Path:
    """``config/<profile>.env`` under ``cwd`` (templates ship as ``*.env.example``)."""
    return cwd / CONFIG_DIR / f"{profile}.env"


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a dotenv file (python-dotenv); keys without a value count as empty."""
    return {k: (v or "") for k, v in dotenv_values(path).items()}


def suggest(name: str, candidates: Iterable[str]) -> str | None:
    """The closest valid name to ``name`` (difflib), or None when nothing is close."""
    found = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return found[0] if found else None


def _resolve_profile(
    explicit: str | None, environ: Mapping[str, str], dotenv: Mapping[str, str]
) -> str:
    for candidate in (explicit, environ.get(PREFIX + "PROFILE"), dotenv.get(PREFIX + "PROFILE")):
        if candidate:
            profile = candidate.strip().lower()
            if profile not in PROFILES:
                raise ConfigError(
                    f"unknown profile {candidate!r}: use one of {', '.join(PROFILES)} "
                    "(FALCON_PROFILE or --profile)"
                )
            return profile
    return "dev"


def collect_layers(
    *,
    profile: str | None,
    env_file: Path | None,
    environ: Mapping[str, str],
    cwd: Path,
    field_names: Iterable[str],
) -> Layers:
    """Merge the layers for ``field_names``; raise ConfigError if ``env_file`` is missing.

    ``profile`` wins over FALCON_PROFILE from the environment, which wins over ``.env``.
    Empty values are ignored, like ``env_ignore_empty`` does for the environment.
    """
    fields = {f.upper(): f for f in field_names}
    if env_file is not None and not env_file.is_file():
        raise ConfigError(
            f"env file {env_file} does not exist: pass an existing file to --env-file"
        )
    dotenv_path = env_file if env_file is not None else cwd / DEFAULT_ENV_FILE
    dotenv = read_env_file(dotenv_path) if dotenv_path.is_file() else {}
    chosen = _resolve_profile(profile, environ, dotenv)

    layer_list: list[tuple[str, Path | None, Mapping[str, str]]] = []
    files: list[Path] = []
    pfile = profile_file(chosen, cwd)
    if pfile.is_file():
        layer_list.append((str(pfile), pfile, read_env_file(pfile)))
        files.append(pfile)
    if dotenv:
        layer_list.append((str(dotenv_path), dotenv_path, dotenv))
        files.append(dotenv_path)
    layer_list.append(("environment", None, environ))

    values: dict[str, str] = {}
    sources: dict[str, str] = {}
    unknown: dict[str, UnknownVariable] = {}
    switches: dict[str, str] = {}
    for source, path, variables in layer_list:
        for name, value in enabled_switches(dict(variables), anchored=path is None).items():
            switches[name] = f"{value} ({source})"
        for raw_name, value in variables.items():
            name = raw_name.upper()
            if not name.startswith(PREFIX):
                continue
            key = name[len(PREFIX) :]
            if key not in fields:
                # The environment may hold unrelated FALCON_* names; files must be exact.
                if path is not None:
                    hint = suggest(key, fields)
                    unknown[name] = UnknownVariable(
                        name, source, PREFIX + hint if hint is not None else None
                    )
                continue
            if value == "":
                continue
            values[fields[key]] = value
            sources[fields[key]] = source
    values["profile"] = chosen
    if profile is not None:
        sources["profile"] = "command line"
    else:
        sources.setdefault("profile", "default")
    return Layers(
        profile=chosen,
        values=values,
        sources=sources,
        files=tuple(files),
        unknown=tuple(unknown.values()),
        switches=switches,
    )
