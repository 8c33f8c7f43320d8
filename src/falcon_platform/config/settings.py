"""Runtime settings: one typed object, built once at the edge and passed down.

Every variable has the ``FALCON_`` prefix. Nothing here reads the environment
at import time: call :func:`load_settings` (the CLI and the ASGI factory do).
Secrets are ``SecretStr`` and never appear in ``repr``, logs or fingerprints.

Loading order, lowest precedence first (documented in README and tested):
field defaults < ``config/<profile>.env`` < ``.env`` (or ``--env-file``) < process environment
< keyword overrides.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PrivateAttr, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

Profile = Literal["dev", "staging", "prod"]
LogFormat = Literal["json", "console"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]


class Settings(BaseSettings):
    """Everything an operator may set through ``FALCON_*`` variables."""

    model_config = SettingsConfigDict(
        env_prefix="FALCON_",
        extra="forbid",
        frozen=True,
        validate_default=True,
        env_ignore_empty=True,
    )

    # --- identity and place ---------------------------------------------------------------
    profile: Profile = "dev"
    home: Path = Field(default=Path(".falcon"), description="All state lives here.")
    spec_path: Path = Field(default=Path("falcon.yaml"), description="The spec file.")

    # --- network ----------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    control_host: str = "127.0.0.1"
    control_port: int = Field(default=8001, ge=0, le=65535)
    control_socket: Path | None = Field(
        default=None, description="UNIX socket for the control API instead of TCP."
    )
    admin_token: SecretStr | None = None
    tls_certfile: Path | None = None
    tls_keyfile: Path | None = None

    # --- processes --------------------------------------------------------------------------
    workers: int | None = Field(default=None, ge=1, le=256, description="Default: number of cores.")
    memory_limit_mb: int | None = Field(
        default=None, ge=0, description="Overrides the spec; 0 = off."
    )
    memory_soft_limit_percent: int | None = Field(
        default=None, ge=0, le=100, description="0 = off."
    )
    shutdown_grace_s: float = Field(default=30.0, gt=0, le=600)
    # Set by the supervisor for each worker it starts; a lone `falcon worker` uses the defaults.
    worker_id: str = "w0"
    release: str = "r0"
    memory_enforcement: Literal["auto", "cgroup", "watchdog"] = Field(
        default="auto",
        description="auto = a memory cgroup when the supervisor may create one, else the RSS watchdog.",
    )
    zygote: bool = Field(
        default=True,
        description="Fork workers from a preloaded process per release (fast restarts).",
    )

    # --- model ------------------------------------------------------------------------------
    model_name: str = Field(default="sentiment", pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")
    model_path: Path | None = Field(
        default=None, description="Model directory; default <home>/models/<model_name>."
    )

    # --- request limits ---------------------------------------------------------------------
    max_text_chars: int = Field(default=10_000, ge=1, le=1_000_000)
    max_batch_items: int = Field(default=256, ge=1, le=10_000)
    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576)
    # A client that stops sending its body mid-way gets 408 after this, instead of holding a
    # connection and a task forever (uvicorn has no body-read timeout of its own).
    body_timeout_s: float = Field(default=30.0, gt=0, le=3600)

    # --- connections on the public port (per worker; uvicorn has none of these limits) ---------
    # A request head (request line + headers) must arrive within this of connecting, or of the
    # first byte of a later request on a kept-alive connection: 408 (partial head) or closed.
    header_timeout_s: float = Field(default=10.0, gt=0, le=600)
    # An idle kept-alive connection is closed after this.
    keepalive_timeout_s: float = Field(default=5.0, gt=0, le=3600)
    # A kept-alive connection older than this answers its next request with `Connection:
    # close`, so clients reconnect and new workers (a canary, a replacement) get their share
    # of busy kept-alive clients. 0 = never.
    max_connection_age_s: float = Field(default=30.0, ge=0, le=86_400)
    # Request head over this many bytes, or with more header fields: 431, before buffering it.
    max_header_bytes: int = Field(default=65_536, ge=1024, le=1_048_576)
    max_header_count: int = Field(default=100, ge=8, le=10_000)
    # Open connections per worker; beyond it the least recently useful idle one is closed, or
    # (every connection busy) the new one gets 503. Also bounded by the descriptor limit less
    # FALCON_FD_RESERVE, kept free for the admin socket, request log, database and Redis.
    max_connections: int = Field(default=4096, ge=1, le=1_000_000)
    fd_reserve: int = Field(default=128, ge=16, le=100_000)
    # GET /metrics on the public port: "auto" = only for a worker without a supervisor (a pod,
    # where Prometheus scrapes it); under `falcon up` the control port serves every worker's.
    public_metrics: Literal["auto", "on", "off"] = "auto"

    # --- micro-batcher ----------------------------------------------------------------------
    batch_max_size: int = Field(default=64, ge=1, le=4096)
    batch_max_wait_ms: float = Field(default=2.0, ge=0, le=1000)
    queue_max: int = Field(default=2048, ge=1, le=1_000_000)
    inference_timeout_ms: float = Field(default=5000, gt=0, le=600_000)
    # Where predict_proba runs: "inline" (on the event loop) or "thread" (one worker thread: the
    # loop stalls less, but on one core the GIL handoffs cost CPU). Picked by measurement:
    # docs/CAPACITY_PLAN.md, `bench/run.py --compare-executors`.
    batch_executor: Literal["thread", "inline"] = "inline"
    # Serve POST /infer and v2 infer through the lean raw-ASGI path (same rules and bodies as
    # the FastAPI routes, which stay declared for OpenAPI). Off = every request via FastAPI.
    fast_path: bool = True

    # --- cache and idempotency --------------------------------------------------------------
    # The embedded cache's bounds; bytes are the entries' real memory (stores/memory_cache.py:
    # 208 bytes per entry beyond the value). 50,000 answers of the default 3-label model take
    # 11.6 MB, under the 12 MiB bound; a model with more labels is held to the same 12 MiB
    # (fewer entries), so a lone worker with a full cache stays within its 100 MB PSS goal.
    cache_max_entries: int = Field(default=50_000, ge=0)
    cache_max_bytes: int = Field(default=12 * 1_048_576, ge=0)
    cache_ttl_s: float = Field(default=600, ge=0)
    idempotency_ttl_s: float = Field(default=86_400, gt=0)

    # --- production backends ----------------------------------------------------------------
    redis_url: SecretStr | None = None
    redis_timeout_ms: float = Field(default=50, gt=0, le=60_000)
    redis_pool_size: int = Field(default=32, ge=1, le=10_000)
    # With Redis: an in-process first level in front of its cache (entries; 0 = off, the
    # default). Safe: a cache key names the model version and the text, so a local copy is
    # never stale; but it keeps answering hot texts while Redis is away (no "degraded" then).
    redis_local_cache_entries: int = Field(default=0, ge=0, le=10_000_000)
    # While no request reaches Redis, one lookup every this many seconds keeps its breaker
    # (and so `falcon status`, /readyz and the metrics) true to Redis's state (0 = off).
    redis_probe_interval_s: float = Field(default=1.0, ge=0, le=3600)
    database_url: SecretStr | None = None
    database_pool_size: int = Field(default=5, ge=1, le=1000)
    database_timeout_s: float = Field(default=5.0, gt=0, le=300)
    # Circuit breakers (Redis, PostgreSQL, SQLite): consecutive failures that open one, and
    # how long it stays open before a single probe call is let through.
    breaker_failure_threshold: int = Field(default=3, ge=1, le=1000)
    breaker_reset_timeout_s: float = Field(default=2.0, gt=0, le=600)

    # --- request log ------------------------------------------------------------------------
    log_inputs: bool = False
    request_log_disk_budget_mb: int = Field(default=1024, ge=1)
    request_log_flush_interval_ms: float = Field(default=200, gt=0, le=60_000)
    request_log_ship_batch: int = Field(default=1000, ge=1, le=100_000)
    # Linux nice of the worker's shipper thread: the event loop is scheduled first, the shipper
    # takes the rest; back to the base priority while a backlog builds (0 = never niced;
    # 5 keeps up with one saturated core, 10 did not: docs/CAPACITY_PLAN.md).
    request_log_shipper_nice: int = Field(default=5, ge=0, le=19)

    # --- logs, alerts -----------------------------------------------------------------------
    log_level: LogLevel = "INFO"
    log_format: LogFormat = "json"
    alert_webhook_url: str | None = None
    sli_scrape_interval_s: float = Field(default=1.0, gt=0, le=300)
    sli_retention_days: float = Field(default=7, gt=0, le=400)

    # --- fault injection (falcon_platform.chaos only; refused in prod without --allow-faults)
    faults: str = Field(
        default="",
        description="DANGEROUS: degrades traffic on purpose, e.g. 'leak_mb_per_request=5'. "
        "The only debug switch; parsed strictly by falcon_platform.chaos.faults.",
    )

    # Provenance, set by load_settings: which layer gave each field, which debug switches
    # were seen (the gate refuses them), which files were read. Not settings themselves.
    _sources: dict[str, str] = PrivateAttr(default_factory=dict)
    _switches: dict[str, str] = PrivateAttr(default_factory=dict)
    _files: tuple[str, ...] = PrivateAttr(default=())

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    # --- derived paths ----------------------------------------------------------------------
    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def resolved_model_path(self) -> Path:
        return self.model_path if self.model_path is not None else self.models_dir / self.model_name

    @property
    def run_dir(self) -> Path:
        """Sockets, pid files, the admin token."""
        return self.home / "run"

    @property
    def data_dir(self) -> Path:
        """SQLite databases (embedded stores, journal, SLI store)."""
        return self.home / "data"

    @property
    def spool_dir(self) -> Path:
        """Request-log segment files waiting to be shipped."""
        return self.home / "spool"

    @property
    def sources(self) -> dict[str, str]:
        """Field -> the layer it came from ("default" when absent), for `falcon config show`."""
        return {name: self._sources.get(name, "default") for name in type(self).model_fields}

    @property
    def debug_switches(self) -> dict[str, str]:
        """Debug/fault switches seen while loading (name -> "value (source)"); gate input."""
        return dict(self._switches)

    @property
    def files_read(self) -> tuple[str, ...]:
        return self._files

    @property
    def worker_count(self) -> int:
        return self.workers if self.workers is not None else (os.cpu_count() or 1)


def load_settings(
    *, profile: str | None = None, env_file: Path | None = None, **overrides: Any
) -> Settings:
    """Build the one ``Settings`` object; the one place the environment is read.

    Layers, lowest precedence first: field defaults < ``config/<profile>.env`` (relative
    to the working directory) < ``.env`` (or ``env_file``) < process environment <
    ``overrides``. Raises ``ConfigError`` naming every bad or unknown variable::

        settings = load_settings(profile="prod", env_file=Path("/etc/falcon/prod.env"))
        settings = load_settings(workers=2)          # tests: explicit values win
    """
    from falcon_platform.errors import ConfigError

    settings, problems = try_load_settings(profile=profile, env_file=env_file, **overrides)
    if settings is None:
        raise ConfigError("; ".join(p.message() for p in problems))
    return settings


@dataclass(frozen=True)
class SettingsProblem:
    """A variable that cannot be used: unknown name, wrong type, out of range."""

    kind: str  # "unknown-variable" or "invalid-value"
    variable: str
    value: str  # secrets are "<redacted>"
    why: str
    source: str

    def message(self) -> str:
        return f"{self.variable}={self.value} (from {self.source}): {self.why}"


def try_load_settings(
    *,
    profile: str | None = None,
    env_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    **overrides: Any,
) -> tuple[Settings | None, list[SettingsProblem]]:
    """Like :func:`load_settings` but returns every problem instead of raising on the first.

    ``environ`` and ``cwd`` default to this process's; the supervisor passes the environment
    a new worker will get, to judge its settings before starting it.
    Still raises ``ConfigError`` for a missing ``env_file`` or an unknown profile.
    """
    # Imported here: profiles pulls in python-dotenv, not needed by `Settings(...)` users.
    from falcon_platform.config.profiles import collect_layers

    layers = collect_layers(
        profile=profile,
        env_file=env_file,
        environ=dict(os.environ) if environ is None else dict(environ),
        cwd=Path.cwd() if cwd is None else cwd,
        field_names=Settings.model_fields,
    )
    problems = [
        SettingsProblem(
            "unknown-variable",
            u.name,
            "<redacted>" if is_secret_name(u.name) else "?",
            "not a Falcon setting"
            + (f"; did you mean {u.suggestion}?" if u.suggestion else " (remove it)"),
            u.source,
        )
        for u in layers.unknown
    ]
    values: dict[str, Any] = dict(layers.values)
    values.update(overrides)
    sources = dict(layers.sources)
    sources.update(dict.fromkeys(overrides, "override"))
    settings: Settings | None = None
    try:
        # _env_file=None and init values for everything: the layers above are the truth.
        settings = Settings(_env_file=None, **values)
    except ValidationError as exc:
        problems.extend(validation_problems(exc, sources))
    if problems or settings is None:
        return None, problems
    settings._sources = sources
    settings._switches = dict(layers.switches)
    settings._files = tuple(str(f) for f in layers.files)
    return settings, []


SECRET_FIELDS = frozenset(
    name for name, info in Settings.model_fields.items() if "SecretStr" in str(info.annotation)
)


def is_secret_name(variable: str) -> bool:
    """``FALCON_ADMIN_TOKEN`` -> True; also any name that smells of a secret."""
    name = variable.upper().removeprefix("FALCON_").lower()
    return name in SECRET_FIELDS or any(w in name for w in ("token", "password", "secret", "key"))


def validation_problems(
    exc: ValidationError, sources: dict[str, str] | None = None
) -> list[SettingsProblem]:
    """Each pydantic error as a problem naming ``FALCON_X``; secrets are never shown."""
    problems: list[SettingsProblem] = []
    for error in exc.errors(include_url=False):
        name = str(error["loc"][0]) if error["loc"] else "?"
        variable = f"FALCON_{name.upper()}"
        value = "<redacted>" if is_secret_name(variable) else repr(error.get("input"))
        source = sources.get(name, "default") if sources else "default"
        problems.append(SettingsProblem("invalid-value", variable, value, error["msg"], source))
    return problems
