"""Login sessions: the platform token a user pasted, behind a random session id.

The token stays on the server; the browser holds only the session id, in a cookie that
scripts cannot read (HttpOnly), that no other site's page sends (SameSite=Strict: no CSRF on
the actuation route) and that is never in a URL (RFC 6265 4.1.2.5-6, RFC 6750 5.3).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field

COOKIE = "r197_dashboard"
MAX_AGE = 8 * 3600  # seconds: a workshop day
MAX_SESSIONS = 1000  # the oldest is forgotten beyond this


@dataclass
class Sessions:
    """Session id -> (token, when it was made)."""

    max_age: float = MAX_AGE
    _by_id: dict[str, tuple[str, float]] = field(default_factory=dict)

    def create(self, token: str) -> str:
        if len(self._by_id) >= MAX_SESSIONS:
            del self._by_id[next(iter(self._by_id))]
        sid = secrets.token_urlsafe(32)
        self._by_id[sid] = (token, time.monotonic())
        return sid

    def token(self, sid: str | None) -> str | None:
        if sid is None or sid not in self._by_id:
            return None
        token, made = self._by_id[sid]
        if time.monotonic() - made > self.max_age:
            del self._by_id[sid]
            return None
        return token

    def drop(self, sid: str | None) -> None:
        if sid is not None:
            self._by_id.pop(sid, None)


def cookie_header(sid: str, *, max_age: int = MAX_AGE) -> str:
    """The Set-Cookie value: HttpOnly, SameSite=Strict, the whole site (RFC 6265bis 4.1.2.7)."""
    return f"{COOKIE}={sid}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}"
