"""Config changes are events: a fingerprint of the effective settings and spec.

The supervisor journals ``fingerprint(...).to_dict()`` at every start and, when it
differs from the previous start's, the changed keys::

    fp = fingerprint(settings, spec, salt=load_or_create_salt(settings.run_dir))
    changed = diff_fingerprints(Fingerprint.from_dict(previous), fp)   # ["log_level", ...]

Secrets never appear: each contributes ``unset`` or ``set:<HMAC of the value>``
(keyed by a per-installation salt), so a changed secret is detected by name
without exposing it. Per-process identity (``worker_id``, ``release``) is left
out, so every worker of a release shares one fingerprint.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr

from falcon_platform.config.settings import SECRET_FIELDS, Settings
from falcon_platform.config.spec import Spec

EXCLUDED = frozenset({"worker_id", "release"})
SALT_FILE = "fingerprint.salt"
# Used when no per-installation salt is given (tests, `falcon config show`).
DEFAULT_SALT = b"falcon-config-fingerprint"


@dataclass(frozen=True)
class Fingerprint:
    """``digest`` (sha256 hex) over ``values``: key -> canonical string, secrets masked."""

    digest: str
    profile: str
    values: dict[str, str] = field(default_factory=dict)
    secrets: frozenset[str] = frozenset()

    @property
    def short(self) -> str:
        return self.digest[:12]

    def to_dict(self) -> dict[str, Any]:
        return {
            "digest": self.digest,
            "profile": self.profile,
            "values": dict(sorted(self.values.items())),
            "secrets": sorted(self.secrets),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fingerprint:
        """Accepts ``to_dict()`` output, also wrapped as ``{"fingerprint": {...}}``."""
        if "fingerprint" in data and isinstance(data["fingerprint"], dict):
            data = data["fingerprint"]
        return cls(
            digest=str(data["digest"]),
            profile=str(data.get("profile", "?")),
            values={str(k): str(v) for k, v in dict(data.get("values", {})).items()},
            secrets=frozenset(str(s) for s in data.get("secrets", [])),
        )


def _canonical(value: Any) -> str:
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    return json.dumps(value, sort_keys=True, default=str)


def _flatten(prefix: str, data: Any, out: dict[str, str]) -> None:
    if isinstance(data, dict):
        for key, value in data.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), value, out)
    else:
        out[prefix] = _canonical(data)


def secret_marker(name: str, value: SecretStr | None, salt: bytes) -> str:
    """``unset`` or ``set:<12 hex of HMAC-SHA256(salt, name=value)>``; never the value."""
    if value is None:
        return "unset"
    mac = hmac.new(salt, f"{name}={value.get_secret_value()}".encode(), hashlib.sha256)
    return "set:" + mac.hexdigest()[:12]


def fingerprint(settings: Settings, spec: Spec, *, salt: bytes = DEFAULT_SALT) -> Fingerprint:
    """Pure: hash the effective non-secret values, secret markers and the whole spec."""
    values: dict[str, str] = {}
    for name in type(settings).model_fields:
        if name in EXCLUDED:
            continue
        raw = getattr(settings, name)
        if name in SECRET_FIELDS:
            values[name] = secret_marker(name, raw, salt)
        else:
            values[name] = _canonical(raw)
    _flatten("spec", spec.model_dump(mode="json"), values)
    digest = hashlib.sha256(_canonical(values).encode()).hexdigest()
    return Fingerprint(digest, settings.profile, values, frozenset(SECRET_FIELDS))


def diff_fingerprints(old: Fingerprint, new: Fingerprint) -> list[str]:
    """Sorted keys whose value differs (names only; secrets are markers anyway)."""
    if old.digest == new.digest:
        return []
    keys = set(old.values) | set(new.values)
    return sorted(k for k in keys if old.values.get(k) != new.values.get(k))


def describe_changes(old: Fingerprint, new: Fingerprint) -> list[dict[str, str]]:
    """The changes for display: key, old, new; secrets as ``changed`` without values."""
    rows = []
    for key in diff_fingerprints(old, new):
        if key in old.secrets or key in new.secrets:
            rows.append({"key": key, "old": "<secret>", "new": "<secret changed>"})
        else:
            rows.append(
                {"key": key, "old": old.values.get(key, "-"), "new": new.values.get(key, "-")}
            )
    return rows


def load_or_create_salt(directory: Path) -> bytes:
    """The per-installation salt (``<dir>/fingerprint.salt``, mode 0600), created once."""
    path = directory / SALT_FILE
    try:
        return path.read_bytes()
    except FileNotFoundError:
        directory.mkdir(parents=True, exist_ok=True)
        salt = secrets.token_bytes(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(salt)
        return salt


def salt_for(directory: Path) -> bytes:
    """The installation's salt if the supervisor created one, else the default (read-only)."""
    try:
        return (directory / SALT_FILE).read_bytes()
    except OSError:
        return DEFAULT_SALT
