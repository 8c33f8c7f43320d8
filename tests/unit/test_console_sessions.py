"""The console's sign-in: the admin token once, then a session with its CSRF token."""

from __future__ import annotations

from falcon_platform.control.console.sessions import MAX_SESSIONS, SessionStore, same_origin
from falcon_platform.testing.clock import FakeClock


def test_only_the_admin_token_signs_in() -> None:
    store = SessionStore("s3cret-token")
    assert store.sign_in("wrong") is None
    assert store.sign_in("") is None
    session = store.sign_in("s3cret-token\n")  # pasted with a newline
    assert session is not None
    assert store.get(session.id) is session
    assert session.id != session.csrf
    assert len(session.id) >= 40


def test_sessions_expire_and_sign_out() -> None:
    clock = FakeClock()
    store = SessionStore("t", clock=clock.now, ttl_s=60)
    session = store.sign_in("t")
    assert session is not None
    clock.advance(59)
    assert store.get(session.id) is session
    clock.advance(2)
    assert store.get(session.id) is None
    other = store.sign_in("t")
    assert other is not None
    store.sign_out(other.id)
    assert store.get(other.id) is None
    assert store.get(None) is None
    assert store.get("made-up") is None


def test_csrf_token_must_match() -> None:
    store = SessionStore("t")
    session = store.sign_in("t")
    assert session is not None
    assert store.check_csrf(session, session.csrf)
    assert not store.check_csrf(session, None)
    assert not store.check_csrf(session, "")
    assert not store.check_csrf(session, session.csrf + "x")


def test_sign_ins_cannot_grow_memory_without_bound() -> None:
    store = SessionStore("t")
    first = store.sign_in("t")
    assert first is not None
    for _ in range(MAX_SESSIONS + 10):
        store.sign_in("t")
    assert store.get(first.id) is None  # the oldest went first
    assert len(store._sessions) == MAX_SESSIONS


def test_same_origin() -> None:
    assert same_origin(None, "127.0.0.1:8001")
    assert same_origin("http://127.0.0.1:8001", "127.0.0.1:8001")
    assert not same_origin("http://evil.example", "127.0.0.1:8001")
    assert not same_origin("null", "127.0.0.1:8001")
    assert not same_origin("http://127.0.0.1:8001", None)
