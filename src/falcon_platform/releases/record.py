"""A release: an immutable, numbered pairing of model + settings + spec, and its life.

What a release *is* never changes after it is created (model sha256, settings fingerprint, spec
hash, its ``FALCON_*`` overrides, who/when/why, the diff against the stable release). What
*happens* to it is appended: its state, the gate's verdict, each canary step's analysis::

    record = new_record("r3", env={"FALCON_LOG_LEVEL": "DEBUG"}, stable=stable_record, ...)
    record.state                       # "pending" -> "canary" -> "stable" | "aborted" | ...
    record = with_state(record, ReleaseState.REFUSED, why="gate: memory slope 1,500 MB/min", now=t)

Pure: no I/O. ``releases.store`` keeps records in the relational store.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from falcon_platform.config.settings import SECRET_FIELDS, is_secret_name

SECRET_SHOWN = "<secret>"  # noqa: S105 - a placeholder shown instead of a secret


class ReleaseState(StrEnum):
    PENDING = "pending"  # created; the gate has not decided yet
    REFUSED = "refused"  # the gate refused it: no user saw it
    CANARY = "canary"  # some workers run it beside the stable release
    STABLE = "stable"  # every worker runs it (promoted, or the release the supervisor started)
    SUPERSEDED = "superseded"  # was stable; another release was promoted over it
    ABORTED = "aborted"  # the canary was aborted (analysis or operator); stable restored
    ROLLED_BACK = "rolled_back"  # was stable; `falcon rollback` left it


# Which moves are allowed (a table, STYLE.md 7); anything else is a bug in the caller.
TRANSITIONS: dict[ReleaseState, frozenset[ReleaseState]] = {
    ReleaseState.PENDING: frozenset(
        {ReleaseState.REFUSED, ReleaseState.CANARY, ReleaseState.ABORTED, ReleaseState.STABLE}
    ),
    ReleaseState.REFUSED: frozenset(),
    ReleaseState.CANARY: frozenset({ReleaseState.STABLE, ReleaseState.ABORTED}),
    ReleaseState.STABLE: frozenset({ReleaseState.SUPERSEDED, ReleaseState.ROLLED_BACK}),
    ReleaseState.SUPERSEDED: frozenset({ReleaseState.STABLE}),  # a rollback returns to it
    ReleaseState.ABORTED: frozenset(),
    ReleaseState.ROLLED_BACK: frozenset({ReleaseState.STABLE}),
}
# A release a rollback may return to: it ran as stable once and was not rolled back as bad.
GOOD_STATES = frozenset({ReleaseState.STABLE, ReleaseState.SUPERSEDED})


@dataclass(frozen=True)
class ReleaseRecord:
    id: str
    number: int
    created_at: float
    created_by: str
    reason: str
    model_sha256: str | None
    settings_fingerprint: str
    spec_hash: str
    env: dict[str, str] = field(default_factory=dict)  # FALCON_* overrides, secrets masked
    from_release: str | None = None  # the stable release when this one was created
    diff: list[dict[str, str]] = field(default_factory=list)  # key, old, new (secrets masked)
    state: ReleaseState = ReleaseState.PENDING
    updated_at: float = 0.0
    skip_gate_reason: str | None = None
    gate: dict[str, Any] | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)  # ts, state, why
    # What a later supervisor needs to run this release again (``restore_env``,
    # ``restore_problems``): whether its workers may inject faults, and its settings as
    # ``config.fingerprint`` values (secrets as salted HMAC markers, the spec left out).
    faults_allowed: bool = False
    settings_values: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        body = dataclasses.asdict(self)
        body["state"] = str(self.state)
        return body

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReleaseRecord:
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        values["state"] = ReleaseState(str(values.get("state", "pending")))
        return cls(**values)


def release_number(release_id: str) -> int | None:
    """``"r12"`` -> 12; anything else -> None."""
    if release_id[:1] == "r" and release_id[1:].isdigit():
        return int(release_id[1:])
    return None


def next_release_id(taken: Any) -> str:
    """``r<n+1>`` after the highest ``r<n>`` in ``taken`` (ids, e.g. stored and running)."""
    numbers = [n for n in (release_number(str(r)) for r in taken) if n is not None]
    return f"r{max(numbers, default=0) + 1}"


def masked_env(env: Mapping[str, str]) -> dict[str, str]:
    """The overrides as stored and shown: secret values replaced by ``<secret>``."""
    return {k: (SECRET_SHOWN if is_secret_name(k) else v) for k, v in sorted(env.items())}


def settings_diff(old: Mapping[str, str], new: Mapping[str, str]) -> list[dict[str, str]]:
    """Changed keys between two fingerprints' values (``config.fingerprint``): key, old, new.

    A secret's values are never shown, only that it ``changed`` (fingerprints hold an HMAC of a
    secret, never the secret, and the HMAC is not shown either)."""
    rows: list[dict[str, str]] = []
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key), new.get(key)
        if before == after:
            continue
        if (
            is_secret_name(key)
            or (before or "").startswith("set:")
            or (after or "").startswith("set:")
        ):
            rows.append({"key": key, "old": SECRET_SHOWN, "new": "changed"})
        else:
            rows.append({"key": key, "old": before or "-", "new": after or "-"})
    return rows


def settings_values(values: Mapping[str, str]) -> dict[str, str]:
    """A fingerprint's values as a release keeps them: the settings without the spec (the spec
    is the supervisor's, not the release's; a rollback runs under the spec of the day)."""
    return {k: v for k, v in sorted(values.items()) if not k.startswith("spec.")}


def restore_env(record: ReleaseRecord) -> dict[str, str]:
    """The ``FALCON_*`` overrides to run ``record`` again in a supervisor that did not create
    it: its stored overrides without the secret ones (their values were never stored; the
    workers get the supervisor's own, and ``restore_problems`` checks those are the same). A
    setting only masked for its name (``FALCON_TLS_KEYFILE``, a path) is taken back from the
    record's settings values, which hold it in clear."""
    env: dict[str, str] = {}
    for key, value in record.env.items():
        if not (is_secret_name(key) and value == SECRET_SHOWN):
            env[key] = value
            continue
        stored = record.settings_values.get(_field(key))
        if _field(key) in SECRET_FIELDS or stored is None:
            continue
        kept = json.loads(stored)
        if kept is not None:
            env[key] = kept if isinstance(kept, str) else json.dumps(kept)
    return env


def _field(variable: str) -> str:
    return variable.upper().removeprefix("FALCON_").lower()


def restore_problems(
    record: ReleaseRecord, *, values: Mapping[str, str], model_sha256: str | None
) -> list[str]:
    """Why the settings rebuilt from ``restore_env`` (``values``: their fingerprint values;
    ``model_sha256``: of the model they point at) are not ``record``'s; empty when they are.

    What a release *is* is its overrides and its model: those must be the same (a secret is
    compared by its HMAC marker, named and never shown). Like every release, it inherits the
    rest from the supervisor it runs under (ports, paths, the env file's other keys):
    ``inherited_changes`` lists those, they are not a problem."""
    problems: list[str] = []
    overridden = {_field(k) for k in record.env}
    if record.settings_values:
        then = {k: v for k, v in record.settings_values.items() if k in overridden}
        now = {k: v for k, v in values.items() if k in overridden}
        for row in settings_diff(then, now):
            if row["new"] == "changed":
                problems.append(f"{row['key']}: a secret, changed since (its value is not stored)")
            else:
                problems.append(f"{row['key']}: {row['old']} then, {row['new']} now")
    else:
        for key in sorted(k for k, v in record.env.items() if v == SECRET_SHOWN):
            problems.append(
                f"{_field(key)}: a secret override in a record that kept no HMAC of it "
                "(created before releases kept their settings): it cannot be checked"
            )
    if record.model_sha256 and model_sha256 != record.model_sha256:
        now_sha = model_sha256[:12] if model_sha256 else "unreadable"
        problems.append(f"model sha256 {record.model_sha256[:12]} then, {now_sha} now")
    return problems


def inherited_changes(record: ReleaseRecord, values: Mapping[str, str]) -> list[str]:
    """Settings ``record`` did not override that differ from when it ran (names only)."""
    overridden = {_field(k) for k in record.env}
    now = settings_values(values)
    return (
        [
            row["key"]
            for row in settings_diff(record.settings_values, now)
            if row["key"] not in overridden
        ]
        if record.settings_values
        else []
    )


def spec_hash(spec_json: str) -> str:
    """sha256 of the spec's canonical JSON (``spec.model_dump_json()``)."""
    canonical = json.dumps(json.loads(spec_json), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def with_state(
    record: ReleaseRecord, state: ReleaseState, *, why: str, now: float
) -> ReleaseRecord:
    """The record moved to ``state`` (its history says why); ValueError on a move the table
    does not allow. Moving to the state it is in is a no-op."""
    if state == record.state:
        return record
    if state not in TRANSITIONS[record.state]:
        raise ValueError(f"release {record.id}: cannot move from {record.state} to {state}")
    entry = {"ts": round(now, 3), "from": str(record.state), "state": str(state), "why": why}
    return dataclasses.replace(
        record, state=state, updated_at=now, history=[*record.history, entry]
    )


def with_gate(record: ReleaseRecord, gate: Mapping[str, Any], *, now: float) -> ReleaseRecord:
    return dataclasses.replace(record, gate=dict(gate), updated_at=now)


def with_step(record: ReleaseRecord, step: Mapping[str, Any], *, now: float) -> ReleaseRecord:
    """One more canary analysis appended (the newest last)."""
    return dataclasses.replace(record, steps=[*record.steps, dict(step)], updated_at=now)
