"""The control API's admin token: FALCON_ADMIN_TOKEN, else one generated on first start.

The generated token is stored in ``<run_dir>/admin_token`` with mode 0600 so only the
operator (and the CLI running as them) can read it::

    token = ensure_admin_token(settings)     # supervisor, at start
    token = read_admin_token(settings)       # CLI, before a state-changing call
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from falcon_platform.config.settings import Settings


def token_path(settings: Settings) -> Path:
    return settings.run_dir / "admin_token"


def read_admin_token(settings: Settings) -> str | None:
    """The token from the environment, else from the file, else None."""
    if settings.admin_token is not None:
        return settings.admin_token.get_secret_value()
    try:
        return token_path(settings).read_text().strip() or None
    except OSError:
        return None


def ensure_admin_token(settings: Settings) -> str:
    """Return the admin token, generating and storing one (0600) on first start."""
    existing = read_admin_token(settings)
    if existing:
        return existing
    path = token_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    # O_EXCL + 0600 at creation: the secret is never readable by others, not even briefly.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return token
