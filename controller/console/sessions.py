"""Console sessions: a browser signs in once with an API token, then holds a session cookie.

Invariants:
- a session exists only after its token was checked against the API's tokens (constant time);
  it records the token's name (who) and secret, so that every action the console takes is an
  API call with that token, subject to every rule of the API (nothing is weaker here);
- each session has its own CSRF token, required (constant-time compare) in every form it posts;
  a forged form from another page cannot know it, and the cookie is SameSite=Strict anyway;
- sessions expire (8 h after sign-in, idle or not) and are bounded: at most MAX_PER_TOKEN per
  token name (that name's least recently used goes), so one token holder signing in again and
  again never signs another operator out; MAX_SESSIONS in all (the least recently used goes);
- signing in from a browser that holds a session ends that session (`replacing`): a cookie that
  was overwritten grants nothing any more.
"""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Callable

SESSION_SECONDS = 8 * 3600
MAX_SESSIONS = 64
MAX_PER_TOKEN = 8
COOKIE = "otseg_console"


@dataclass(frozen=True)
class Session:
    id: str
    who: str
    secret: str  # the API token this session acts with (kept in memory only, never sent to the browser)
    csrf: str
    expires: float


class SessionBook:
    def __init__(self, tokens: Callable[[], list[tuple[str, str]]], clock: Callable[[], float] = time.monotonic,
                 seconds: float = SESSION_SECONDS) -> None:
        self.tokens = tokens
        self.clock = clock
        self.seconds = seconds
        self.sessions: dict[str, Session] = {}

    def sign_in(self, offered: str, replacing: str | None = None) -> Session | None:
        """A new session if `offered` is one of the API's tokens, else None (and `replacing`, the
        session the browser held, is left as it was)."""
        found = None
        for name, secret in self.tokens():  # every token compared, in constant time each
            if secret and hmac.compare_digest(offered.strip().encode(), secret.encode()):
                found = (name, secret)
        if found is None:
            return None
        self._expire()
        self.sign_out(replacing)
        mine = [key for key, s in self.sessions.items() if s.who == found[0]]  # least recently used first
        for key in mine[:max(0, len(mine) - MAX_PER_TOKEN + 1)]:
            del self.sessions[key]
        while len(self.sessions) >= MAX_SESSIONS:
            self.sessions.pop(next(iter(self.sessions)))
        session = Session(secrets.token_urlsafe(32), found[0], found[1], secrets.token_urlsafe(32),
                          self.clock() + self.seconds)
        self.sessions[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        if not session_id:
            return None
        session = self.sessions.get(session_id)
        if session is None or session.expires <= self.clock():
            self.sessions.pop(session_id, None)
            return None
        self.sessions[session_id] = self.sessions.pop(session_id)  # most recently used last
        return session

    def alive(self, session_id: str) -> bool:
        """Does this session still exist (without counting as a use: the least-recently-used order stays)?"""
        session = self.sessions.get(session_id)
        return session is not None and session.expires > self.clock()

    def csrf_ok(self, session: Session, offered: str | None) -> bool:
        return bool(offered) and hmac.compare_digest(offered.encode(), session.csrf.encode())  # type: ignore[union-attr]

    def sign_out(self, session_id: str | None) -> None:
        self.sessions.pop(session_id or "", None)

    def _expire(self) -> None:
        now = self.clock()
        for key in [k for k, s in self.sessions.items() if s.expires <= now]:
            del self.sessions[key]
