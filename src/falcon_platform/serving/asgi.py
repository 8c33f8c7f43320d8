"""``uvicorn --factory falcon_platform.serving.asgi:create_app_from_env``: settings from FALCON_*.

    FALCON_HOME=/tmp/f uvicorn --factory falcon_platform.serving.asgi:create_app_from_env \\
        --host 127.0.0.1 --port 8080 --no-access-log

SIGTERM fails readiness at once, lets in-flight requests finish, ships the request log.
Plain uvicorn has none of the public port's guards (header timeout and limits, connection cap:
``worker/connections.py``): expose ``falcon worker`` / ``falcon up``, not this, to clients.
"""

from __future__ import annotations

from fastapi import FastAPI

from falcon_platform.chaos.faults import build_injector
from falcon_platform.config.settings import load_settings
from falcon_platform.malloc import fix_mmap_threshold
from falcon_platform.observability.logging import configure_logging
from falcon_platform.serving.app import create_app


def create_app_from_env() -> FastAPI:
    fix_mmap_threshold()  # as `falcon worker` does: freed big blocks go back to the kernel
    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    # No --allow-faults here: FALCON_FAULTS under the prod profile is refused (ConfigError).
    faults = build_injector(settings, allow_faults=False)
    return create_app(settings, faults=faults, drain_on_signal=True)
