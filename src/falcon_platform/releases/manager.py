"""The release manager: creates release records and keeps them in step with the supervisor.

Lives in the supervisor's process, on its event loop (the control API calls it)::

    manager = ReleaseManager(supervisor, ReleaseStore(engine), journal)
    manager.start()                              # records the release the supervisor runs
    record = manager.create({"FALCON_FAULTS": "leak_mb_per_request=5"}, reason="debug",
                            created_by="ana@host")
    manager.list(); manager.get("r3")

Every new release goes through the supervisor's config gate (``Supervisor.add_release``);
the load gate and the canary are ``releases.rollout``'s.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

from falcon_platform.config.fingerprint import fingerprint, salt_for
from falcon_platform.config.settings import Settings
from falcon_platform.errors import (
    FalconError,
    NotFoundError,
    ReleaseRefusedError,
    RuntimeStateError,
)
from falcon_platform.events.journal import EventJournal, EventKind
from falcon_platform.releases.record import (
    ReleaseRecord,
    ReleaseState,
    inherited_changes,
    masked_env,
    next_release_id,
    release_number,
    restore_env,
    restore_problems,
    settings_diff,
    settings_values,
    spec_hash,
    with_gate,
    with_state,
)
from falcon_platform.releases.store import ReleaseStore
from falcon_platform.supervisor.supervisor import Supervisor

log = logging.getLogger("falcon.releases")


def model_sha256(settings: Settings) -> str | None:
    """The sha256 of the model artifact these settings serve (None when it cannot be read)."""
    from falcon_platform.model.artifact import read_metadata

    try:
        return read_metadata(settings.resolved_model_path).sha256
    except FalconError:
        return None


class ReleaseManager:
    def __init__(self, supervisor: Supervisor, store: ReleaseStore, journal: EventJournal) -> None:
        self.supervisor = supervisor
        self.store = store
        self.journal = journal
        self.stable_id = supervisor.settings.release
        self._values: dict[str, dict[str, str]] = {}  # fingerprint values per running release

    # ----------------------------------------------------------------- reading
    def list(self) -> list[ReleaseRecord]:
        return self.store.all()

    def get(self, release_id: str) -> ReleaseRecord:
        record = self.store.get(release_id)
        if record is None:
            known = ", ".join(self.store.ids()) or "none"
            raise NotFoundError(
                f"no release {release_id!r} (known: {known}); see `falcon releases list`"
            )
        return record

    # ----------------------------------------------------------------- writing
    def save(self, record: ReleaseRecord) -> ReleaseRecord:
        self.store.put(record)
        return record

    def move(self, record: ReleaseRecord, state: ReleaseState, why: str) -> ReleaseRecord:
        return self.save(with_state(record, state, why=why, now=self.supervisor.clock.now()))

    def _fingerprint(self, settings: Settings) -> tuple[str, dict[str, str]]:
        fp = fingerprint(settings, self.supervisor.spec, salt=salt_for(settings.run_dir))
        return fp.digest, fp.values

    def start(self) -> ReleaseRecord:
        """Record the release the supervisor started with as the stable one; a release left
        stable or half-rolled-out by a previous supervisor is marked as what it now is."""
        now = self.supervisor.clock.now()
        base = self.supervisor.settings.release
        settings = self.supervisor.settings
        digest, values = self._fingerprint(settings)
        self._values[base] = values
        for record in self.store.all():
            if record.id == base:
                continue
            why = f"the supervisor restarted and runs {base}"
            if record.state is ReleaseState.STABLE:
                self.move(record, ReleaseState.SUPERSEDED, why)
            elif record.state in (ReleaseState.CANARY, ReleaseState.PENDING):
                self.move(record, ReleaseState.ABORTED, why)
        existing = self.store.get(base)
        if existing is not None:
            self.stable_id = base
            return self.move(existing, ReleaseState.STABLE, "the supervisor started with it")
        record = ReleaseRecord(
            id=base,
            number=release_number(base) or 0,
            created_at=now,
            created_by="falcon up",
            reason="the release the supervisor started with",
            model_sha256=model_sha256(settings),
            settings_fingerprint=digest,
            spec_hash=spec_hash(self.supervisor.spec.model_dump_json()),
            state=ReleaseState.STABLE,
            updated_at=now,
            history=[{"ts": round(now, 3), "from": None, "state": "stable", "why": "falcon up"}],
            settings_values=settings_values(values),
        )
        self.stable_id = base
        return self.save(record)

    def create(
        self,
        env: Mapping[str, str],
        *,
        reason: str,
        created_by: str,
        skip_gate_reason: str | None = None,
        allow_faults: bool = False,
    ) -> ReleaseRecord:
        """A new numbered release with ``env`` (``FALCON_*`` overrides over the stable
        release's), judged by the config gate. Refused -> stored as ``refused`` (with the
        gate's verdict) and ``ReleaseRefusedError`` raised."""
        if not reason.strip():
            from falcon_platform.errors import InvalidInputError

            raise InvalidInputError("a release needs a reason: --reason 'what changes and why'")
        if skip_gate_reason is not None and not skip_gate_reason.strip():
            from falcon_platform.errors import InvalidInputError

            raise InvalidInputError("--skip-gate needs a reason, e.g. --skip-gate 'INC-42 hotfix'")
        sup = self.supervisor
        self.adopt_running()
        stable = sup.releases.get(self.stable_id)
        merged = {**(stable.env if stable is not None else {}), **env}
        release_id = next_release_id([*self.store.ids(), *sup.releases])
        now = sup.clock.now()
        base = ReleaseRecord(
            id=release_id,
            number=release_number(release_id) or 0,
            created_at=now,
            created_by=created_by,
            reason=reason.strip(),
            model_sha256=None,
            settings_fingerprint="",
            spec_hash=spec_hash(sup.spec.model_dump_json()),
            env=masked_env(merged),
            from_release=self.stable_id,
            skip_gate_reason=skip_gate_reason.strip() if skip_gate_reason else None,
            updated_at=now,
            faults_allowed=allow_faults,
        )
        try:
            release = sup.add_release(
                merged,
                override_reason=base.skip_gate_reason,
                allow_faults=allow_faults,
                release_id=release_id,
            )
        except ReleaseRefusedError as exc:
            record = with_gate(
                base, {"verdict": "refused", "checks": [_config_check(False, exc.detail)]}, now=now
            )
            record = with_state(record, ReleaseState.REFUSED, why=exc.detail, now=now)
            self.save(record)
            self._journal_created(record)
            raise
        settings = release.settings if release.settings is not None else sup.settings
        digest, values = self._fingerprint(settings)
        self._values[release_id] = values
        stable_values = self._values.get(self.stable_id, {})
        record = dataclasses.replace(
            base,
            model_sha256=model_sha256(settings),
            settings_fingerprint=digest,
            diff=settings_diff(stable_values, values),
            settings_values=settings_values(values),
        )
        self.save(record)
        self._journal_created(record)
        return record

    def adopt_running(self) -> ReleaseRecord | None:
        """``falcon restart --set`` rolls the workers to a release no deploy made. Before a
        deploy or a rollback, the release most workers are desired on becomes the stable one
        (recorded, with its diff against the previous stable, which is superseded): otherwise a
        deploy shrank a pool that no longer ran and stopped every worker at once. None when
        the stable release is the one running."""
        sup = self.supervisor
        desired = {r: n for r, n in sup.desired.items() if n > 0}
        if not desired:
            return None
        running = max(desired, key=lambda r: desired[r])
        if running == self.stable_id or running not in sup.releases:
            return None
        release = sup.releases[running]
        settings = release.settings if release.settings is not None else sup.settings
        digest, values = self._fingerprint(settings)
        previous, now = self.stable_id, sup.clock.now()
        why = f"`falcon restart` rolled the workers from {previous} to {running}"
        old = self.store.get(previous)
        if old is not None and old.state is ReleaseState.STABLE:
            self.move(old, ReleaseState.SUPERSEDED, why)
        self._values[running] = values
        self.stable_id = running
        existing = self.store.get(running)
        if existing is not None:
            try:
                return self.move(existing, ReleaseState.STABLE, why)
            except ValueError:
                log.warning("release %s runs but its record cannot become stable", running)
                return existing
        record = ReleaseRecord(
            id=running,
            number=release_number(running) or 0,
            created_at=release.created_at or now,
            created_by="falcon restart",
            reason="a rolling restart with new settings, adopted as the stable release",
            model_sha256=model_sha256(settings),
            settings_fingerprint=digest,
            spec_hash=spec_hash(sup.spec.model_dump_json()),
            env=masked_env(release.env),
            from_release=previous,
            diff=settings_diff(self._values.get(previous, {}), values),
            state=ReleaseState.STABLE,
            updated_at=now,
            history=[{"ts": round(now, 3), "from": None, "state": "stable", "why": why}],
            faults_allowed="--allow-faults" in release.gate_args,
            settings_values=settings_values(values),
        )
        self.save(record)
        self._journal_created(record)
        return record

    def restore(self, record: ReleaseRecord) -> None:
        """Make ``record`` runnable again in this supervisor when a previous one created it
        (``falcon rollback --to rN`` after a supervisor restart); a no-op when it is held.

        Secret values are never stored, not even encrypted (a key to decrypt them would sit
        beside them): the release's non-secret overrides are stored in clear, its settings as
        fingerprint values (secrets as salted HMAC markers). It is rebuilt from its overrides
        with the secrets this supervisor has (its environment and env file), judged by the
        config gate like any new release, and accepted only when every setting it overrode is
        what it ran with (a secret: the same marker) and its model file has the same sha256.
        Otherwise nothing changes and ``RuntimeStateError`` names what differs, so a rollback
        never runs a release that only carries the old one's name. What it did not override
        it inherits from this supervisor, as any release does (journaled when it changed)."""
        sup = self.supervisor
        if record.id in sup.releases:
            return
        release = sup.add_release(
            restore_env(record),
            override_reason=record.skip_gate_reason,
            allow_faults=record.faults_allowed,
            release_id=record.id,
        )
        settings = release.settings if release.settings is not None else sup.settings
        digest, values = self._fingerprint(settings)
        problems = restore_problems(record, values=values, model_sha256=model_sha256(settings))
        if problems:
            del sup.releases[record.id]
            raise RuntimeStateError(
                f"{record.id} cannot be run again as it was: "
                + "; ".join(problems)
                + f". Deploy its settings again (`falcon deploy --env-file FILE`), or see "
                f"`falcon releases show {record.id}`"
            )
        self._values[record.id] = values
        self.journal.record(
            EventKind.RELEASE_RESTORED,
            release=record.id,
            details={"settings_fingerprint": digest, "model_sha256": record.model_sha256,
                     "overrides": sorted(record.env),
                     "inherited_changes": inherited_changes(record, values)},
        )  # fmt: skip

    def _journal_created(self, record: ReleaseRecord) -> None:
        self.journal.record(
            EventKind.RELEASE_CREATED,
            release=record.id,
            details={
                "reason": record.reason,
                "created_by": record.created_by,
                "from_release": record.from_release,
                "model_sha256": record.model_sha256,
                "settings_fingerprint": record.settings_fingerprint,
                "spec_hash": record.spec_hash,
                "changed_keys": [row["key"] for row in record.diff],
                "state": str(record.state),
            },
        )


def _config_check(passed: bool, detail: str) -> dict[str, Any]:
    return {"check": "config", "passed": passed, "detail": detail}
