"""The release manager over a bare supervisor (no workers) and the real migrated SQLite store:
numbering across supervisor restarts, the config diff, refusals kept, secrets never stored."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import update

from falcon_platform.config.machine import MachineFacts
from falcon_platform.config.settings import Settings
from falcon_platform.config.spec import Spec
from falcon_platform.errors import (
    InvalidInputError,
    NotFoundError,
    ReleaseRefusedError,
    RuntimeStateError,
)
from falcon_platform.releases.manager import ReleaseManager
from falcon_platform.releases.record import ReleaseState
from falcon_platform.releases.store import ReleaseStore
from falcon_platform.stores import database
from falcon_platform.stores.schema import releases as releases_table
from falcon_platform.supervisor.release_gate import ReleaseGate
from falcon_platform.supervisor.supervisor import Supervisor
from falcon_platform.testing.journal import FakeEventJournal

SECRET = "s3cret-value-never-shown-0123456789"


def _manager(
    home: Path,
    journal: FakeEventJournal,
    environ: dict[str, str] | None = None,
    *,
    base_requested: bool = False,
) -> ReleaseManager:
    settings = Settings(home=home)
    database.upgrade(settings)
    gate = ReleaseGate(profile="dev", env_file=None, spec=Spec(), cwd=home,
                       base_environ={"FALCON_HOME": str(home), **(environ or {})},
                       machine=lambda: MachineFacts(16_000, 4))  # fmt: skip
    sup = Supervisor(settings, Spec(), journal, workers=1, release_gate=gate)
    manager = ReleaseManager(sup, ReleaseStore(database.make_engine(settings)), journal)
    manager.start(base_requested=base_requested)
    return manager


def test_releases_are_numbered_diffed_refused_and_kept_across_restarts(tmp_path: Path) -> None:
    journal = FakeEventJournal()
    manager = _manager(tmp_path, journal)
    [r0] = manager.list()
    assert (r0.id, r0.state) == ("r0", ReleaseState.STABLE)
    r1 = manager.create({"FALCON_LOG_LEVEL": "ERROR", "FALCON_ADMIN_TOKEN": SECRET},
                        reason="quieter logs", created_by="ana@host")  # fmt: skip
    assert (r1.id, r1.state, r1.from_release) == ("r1", ReleaseState.PENDING, "r0")
    assert r1.settings_fingerprint != r0.settings_fingerprint
    assert r1.spec_hash == r0.spec_hash
    diff = {row["key"]: row for row in r1.diff}
    assert set(diff) == {"admin_token", "log_level"}
    assert diff["admin_token"] == {"key": "admin_token", "old": "<secret>", "new": "changed"}
    assert diff["log_level"]["new"] == '"ERROR"'
    assert r1.env["FALCON_ADMIN_TOKEN"] == "<secret>"
    assert SECRET not in str(manager.get("r1").to_dict())
    assert SECRET not in str([e.details for e in journal.events])

    with pytest.raises(ReleaseRefusedError, match="cannot change in a running"):
        manager.create({"FALCON_PROFILE": "prod"}, reason="switch", created_by="ana@host")
    r2 = manager.get("r2")
    assert r2.state is ReleaseState.REFUSED
    assert r2.gate is not None
    assert r2.gate["verdict"] == "refused"
    with pytest.raises(InvalidInputError, match="needs a reason"):
        manager.create({}, reason="  ", created_by="ana@host")
    with pytest.raises(NotFoundError, match="no release 'r9'"):
        manager.get("r9")
    assert [e.kind for e in journal.events if e.kind == "release_created"] == [
        "release_created", "release_created"]  # fmt: skip

    again = _manager(tmp_path, journal)  # the supervisor restarted: same store
    assert [(r.id, r.state) for r in again.list()] == [
        ("r0", ReleaseState.STABLE), ("r1", ReleaseState.ABORTED), ("r2", ReleaseState.REFUSED)]  # fmt: skip
    assert again.create({"FALCON_LOG_LEVEL": "INFO"}, reason="x", created_by="b").id == "r3"


def test_a_release_a_restart_rolled_to_becomes_stable_before_the_next_deploy(
    tmp_path: Path,
) -> None:
    """`falcon restart --set` makes a supervisor release no deploy recorded; the next release
    builds on it and rolls from it (before, from the old stable, which ran no worker: the
    deploy shrank a pool that was already gone and every worker stopped at once)."""
    journal = FakeEventJournal()
    manager = _manager(tmp_path, journal)
    sup = manager.supervisor
    restarted = sup.add_release({"FALCON_LOG_LEVEL": "ERROR"})  # what a restart --set adds
    sup.set_desired({restarted.id: 1, "r0": 0})  # ... once its rolling restart finished
    assert manager.stable_id == "r0"
    new = manager.create({"FALCON_BATCH_MAX_SIZE": "16"}, reason="bigger", created_by="ana")
    assert manager.stable_id == restarted.id
    assert new.from_release == restarted.id
    assert new.env["FALCON_LOG_LEVEL"] == "ERROR"  # built on what runs, not on r0
    assert {row["key"] for row in new.diff} == {"batch_max_size"}
    states = {r.id: r.state for r in manager.list()}
    assert states["r0"] is ReleaseState.SUPERSEDED
    assert states[restarted.id] is ReleaseState.STABLE
    adopted = manager.get(restarted.id)
    assert adopted.created_by == "falcon restart"
    assert {row["key"] for row in adopted.diff} == {"log_level"}
    assert manager.adopt_running() is None  # nothing more to adopt


def test_a_release_from_before_a_restart_is_rebuilt_only_as_it_ran(tmp_path: Path) -> None:
    """`falcon rollback --to r1` after a supervisor restart: r1 is rebuilt from its stored
    overrides with this supervisor's secrets, and only when the result is what r1 ran (every
    setting, every secret's HMAC marker); its secret values were never stored."""
    journal = FakeEventJournal()
    base = {"FALCON_ADMIN_TOKEN": SECRET}
    manager = _manager(tmp_path, journal, base)
    other = "another-secret-value-0123456789abcdef"
    r1 = manager.create({"FALCON_LOG_LEVEL": "ERROR", "FALCON_ADMIN_TOKEN": SECRET},
                        reason="quieter", created_by="ana", allow_faults=True)  # fmt: skip
    r2 = manager.create({"FALCON_BATCH_MAX_SIZE": "16", "FALCON_ADMIN_TOKEN": other},
                        reason="bigger", created_by="ana")  # fmt: skip
    for record in (r1, r2):  # both promoted in turn
        manager.move(manager.get(record.id), ReleaseState.STABLE, "promoted")
    manager.move(manager.get("r1"), ReleaseState.SUPERSEDED, "r2 promoted")
    stored = str([r.to_dict() for r in manager.list()])
    assert SECRET not in stored
    assert other not in stored

    again = _manager(tmp_path, journal, base)  # the supervisor restarted
    sup = again.supervisor
    assert "r1" not in sup.releases
    again.restore(again.get("r1"))
    restored = sup.releases["r1"]
    assert restored.env == {"FALCON_LOG_LEVEL": "ERROR"}  # the secret comes from the supervisor
    assert restored.settings is not None
    assert restored.settings.log_level == "ERROR"
    assert restored.settings.admin_token is not None
    assert restored.settings.admin_token.get_secret_value() == SECRET
    assert "--allow-faults" in restored.gate_args
    assert [e.release for e in journal.events if e.kind == "release_restored"] == ["r1"]

    with pytest.raises(RuntimeStateError, match=r"admin_token: a secret, changed since") as exc:
        again.restore(again.get("r2"))
    assert other not in str(exc.value)
    assert "r2" not in sup.releases  # nothing changed

    # What r1 did not override it inherits from the supervisor it runs under (journaled)
    moved = _manager(tmp_path, journal, {**base, "FALCON_BATCH_MAX_WAIT_MS": "9"})
    moved.restore(moved.get("r1"))
    assert moved.supervisor.releases["r1"].settings.batch_max_wait_ms == 9  # type: ignore[union-attr]
    restored_events = [e for e in journal.events if e.kind == "release_restored"]
    assert restored_events[-1].details["inherited_changes"] == ["batch_max_wait_ms"]


def test_a_restarted_supervisor_resumes_the_last_stable_release(tmp_path: Path) -> None:
    """The workers of a restarted supervisor start on the release last promoted, restored from
    its record (before: on r0, the env file's settings -- a restart reverted the deploy);
    `falcon up --base` starts r0 on purpose; a release that cannot run as it ran (here: a
    secret it overrode changed) is not resumed, r0 runs and the note says why in one line."""
    journal = FakeEventJournal()
    base = {"FALCON_ADMIN_TOKEN": SECRET}
    manager = _manager(tmp_path, journal, base)
    assert manager.resume_note is None
    r1 = manager.create({"FALCON_LOG_LEVEL": "ERROR"}, reason="quieter", created_by="ana")
    manager.move(r1, ReleaseState.STABLE, "promoted")
    manager.move(manager.get("r0"), ReleaseState.SUPERSEDED, "r1 promoted")

    again = _manager(tmp_path, journal, base)  # the supervisor restarted
    assert again.stable_id == "r1"
    assert again.supervisor.desired == {"r1": 1}  # the workers start on r1, none on r0
    assert again.supervisor.releases["r1"].env == {"FALCON_LOG_LEVEL": "ERROR"}
    states = {r.id: r.state for r in again.list()}
    assert states == {"r0": ReleaseState.SUPERSEDED, "r1": ReleaseState.STABLE}
    [resumed] = [e for e in journal.events if e.kind == "release_resumed"]
    assert (resumed.release, resumed.details["base"]) == ("r1", "r0")
    assert resumed.details["overrides"] == ["FALCON_LOG_LEVEL"]
    assert again.resume_note is None

    on_purpose = _manager(tmp_path, journal, base, base_requested=True)  # falcon up --base
    assert (on_purpose.stable_id, on_purpose.supervisor.desired) == ("r0", {"r0": 1})
    assert {r.id: r.state for r in on_purpose.list()}["r1"] is ReleaseState.SUPERSEDED
    [skipped] = [e for e in journal.events if e.kind == "release_resume_skipped"]
    assert skipped.release == "r1"
    note = on_purpose.resume_note
    assert note is not None
    assert "started with `falcon up --base`, last stable r1 skipped" in note["line"]
    assert _manager(tmp_path, journal, base).stable_id == "r0"  # r0 is the stable one now

    # r2 overrides the secret; the next supervisor's environment has another one
    last = _manager(tmp_path, journal, base)
    r2 = last.create({"FALCON_ADMIN_TOKEN": "another-secret-value-0123456789abcdef"},
                     reason="rotate", created_by="ana")  # fmt: skip
    last.move(r2, ReleaseState.STABLE, "promoted")
    last.move(last.get("r0"), ReleaseState.SUPERSEDED, "r2 promoted")
    refused = _manager(tmp_path, journal, base)
    assert (refused.stable_id, refused.supervisor.desired) == ("r0", {"r0": 1})
    assert "r2" not in refused.supervisor.releases
    assert {r.id: r.state for r in refused.list()}["r2"] is ReleaseState.SUPERSEDED
    [event] = [e for e in journal.events if e.kind == "release_resume_refused"]
    assert event.release == "r2"
    assert (
        event.details["reason"] == "admin_token: a secret, changed since (its value is not stored)"
    )
    note = refused.resume_note
    assert note is not None
    assert note["line"] == (
        "running r0 (base); last stable r2 could not be resumed: admin_token: a secret, changed "
        "since (its value is not stored); `falcon rollback --to r2` after fixing it, or "
        "`falcon deploy`"
    )
    assert "another-secret" not in str(note) + str(event.details)
    refused.stable_id = "r2"  # a rollback or a deploy moved on: nothing left to say
    assert refused.resume_note is None


def test_a_stable_release_another_version_wrote_starts_the_base_and_says_so(
    tmp_path: Path,
) -> None:
    """A record this version cannot read (here: a state it does not know, as after a
    downgrade): the history still lists the others, the base runs, the release is named."""
    journal = FakeEventJournal()
    manager = _manager(tmp_path, journal)
    r1 = manager.create({"FALCON_LOG_LEVEL": "ERROR"}, reason="quieter", created_by="ana")
    manager.move(r1, ReleaseState.STABLE, "promoted")
    manager.move(manager.get("r0"), ReleaseState.SUPERSEDED, "r1 promoted")
    engine = database.make_engine(Settings(home=tmp_path))
    with engine.begin() as conn:
        conn.execute(
            update(releases_table)
            .where(releases_table.c.id == "r1")
            .values(record={**r1.to_dict(), "state": "paused-by-a-newer-version"})
        )
    engine.dispose()

    again = _manager(tmp_path, journal)
    assert (again.stable_id, again.supervisor.desired) == ("r0", {"r0": 1})
    assert [r.id for r in again.list()] == ["r0"]  # the rest of the history still reads
    note = again.resume_note
    assert note is not None
    assert note["skipped"] == "r1"
    assert "could not be resumed: its record cannot be read by this version" in note["line"]
    [event] = [e for e in journal.events if e.kind == "release_resume_refused"]
    assert event.release == "r1"


def test_a_restart_with_new_settings_after_a_supervisor_restart_takes_a_new_number(
    tmp_path: Path,
) -> None:
    """`falcon restart --set` numbered its release after the ids the running supervisor held
    only: after a restart it reused r1, a stored release's id, and adopting it moved that
    record (another release) to stable. Now it numbers after the store's ids as well."""
    journal = FakeEventJournal()
    manager = _manager(tmp_path, journal)
    refused = pytest.raises(ReleaseRefusedError)
    with refused:
        manager.create({"FALCON_PROFILE": "prod"}, reason="switch", created_by="ana")
    assert manager.get("r1").state is ReleaseState.REFUSED  # held only by the store
    assert manager.supervisor.start_rolling_restart({"FALCON_LOG_LEVEL": "ERROR"})[
        "to_release"] == "r2"  # fmt: skip

    again = _manager(tmp_path, journal)  # the supervisor restarted: it holds r0 only
    assert sorted(again.supervisor.releases) == ["r0"]
    rolling = again.supervisor.start_rolling_restart({"FALCON_LOG_LEVEL": "ERROR"})
    assert rolling["to_release"] == "r2"  # after r1 (refused, stored) -- not r1 again
    assert again.get("r1").state is ReleaseState.REFUSED
