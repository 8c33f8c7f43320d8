"""The console's sign-in: the admin token entered once, a session cookie, a CSRF token.

The browser never holds the admin token after sign-in: it holds a random session id in a
cookie that is HttpOnly (no script can read it) and SameSite=Strict (no other site's page can
send it); every form that changes state also carries the session's CSRF token, and the
console refuses a POST whose ``Origin`` is another site. Sessions live in the supervisor's
memory: a restart signs everyone out (the token is still the only way in)::

    sessions = SessionStore(admin_token, clock=time.time)
    sid = sessions.sign_in(given_token)           # None: wrong token
    session = sessions.get(sid)                    # None: unknown or expired
    sessions.check_csrf(session, form["csrf"])     # bool
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

COOKIE = "falcon_console"
SESSION_TTL_S = 12 * 3600.0
MAX_SESSIONS = 256  # oldest signed out first: a loop of sign-ins cannot grow memory


@dataclass
class Session:
    id: str
    csrf: str
    expires_at: float
    flash: list[tuple[str, str]] = field(default_factory=list)  # (level, text), shown once


class SessionStore:
    def __init__(
        self,
        admin_token: str,
        *,
        clock: Callable[[], float] = time.time,
        ttl_s: float = SESSION_TTL_S,
    ) -> None:
        self._token = admin_token
        self._clock = clock
        self._ttl = ttl_s
        self._sessions: dict[str, Session] = {}

    def sign_in(self, given: str) -> Session | None:
        """A new session if ``given`` is the admin token (compared in constant time)."""
        if not given or not secrets.compare_digest(given.strip(), self._token):
            return None
        self._expire()
        while len(self._sessions) >= MAX_SESSIONS:
            self._sessions.pop(next(iter(self._sessions)))
        session = Session(
            id=secrets.token_urlsafe(32),
            csrf=secrets.token_urlsafe(32),
            expires_at=self._clock() + self._ttl,
        )
        self._sessions[session.id] = session
        return session

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        session = self._sessions.get(sid)
        if session is None:
            return None
        if session.expires_at <= self._clock():
            self._sessions.pop(sid, None)
            return None
        return session

    def sign_out(self, sid: str | None) -> None:
        if sid:
            self._sessions.pop(sid, None)

    @staticmethod
    def check_csrf(session: Session, given: str | None) -> bool:
        return bool(given) and secrets.compare_digest(str(given), session.csrf)

    def _expire(self) -> None:
        now = self._clock()
        for sid in [s for s, v in self._sessions.items() if v.expires_at <= now]:
            self._sessions.pop(sid, None)


def same_origin(origin: str | None, host: str | None) -> bool:
    """A POST's ``Origin`` header names this server (or is absent: not sent by old browsers
    for same-origin forms; the SameSite cookie and the CSRF token still hold)."""
    if origin is None:
        return True
    if origin == "null" or host is None:
        return False
    return origin.split("://", 1)[-1].rstrip("/") == host
