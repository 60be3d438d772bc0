"""api/bearer.py without a server: the open paths and the cache of verified tokens."""

from __future__ import annotations

import secrets
import time

import pytest

from city_platform import auth
from city_platform.api import bearer
from city_platform.api.bearer import BearerAuth, is_open

KEY = secrets.token_bytes(32)


async def _app(scope: object, receive: object, send: object) -> None:  # never reached here
    raise AssertionError


@pytest.mark.parametrize(
    ("path", "open_"),
    [
        ("/health", True),
        ("/docs", True),
        ("/openapi.json", True),
        ("/docs/static/swagger-ui.css", True),
        ("/ngsi-ld/contexts/testbed-context.jsonld", True),
        ("/ngsi-ld/contexts/", False),
        ("/ngsi-ld/contexts/..", False),
        ("/ngsi-ld/contexts/a/b", False),
        ("/health/", False),
        ("/healthz", False),
        ("/ngsi-ld/v1/entities", False),
        ("/ngsi-ld/v1/jsonldContexts/x", False),
        ("/", False),
    ],
)
def test_open_paths(path: str, open_: bool) -> None:
    """Only the listed paths, each exactly, are served without a token."""
    assert is_open(path) is open_


def test_verified_token_is_cached_until_it_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same token is verified once; past its exp it is verified again (and then refused)."""
    calls: list[str] = []
    real = auth.verify

    def counting(key: bytes, token: str) -> auth.Principal:
        calls.append(token)
        return real(key, token)

    monkeypatch.setattr(bearer, "verify", counting)
    middleware = BearerAuth(_app, key=KEY)
    token = auth.issue_token(KEY, subject="s", scopes=["read"], tenants=["*"], ttl=600)
    first = middleware.principal(token)
    assert middleware.principal(token) is first
    assert len(calls) == 1
    later = time.time() + 601
    monkeypatch.setattr(bearer.time, "time", lambda: later)
    middleware.principal(token)  # PyJWT's own clock still says valid; what counts is the call
    assert len(calls) == 2


def test_bad_token_is_not_cached() -> None:
    middleware = BearerAuth(_app, key=KEY)
    other = auth.issue_token(secrets.token_bytes(32), subject="s", scopes=["read"], tenants=["*"])
    for _ in range(2):
        with pytest.raises(auth.TokenInvalid):
            middleware.principal(other)


def test_short_key_refused_at_startup() -> None:
    with pytest.raises(auth.KeyUnusable):
        BearerAuth(_app, key=b"short")
