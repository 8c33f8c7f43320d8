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
from collections.abc import Mapping, Sequence
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
from falcon_platform.releases.resume import Resume, StartBase, last_stable, resume_decision
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
        self._resume_note: dict[str, Any] | None = None

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
        self.supervisor.taken_release_ids.add(record.id)
        return record

    def move(self, record: ReleaseRecord, state: ReleaseState, why: str) -> ReleaseRecord:
        return self.save(with_state(record, state, why=why, now=self.supervisor.clock.now()))

    def _fingerprint(self, settings: Settings) -> tuple[str, dict[str, str]]:
        fp = fingerprint(settings, self.supervisor.spec, salt=salt_for(settings.run_dir))
        return fp.digest, fp.values

    def start(self, *, base_requested: bool = False) -> ReleaseRecord:
        """Decide which release the workers start on, before any starts (``releases.resume``):
        the release a previous supervisor left stable, restored from its record (journaled
        ``release_resumed``), unless there is none, the operator asked for the base
        (``falcon up --base``: ``release_resume_skipped``) or it cannot be run again as it ran
        (``release_resume_refused``, and ``resume_note`` says so). Returns the stable record;
        a release left half-rolled-out is marked aborted, any other stable one superseded."""
        base = self.supervisor.settings.release
        self.supervisor.taken_release_ids.update(self.store.ids())  # `falcon restart --set`
        stable = last_stable(self.store.all(), base=base)
        refusal = details = None
        if stable is not None and not base_requested:
            refusal, details = self._try_restore(stable)
        decision = resume_decision(stable, base, base_requested=base_requested, refusal=refusal,
                                   unreadable=self.store.unreadable() if stable is None else None)  # fmt: skip
        if isinstance(decision, Resume) and stable is not None:
            return self._resume(stable, details or {})
        assert isinstance(decision, StartBase)
        return self._start_base(decision)

    @property
    def resume_note(self) -> dict[str, Any] | None:
        """Why the supervisor started on its base release instead of the last stable one
        (``StartBase.note``), while the base is still the stable release; else None."""
        note = self._resume_note
        return note if note is not None and note["base"] == self.stable_id else None

    def _try_restore(self, record: ReleaseRecord) -> tuple[str | None, dict[str, Any] | None]:
        """(why ``record`` cannot be restored, None) or (None, what was restored)."""
        try:
            problems, details = self._rebuild(record)
        except FalconError as exc:  # the gate refuses it now, a record it cannot read ...
            return exc.detail, None
        except Exception as exc:  # never a crash loop over a stored record
            log.exception("cannot restore %s", record.id)
            return f"{type(exc).__name__}: {exc}", None
        return ("; ".join(problems), None) if problems else (None, details)

    def _resume(self, stable: ReleaseRecord, details: dict[str, Any]) -> ReleaseRecord:
        sup, base = self.supervisor, self.supervisor.settings.release
        _, self._values[base] = self._fingerprint(sup.settings)
        why = f"the supervisor restarted and resumed {stable.id}"
        self._settle_others(keep=stable.id, why=why)
        if self.store.get(base) is None:  # a rollback to the base stays possible
            self.save(self._base_record(ReleaseState.SUPERSEDED, why))
        sup.set_desired({stable.id: sum(sup.desired.values())})
        self.stable_id = stable.id
        self.journal.record(
            EventKind.RELEASE_RESUMED, release=stable.id, details={"base": base, **details}
        )
        log.warning("resuming %s, the last stable release (base %s)", stable.id, base)
        return stable

    def _start_base(self, decision: StartBase) -> ReleaseRecord:
        base = decision.base
        _, self._values[base] = self._fingerprint(self.supervisor.settings)
        self._settle_others(keep=base, why=f"the supervisor restarted and runs {base}: "
                            + decision.why)  # fmt: skip
        self._resume_note = decision.note()
        self.stable_id = base
        if decision.skipped is not None:
            kind = (
                EventKind.RELEASE_RESUME_REFUSED
                if decision.refused is not None
                else EventKind.RELEASE_RESUME_SKIPPED
            )
            self.journal.record(
                kind,
                release=decision.skipped,
                details={"base": base, "reason": decision.refused or decision.why,
                         "line": (self._resume_note or {}).get("line")},
            )  # fmt: skip
            log.error("%s", (self._resume_note or {}).get("line"))
        existing = self.store.get(base)
        if existing is not None:
            if existing.state is ReleaseState.STABLE:
                return existing
            return self.move(existing, ReleaseState.STABLE, "the supervisor started with it")
        return self.save(self._base_record(ReleaseState.STABLE, "falcon up"))

    def _settle_others(self, *, keep: str, why: str) -> None:
        for record in self.store.all():
            if record.id == keep:
                continue
            if record.state is ReleaseState.STABLE:
                self.move(record, ReleaseState.SUPERSEDED, why)
            elif record.state in (ReleaseState.CANARY, ReleaseState.PENDING):
                self.move(record, ReleaseState.ABORTED, why)

    def _base_record(self, state: ReleaseState, why: str) -> ReleaseRecord:
        sup = self.supervisor
        now, settings = sup.clock.now(), sup.settings
        digest, values = self._fingerprint(settings)
        return ReleaseRecord(
            id=settings.release,
            number=release_number(settings.release) or 0,
            created_at=now,
            created_by="falcon up",
            reason="the release the supervisor started with",
            model_sha256=model_sha256(settings),
            settings_fingerprint=digest,
            spec_hash=spec_hash(sup.spec.model_dump_json()),
            state=state,
            updated_at=now,
            history=[{"ts": round(now, 3), "from": None, "state": str(state), "why": why}],
            settings_values=settings_values(values),
        )

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
        problems, details = self._rebuild(record)
        if problems:
            raise RuntimeStateError(
                f"{record.id} cannot be run again as it was: "
                + "; ".join(problems)
                + f". Deploy its settings again (`falcon deploy --env-file FILE`), or see "
                f"`falcon releases show {record.id}`"
            )
        if details:
            self.journal.record(EventKind.RELEASE_RESTORED, release=record.id, details=details)

    def _rebuild(self, record: ReleaseRecord) -> tuple[Sequence[str], dict[str, Any]]:
        """``restore`` without the raise: (what differs, empty when it was added to the
        supervisor's releases; what was restored, empty when it was held already)."""
        sup = self.supervisor
        if record.id in sup.releases:
            return [], {}
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
            return problems, {}
        self._values[record.id] = values
        return [], {"settings_fingerprint": digest, "model_sha256": record.model_sha256,
                    "overrides": sorted(record.env),
                    "inherited_changes": inherited_changes(record, values)}  # fmt: skip

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
