"""Signing in with a key: sessions, the cookie, the CSRF token, and the console's ``Caller``.

A session is a random id in a cookie (HttpOnly, SameSite=Strict, Secure when the page came
over TLS) that names, in this process's memory, the key it was opened with and its CSRF
token. The key itself never goes back to the browser. Every page checks the key again
through the API's own dependency (``auth.scoped``: the cache, revocation, the rate limit, the
scope), so a console request sees and may do exactly what the same key may over the API, and
a revoked key ends its sessions at once (within the key cache's second).

Why in memory and not in the store: a session is a convenience over a key the store already
keeps; a second table of secrets to expire and clean is not worth it. A browser signed in on
one ``serve`` process is signed out by a restart, or by a balancer that sends it to another
process (route browsers to one process: sticky sessions)."""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from urllib.parse import quote

from fastapi import Request
from fastapi.security import HTTPAuthorizationCredentials

from simledger.runners.http.auth import Caller, scoped
from simledger.runners.http.problems import Problem

COOKIE = "simledger_session"
PRE_COOKIE = "simledger_signin"
"""The sign-in form's own CSRF token (double submit): the form is posted before any session."""
CSRF_FIELD = "csrf"
CSRF_HEADER = "X-CSRF-Token"
IDLE_SECONDS = 8 * 3600.0
"""A session unused this long is forgotten (the browser signs in again)."""
MAX_SESSIONS = 10_000


@dataclass
class Session:
    secret: str
    csrf: str
    key_name: str
    company: str | None
    seen: float


class Sessions:
    """The open sessions of this process, by id; the oldest go first past ``MAX_SESSIONS``."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._open: dict[str, Session] = {}
        self._lock = threading.Lock()

    def open(self, secret: str, key_name: str, company: str | None) -> tuple[str, Session]:
        session_id = secrets.token_urlsafe(32)
        session = Session(secret, secrets.token_urlsafe(32), key_name, company, self.clock())
        with self._lock:
            while len(self._open) >= MAX_SESSIONS:
                self._open.pop(next(iter(self._open)))
            self._open[session_id] = session
        return session_id, session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        with self._lock:
            session = self._open.get(session_id)
            if session is None:
                return None
            now = self.clock()
            if now - session.seen > IDLE_SECONDS:
                del self._open[session_id]
                return None
            session.seen = now
            return session

    def close(self, session_id: str | None) -> None:
        with self._lock:
            self._open.pop(session_id or "", None)


class SignInNeeded(Exception):
    """No session, or its key no longer works: the browser goes to the sign-in page."""

    def __init__(self, back_to: str, reason: str = "") -> None:
        super().__init__(reason)
        self.back_to = back_to
        self.reason = reason


class Refused(Exception):
    """A console request refused before its page could be drawn (403, 429, a bad CSRF
    token): shown as a page with the message, never as a stack trace."""

    def __init__(self, status: int, detail: str, rule: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.rule = rule


def sessions_of(request: Request) -> Sessions:
    sessions: Sessions = request.app.state.console_sessions
    return sessions


def secure(request: Request) -> bool:
    """Whether the page came over TLS (then the cookie is ``Secure``)."""
    return request.url.scheme == "https"


def tokens_match(given: str | None, expected: str) -> bool:
    return bool(given) and hmac.compare_digest(str(given), expected)


@dataclass(frozen=True)
class Console:
    """A signed-in console request: the API's ``Caller`` for the session's key, and the
    session (its CSRF token goes into every form)."""

    caller: Caller
    session: Session


def signed_in(scope: str) -> Callable[[Request], Awaitable[Console]]:
    """The dependency of a console page that needs ``scope``; a POST must carry the
    session's CSRF token (form field ``csrf`` or header ``X-CSRF-Token``)."""
    check = scoped(scope)

    async def dependency(request: Request) -> Console:
        back_to = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        session_id = request.cookies.get(COOKIE)
        session = sessions_of(request).get(session_id)
        if session is None:
            raise SignInNeeded(back_to if request.method == "GET" else "/ui/sims")
        if request.method != "GET":
            given = request.headers.get(CSRF_HEADER)
            if given is None:
                form = await request.form()
                value = form.get(CSRF_FIELD)
                given = value if isinstance(value, str) else None
            if not tokens_match(given, session.csrf):
                raise Refused(403, "the form's CSRF token is missing or wrong: reload the page")
        credentials = HTTPAuthorizationCredentials(scheme="Bearer", credentials=session.secret)
        try:
            caller = await check(request, credentials)
        except Problem as problem:
            if problem.status == 401:
                sessions_of(request).close(session_id)
                raise SignInNeeded(back_to, "the key was revoked: sign in again") from None
            raise Refused(problem.status, problem.detail, problem.rule) from None
        return Console(caller, session)

    return dependency


def sign_in_url(back_to: str, reason: str = "") -> str:
    url = f"/ui/sign-in?next={quote(back_to, safe='')}"
    return url + (f"&reason={quote(reason, safe='')}" if reason else "")
