"""The circuit breaker: pure transitions and the thread-safe shell (metrics, log lines)."""

from __future__ import annotations

import logging

import pytest

from falcon_platform.stores.breaker import (
    BreakerPolicy,
    BreakerSnapshot,
    BreakerState,
    CircuitBreaker,
    decide_allow,
    decide_failure,
    decide_success,
)
from falcon_platform.testing.clock import FakeClock

POLICY = BreakerPolicy(failure_threshold=3, reset_timeout_s=2.0)


def test_closed_breaker_opens_on_the_threshold_th_consecutive_failure() -> None:
    snap = BreakerSnapshot()
    snap = decide_failure(snap, POLICY, 1.0)
    snap = decide_failure(snap, POLICY, 1.1)
    assert snap.state is BreakerState.CLOSED
    snap = decide_failure(snap, POLICY, 1.2)
    assert snap.state is BreakerState.OPEN
    assert snap.changed_at == 1.2


def test_a_success_resets_the_consecutive_failure_count() -> None:
    snap = decide_failure(decide_failure(BreakerSnapshot(), POLICY, 0), POLICY, 0)
    snap = decide_success(snap, 0)
    snap = decide_failure(decide_failure(snap, POLICY, 0), POLICY, 0)
    assert snap.state is BreakerState.CLOSED


def test_open_breaker_refuses_until_the_reset_timeout_then_lets_one_probe_through() -> None:
    opened = BreakerSnapshot(BreakerState.OPEN, 3, 10.0)
    allowed, same = decide_allow(opened, POLICY, 11.9)
    assert not allowed
    assert same.state is BreakerState.OPEN
    allowed, probing = decide_allow(opened, POLICY, 12.0)
    assert allowed
    assert probing.state is BreakerState.HALF_OPEN
    allowed_again, _ = decide_allow(probing, POLICY, 12.1)
    assert not allowed_again, "only one probe at a time in half-open"


def test_probe_success_closes_and_probe_failure_reopens() -> None:
    probing = BreakerSnapshot(BreakerState.HALF_OPEN, 3, 12.0)
    assert decide_success(probing, 12.5).state is BreakerState.CLOSED
    reopened = decide_failure(probing, POLICY, 12.5)
    assert reopened.state is BreakerState.OPEN
    assert reopened.changed_at == 12.5


def test_shell_counts_transitions_reports_gauge_and_logs_each_transition(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("redis", POLICY, clock)
    caplog.set_level(logging.INFO, logger="falcon.stores.breaker")
    for _ in range(3):
        assert breaker.allow()
        breaker.record_failure(ConnectionError("refused"))
    assert breaker.state.gauge == 1
    assert not breaker.allow()
    clock.advance(2.0)
    assert breaker.allow()
    assert breaker.state.gauge == 2
    breaker.record_success()
    assert breaker.state.gauge == 0
    assert dict(breaker.transitions) == {"open": 1, "half_open": 1, "closed": 1}
    fields = [r.fields for r in caplog.records if hasattr(r, "fields")]
    moves = [(f["from_state"], f["to_state"]) for f in fields]
    assert moves == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]
    assert all(f["dependency"] == "redis" for f in fields)
    assert all(f["event"] == "circuit_breaker_transition" for f in fields)
