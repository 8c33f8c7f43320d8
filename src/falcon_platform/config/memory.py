"""Memory limits in force and what a memory sample means against them (pure arithmetic).

Used by the supervisor (watchdog, status) and by a worker (the limit it exports)::

    limits = memory_limits(spec_limit_mb=512, spec_soft_percent=80, env_limit_mb=None, env_soft_percent=None)
    memory_action(450 * 2**20, limits, kernel_enforced=False, already_recycling=False)  # RECYCLE
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


def memory_action(
    rss_bytes: int, limits: MemoryLimits, *, kernel_enforced: bool, already_recycling: bool
) -> MemoryAction:
    """What to do about a worker at ``rss_bytes``."""
    if limits.limit_bytes is not None and not kernel_enforced and rss_bytes >= limits.limit_bytes:
        return MemoryAction.KILL
    if limits.soft_bytes is not None and rss_bytes >= limits.soft_bytes and not already_recycling:
        return MemoryAction.RECYCLE
    return MemoryAction.NONE
