"""Which release a restarted supervisor runs: the pure decision (``releases.resume``)."""

from __future__ import annotations

from falcon_platform.releases.record import ReleaseRecord, ReleaseState, release_number
from falcon_platform.releases.resume import (
    UNREADABLE,
    Resume,
    StartBase,
    last_stable,
    resume_decision,
)


def _record(release_id: str, state: ReleaseState, updated_at: float = 1000.0) -> ReleaseRecord:
    return ReleaseRecord(
        id=release_id,
        number=release_number(release_id) or 0,
        created_at=900.0,
        created_by="ana@host",
        reason="a fix",
        model_sha256="a" * 64,
        settings_fingerprint="f" * 64,
        spec_hash="s" * 64,
        state=state,
        updated_at=updated_at,
    )


def test_the_release_left_stable_is_the_one_to_resume_unless_it_is_the_base() -> None:
    s = ReleaseState
    history = [_record("r0", s.SUPERSEDED), _record("r1", s.SUPERSEDED),
               _record("r2", s.STABLE), _record("r3", s.ABORTED), _record("r4", s.CANARY)]  # fmt: skip
    assert last_stable(history, base="r0") == history[2]
    assert last_stable([_record("r0", s.STABLE), _record("r1", s.SUPERSEDED)], base="r0") is None
    assert last_stable([], base="r0") is None
    # refused, aborted, rolled back or half rolled out: never resumed
    assert last_stable([_record("r1", s.ROLLED_BACK), _record("r2", s.REFUSED),
                        _record("r3", s.PENDING), _record("r4", s.CANARY)], base="r0") is None  # fmt: skip
    # two left stable (a crash between two writes): the one moved last
    two = [_record("r1", s.STABLE, updated_at=2000.0), _record("r2", s.STABLE, 1500.0)]
    assert last_stable(two, base="r0") == two[0]


def test_resume_unless_none_asked_for_the_base_or_refused() -> None:
    r2 = _record("r2", ReleaseState.STABLE)
    assert resume_decision(r2, "r0") == Resume("r2")
    nothing = resume_decision(None, "r0")
    assert isinstance(nothing, StartBase)
    assert (nothing.skipped, nothing.refused, nothing.note()) == (None, None, None)
    assert resume_decision(None, "r0", base_requested=True) == nothing

    skipped = resume_decision(r2, "r0", base_requested=True, refusal="never asked")
    assert isinstance(skipped, StartBase)
    assert (skipped.base, skipped.skipped, skipped.refused) == ("r0", "r2", None)
    note = skipped.note()
    assert note is not None
    assert note["line"] == (
        "running r0 (base): started with `falcon up --base`, last stable r2 skipped on "
        "purpose; `falcon rollback --to r2` returns to it"
    )

    why = "model sha256 aaaaaaaaaaaa then, bbbbbbbbbbbb now"
    refused = resume_decision(r2, "r0", refusal=why)
    assert isinstance(refused, StartBase)
    assert (refused.skipped, refused.refused) == ("r2", why)
    assert refused.note() == {
        "base": "r0",
        "skipped": "r2",
        "refused": why,
        "line": "running r0 (base); last stable r2 could not be resumed: model sha256 "
        "aaaaaaaaaaaa then, bbbbbbbbbbbb now; `falcon rollback --to r2` after fixing it, "
        "or `falcon deploy`",
    }


def test_a_stable_release_whose_record_cannot_be_read_is_refused_by_name() -> None:
    """A record written by another version (a downgrade): the store still says which release
    was stable; it is named as not resumed, not passed over in silence."""
    unreadable = {"r3": "stable", "r4": "aborted", "r0": "stable"}
    refused = resume_decision(None, "r0", unreadable=unreadable)
    assert isinstance(refused, StartBase)
    assert (refused.skipped, refused.refused) == ("r3", UNREADABLE)
    note = refused.note()
    assert note is not None
    assert note["line"].startswith(
        "running r0 (base); last stable r3 could not be resumed: its record cannot be read"
    )
    on_purpose = resume_decision(None, "r0", base_requested=True, unreadable=unreadable)
    assert isinstance(on_purpose, StartBase)
    assert (on_purpose.skipped, on_purpose.refused) == ("r3", None)
    # none of them stable, or a readable release is stable: nothing to say about them
    assert resume_decision(None, "r0", unreadable={"r4": "aborted"}).note() is None  # type: ignore[union-attr]
    r5 = _record("r5", ReleaseState.STABLE)
    assert resume_decision(r5, "r0", unreadable=unreadable) == Resume("r5")
