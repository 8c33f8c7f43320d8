"""Which release a (re)started supervisor runs: the last stable one, or its base release.

A supervisor starts with its *base* release (``FALCON_RELEASE``, ``r0``): the settings of its
environment and env file as they are now. A deploy promoted later (``r2``) is kept in the
release store; when the supervisor restarts (a crash and systemd, ``falcon up`` again) it
resumes that release instead of silently reverting the deploy::

    stable = last_stable(store.all(), base="r0")          # r2, or None
    refusal = None if stable is None else try_restore(stable)   # the shell's I/O
    decision = resume_decision(stable, "r0", base_requested=False, refusal=refusal)
    # Resume("r2") | StartBase(why=..., skipped="r2" | None, refused=...)

The rule after the operator edited the env file between runs: a release is its overrides
(``FALCON_*`` keys it set) and its model, applied on top of the *current* base. What it did not
override comes from the env file of the day, as for any release (and is journaled). The resume
is refused only when something the release pinned differs from when it ran: an override that
no longer takes effect, a secret whose HMAC marker changed, the model file's sha256, or a gate
that now refuses it. Then the base runs, and ``falcon status`` says so in one line.

Pure: records in, a decision out; ``ReleaseManager.start`` performs it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from falcon_platform.releases.record import ReleaseRecord, ReleaseState


@dataclass(frozen=True)
class Resume:
    """Start the workers on ``release`` (restored from its record)."""

    release: str


@dataclass(frozen=True)
class StartBase:
    """Start the workers on the base release. ``skipped``: the stable release not resumed
    (None when the base is the stable release, or nothing was ever deployed); ``refused``:
    why it could not be resumed (None when it was skipped on purpose)."""

    base: str
    why: str
    skipped: str | None = None
    refused: str | None = None

    def note(self) -> dict[str, Any] | None:
        """What ``falcon status`` and ``falcon releases`` show (None: nothing to show)."""
        if self.skipped is None:
            return None
        if self.refused is not None:
            line = (
                f"running {self.base} (base); last stable {self.skipped} could not be resumed: "
                f"{self.refused}; `falcon rollback --to {self.skipped}` after fixing it, "
                "or `falcon deploy`"
            )
        else:
            line = (
                f"running {self.base} (base): started with `falcon up --base`, last stable "
                f"{self.skipped} skipped on purpose; `falcon rollback --to {self.skipped}` "
                "returns to it"
            )
        return {
            "base": self.base,
            "skipped": self.skipped,
            "refused": self.refused,
            "line": line,
        }


def last_stable(records: Iterable[ReleaseRecord], *, base: str) -> ReleaseRecord | None:
    """The release a previous supervisor left stable, when it is not ``base``; else None.

    One record is stable at a time; should a store hold several (a crash between two writes),
    the newest (highest ``updated_at``, then number) wins."""
    stable = [r for r in records if r.state is ReleaseState.STABLE and r.id != base]
    if not stable:
        return None
    return max(stable, key=lambda r: (r.updated_at, r.number))


UNREADABLE = "its record cannot be read by this version of Falcon (written by another version?)"


def resume_decision(
    stable: ReleaseRecord | None,
    base: str,
    *,
    base_requested: bool = False,
    refusal: str | None = None,
    unreadable: dict[str, str] | None = None,
) -> Resume | StartBase:
    """What to start: ``stable`` (from ``last_stable``) unless there is none, the operator
    asked for the base (``falcon up --base``), or restoring it was refused (``refusal``:
    why, from ``ReleaseManager.restore``). ``unreadable`` (id -> stored state, of records
    this version cannot read): a stable one among them, when no readable release is stable,
    is a release left stable that cannot be resumed."""
    if stable is None:
        left = [i for i, state in (unreadable or {}).items() if state == "stable" and i != base]
        if left and not base_requested:
            return StartBase(base, why=f"{left[-1]}: {UNREADABLE}", skipped=left[-1],
                             refused=UNREADABLE)  # fmt: skip
        if left:
            return StartBase(base, why="`falcon up --base`", skipped=left[-1])
        return StartBase(base, why=f"{base} is the stable release")
    if base_requested:
        return StartBase(
            base,
            why=f"`falcon up --base`: the env file as it is; {stable.id} skipped on purpose",
            skipped=stable.id,
        )
    if refusal is not None:
        return StartBase(
            base,
            why=f"{stable.id} could not be resumed: {refusal}",
            skipped=stable.id,
            refused=refusal,
        )
    return Resume(stable.id)
