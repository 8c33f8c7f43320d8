"""Runtime settings: one typed object, built once at the edge and passed down.

Every variable has the ``FALCON_`` prefix. Nothing here reads the environment
at import time: call :func:`load_settings` (the CLI and the ASGI factory do).
Secrets are ``SecretStr`` and never appear in ``repr``, logs or fingerprints.

Loading order, lowest precedence first (documented in README and tested):
field defaults < ``config/<profile>.env`` < ``.env`` (or ``--env-file``) < process environment.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
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

    # --- model ------------------------------------------------------------------------------
    model_name: str = Field(default="sentiment", pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$")
    model_path: Path | None = Field(
        default=None, description="Model directory; default <home>/models/<model_name>."
    )

    # --- request limits ---------------------------------------------------------------------
    max_text_chars: int = Field(default=10_000, ge=1, le=1_000_000)
    max_batch_items: int = Field(default=256, ge=1, le=10_000)
    max_body_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576)

    # --- micro-batcher ----------------------------------------------------------------------
    batch_max_size: int = Field(default=64, ge=1, le=4096)
    batch_max_wait_ms: float = Field(default=2.0, ge=0, le=1000)
    queue_max: int = Field(default=2048, ge=1, le=1_000_000)
    inference_timeout_ms: float = Field(default=5000, gt=0, le=600_000)

    # --- cache and idempotency --------------------------------------------------------------
    cache_max_entries: int = Field(default=50_000, ge=0)
    cache_max_bytes: int = Field(default=64 * 1_048_576, ge=0)
    cache_ttl_s: float = Field(default=600, ge=0)
    idempotency_ttl_s: float = Field(default=86_400, gt=0)

    # --- production backends ----------------------------------------------------------------
    redis_url: SecretStr | None = None
    redis_timeout_ms: float = Field(default=50, gt=0, le=60_000)
    redis_pool_size: int = Field(default=32, ge=1, le=10_000)
    database_url: SecretStr | None = None
    database_pool_size: int = Field(default=5, ge=1, le=1000)
    database_timeout_s: float = Field(default=5.0, gt=0, le=300)

    # --- request log ------------------------------------------------------------------------
    log_inputs: bool = False
    request_log_disk_budget_mb: int = Field(default=1024, ge=1)
    request_log_flush_interval_ms: float = Field(default=200, gt=0, le=60_000)
    request_log_ship_batch: int = Field(default=1000, ge=1, le=100_000)

    # --- logs, alerts -----------------------------------------------------------------------
    log_level: LogLevel = "INFO"
    log_format: LogFormat = "json"
    alert_webhook_url: str | None = None
    sli_scrape_interval_s: float = Field(default=1.0, gt=0, le=300)
    sli_retention_days: float = Field(default=7, gt=0, le=400)

    # --- fault injection (falcon_platform.chaos only; refused in prod without --allow-faults)
    faults: str = ""

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
    def worker_count(self) -> int:
        return self.workers if self.workers is not None else (os.cpu_count() or 1)


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment (and, later, profile files); overrides win.

    The one place the environment is read. ``config.profiles`` extends this with the
    profile-file and ``.env`` layers.
    """
    return Settings(**overrides)
