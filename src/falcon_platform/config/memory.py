"""Memory limits in force and what a memory sample means against them (pure arithmetic).

Used by the supervisor (watchdog, status) and by a worker (the limit it exports)::

    limits = memory_limits(spec_limit_mb=512, spec_soft_percent=80, env_limit_mb=None, env_soft_percent=None)
    memory_action(450 * 2**20, limits, kernel_enforced=False, already_recycling=False)  # RECYCLE

The limits apply to what a worker owns, its PSS (proportional set size: private pages plus
its share of pages shared with the zygote and its siblings), not to its RSS, which charges
every forked worker in full for the model pages they all share. PSS costs a page-table walk
(``/proc/<pid>/smaps_rollup``), RSS a read of ``statm``; since PSS <= RSS, a worker whose
RSS is below the lowest limit is below it by PSS too (:func:`needs_owned_sample`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class MemoryAction(StrEnum):
    NONE = "none"
    RECYCLE = "recycle"  # soft limit: drain and replace gracefully
    KILL = "kill"  # hard limit reached and the kernel is not enforcing it: SIGKILL (OOMKilled)


@dataclass(frozen=True, slots=True)
class MemoryLimits:
    limit_bytes: int | None  # None = off
    soft_bytes: int | None  # None = off

    @property
    def limit_mb(self) -> int:
        return (self.limit_bytes or 0) // 1_048_576


def memory_limits(
    spec_limit_mb: int,
    spec_soft_percent: int,
    env_limit_mb: int | None,
    env_soft_percent: int | None,
) -> MemoryLimits:
    """Effective limits: the environment overrides the spec; 0 turns either off."""
    limit_mb = env_limit_mb if env_limit_mb is not None else spec_limit_mb
    soft_pct = env_soft_percent if env_soft_percent is not None else spec_soft_percent
    if limit_mb <= 0:
        return MemoryLimits(None, None)
    limit = limit_mb * 1_048_576
    soft = limit * soft_pct // 100 if 0 < soft_pct < 100 else None
    return MemoryLimits(limit, soft)


def needs_owned_sample(rss_bytes: int, limits: MemoryLimits) -> bool:
    """True when RSS reaches the lowest limit in force, so only PSS can tell whether it acts."""
    in_force = [b for b in (limits.soft_bytes, limits.limit_bytes) if b is not None]
    return bool(in_force) and rss_bytes >= min(in_force)


def memory_action(
    charged_bytes: int, limits: MemoryLimits, *, kernel_enforced: bool, already_recycling: bool
) -> MemoryAction:
    """What to do about a worker charged ``charged_bytes`` (its PSS; its RSS when that is
    below every limit or PSS cannot be read)."""
    hard = limits.limit_bytes
    if hard is not None and not kernel_enforced and charged_bytes >= hard:
        return MemoryAction.KILL
    soft = limits.soft_bytes
    if soft is not None and charged_bytes >= soft and not already_recycling:
        return MemoryAction.RECYCLE
    return MemoryAction.NONE
