"""One circuit breaker per dependency: closed -> open -> half-open -> closed.

The decisions are pure functions over a frozen :class:`BreakerSnapshot` and a
``now`` (monotonic seconds); :class:`CircuitBreaker` is the thin, thread-safe
shell that keeps the snapshot, counts transitions and logs each one::

    breaker = CircuitBreaker("redis", BreakerPolicy(failure_threshold=3, reset_timeout_s=2))
    if breaker.allow():
        try:
            value = await redis.get(key)
        except RedisError:
            breaker.record_failure()
        else:
            breaker.record_success()

Written by hand (one line why): purgatory runs every call through an async message bus
with no injectable clock, pybreaker is sync-only (its async path needs tornado) and
aiobreaker is unmaintained since 2021; we need one breaker usable from both the event
loop (Redis) and the shipper thread (PostgreSQL), at near-zero cost per call.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from dataclasses import dataclass, replace
from enum import StrEnum

from falcon_platform.clock import Clock, SystemClock
from falcon_platform.stores.base import BREAKER_CLOSED, BREAKER_HALF_OPEN, BREAKER_OPEN

logger = logging.getLogger("falcon.stores.breaker")


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"

    @property
    def gauge(self) -> int:
        """The value of ``falcon_circuit_breaker_state`` (0 closed, 1 open, 2 half-open)."""
        return {
            BreakerState.CLOSED: BREAKER_CLOSED,
            BreakerState.OPEN: BREAKER_OPEN,
            BreakerState.HALF_OPEN: BREAKER_HALF_OPEN,
        }[self]


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    failure_threshold: int = 5  # consecutive failures that open the breaker
    reset_timeout_s: float = 5.0  # how long it stays open before one probe is let through


@dataclass(frozen=True, slots=True)
class BreakerSnapshot:
    state: BreakerState = BreakerState.CLOSED
    failures: int = 0  # consecutive failures while closed
    changed_at: float = 0.0  # monotonic time of the last transition (or of the last probe)


def decide_allow(
    snap: BreakerSnapshot, policy: BreakerPolicy, now: float
) -> tuple[bool, BreakerSnapshot]:
    """May a call go through now? Open -> half-open once the reset timeout has passed.

    In half-open exactly one probe is in flight; if it never reports back (cancelled),
    another probe is allowed after a further reset timeout.

    >>> allowed, snap = decide_allow(BreakerSnapshot(BreakerState.OPEN, 5, 0.0), BreakerPolicy(5, 2.0), 3.0)
    >>> allowed, snap.state
    (True, <BreakerState.HALF_OPEN: 'half_open'>)
    """
    if snap.state is BreakerState.CLOSED:
        return True, snap
    if now - snap.changed_at >= policy.reset_timeout_s:
        return True, replace(snap, state=BreakerState.HALF_OPEN, changed_at=now)
    return False, snap


def decide_success(snap: BreakerSnapshot, now: float) -> BreakerSnapshot:
    """A call succeeded: a half-open breaker closes; a closed one forgets its failures."""
    if snap.state is BreakerState.CLOSED:
        return snap if snap.failures == 0 else replace(snap, failures=0)
    return BreakerSnapshot(BreakerState.CLOSED, 0, now)


def decide_failure(snap: BreakerSnapshot, policy: BreakerPolicy, now: float) -> BreakerSnapshot:
    """A call failed: the threshold-th consecutive failure opens; a failed probe re-opens."""
    if snap.state is BreakerState.CLOSED:
        failures = snap.failures + 1
        if failures >= policy.failure_threshold:
            return BreakerSnapshot(BreakerState.OPEN, failures, now)
        return replace(snap, failures=failures)
    if snap.state is BreakerState.HALF_OPEN:
        return BreakerSnapshot(BreakerState.OPEN, snap.failures + 1, now)
    return snap  # a late failure of a call started before opening changes nothing


class CircuitBreaker:
    """Thread-safe shell around the pure decisions; logs every transition as a structured line."""

    def __init__(
        self, name: str, policy: BreakerPolicy | None = None, clock: Clock | None = None
    ) -> None:
        self.name = name
        self.policy = policy or BreakerPolicy()
        self._clock: Clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._snap = BreakerSnapshot(changed_at=self._clock.monotonic())
        self.transitions: Counter[str] = Counter()  # to_state -> count

    @property
    def state(self) -> BreakerState:
        return self._snap.state

    @property
    def is_closed(self) -> bool:
        return self._snap.state is BreakerState.CLOSED

    def allow(self) -> bool:
        with self._lock:
            if self._snap.state is BreakerState.CLOSED:  # fast path: no allocation
                return True
            allowed, new = decide_allow(self._snap, self.policy, self._clock.monotonic())
            self._set(new)
            return allowed

    def record_success(self) -> None:
        with self._lock:
            if self._snap.state is BreakerState.CLOSED and self._snap.failures == 0:
                return
            self._set(decide_success(self._snap, self._clock.monotonic()))

    def record_failure(self, error: BaseException | None = None) -> None:
        with self._lock:
            self._set(decide_failure(self._snap, self.policy, self._clock.monotonic()), error)

    def _set(self, new: BreakerSnapshot, error: BaseException | None = None) -> None:
        old = self._snap
        self._snap = new
        if new.state is not old.state:
            self.transitions[new.state.value] += 1
            level = logging.INFO if new.state is BreakerState.CLOSED else logging.WARNING
            logger.log(
                level,
                "circuit breaker %s: %s -> %s",
                self.name,
                old.state.value,
                new.state.value,
                extra={
                    "fields": {
                        "event": "circuit_breaker_transition",
                        "dependency": self.name,
                        "from_state": old.state.value,
                        "to_state": new.state.value,
                        "failures": new.failures,
                        "error": repr(error) if error is not None else None,
                    }
                },
            )
