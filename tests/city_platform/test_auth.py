"""city_platform.auth: issuing and verifying bearer tokens, scopes and tenants (no network)."""

from __future__ import annotations

import secrets
import time
from typing import Any

import jwt
import pytest

from city_platform import auth
from city_platform.auth import (
    InsufficientScope,
    KeyUnusable,
    Principal,
    TokenInvalid,
    issue_token,
    required_scope,
    verify,
)

KEY = secrets.token_bytes(64)  # long enough for HS512 too (RFC 7518 3.2)


def claims(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": auth.ISSUER,
        "sub": "s",
        "scope": "read",
        "tenants": ["*"],
        "iat": int(time.time()),
    }
    base.update(extra)
    return {k: v for k, v in base.items() if v is not None}


def test_issued_token_verifies_with_its_claims() -> None:
    """issue_token -> verify gives back subject, scopes, tenants and the expiry."""
    token = issue_token(KEY, subject="gw", scopes=["write", "read"], tenants=["a", ""], ttl=60)
    principal = verify(KEY, token)
    assert principal.subject == "gw"
    assert principal.scopes == {"read", "write"}
    assert principal.tenants == {"a", ""}
    assert principal.expires is not None
    assert principal.expires > time.time()
    raw = jwt.decode(token, KEY, algorithms=["HS256"])
    assert raw["iss"] == "r197-testbed"
    assert raw["scope"] == "write read"  # RFC 6749 3.3: space-separated
    assert jwt.get_unverified_header(token)["alg"] == "HS256"


def test_token_without_ttl_has_no_exp() -> None:
    """No ttl: no exp claim; the token lives until the key is rotated."""
    token = issue_token(KEY, subject="x", scopes=["read"], tenants=["*"])
    assert "exp" not in jwt.decode(token, KEY, algorithms=["HS256"])
    assert verify(KEY, token).expires is None


@pytest.mark.parametrize(
    ("have", "need", "ok"),
    [
        ("read", "read", True),
        ("read", "write", False),
        ("read", "admin", False),
        ("write", "read", True),
        ("write", "write", True),
        ("write", "admin", False),
        ("admin", "read", True),
        ("admin", "write", True),
        ("admin", "admin", True),
    ],
)
def test_scopes_nest(have: auth.Scope, need: auth.Scope, ok: bool) -> None:
    """Admin implies write implies read, and never the other way round."""
    assert Principal("s", frozenset({have}), frozenset({"*"})).allows(need) is ok


def test_tenants_bind() -> None:
    """A token serves its own tenants; "*" serves every tenant, "" is the default tenant."""
    only_a = Principal("s", frozenset({"read"}), frozenset({"a"}))
    assert only_a.serves("a")
    assert not only_a.serves("b")
    assert not only_a.serves("")
    assert Principal("s", frozenset({"read"}), frozenset({""})).serves("")
    assert Principal("s", frozenset({"read"}), frozenset({"*"})).serves("anything")


def test_expired_token_is_invalid() -> None:
    """exp in the past: TokenInvalid naming the expiry."""
    token = jwt.encode(claims(exp=int(time.time()) - 5), KEY, algorithm="HS256")
    with pytest.raises(TokenInvalid, match="expired"):
        verify(KEY, token)


def test_token_signed_with_another_key_is_invalid() -> None:
    """A token from another key does not verify."""
    token = issue_token(secrets.token_bytes(32), subject="x", scopes=["admin"], tenants=["*"])
    with pytest.raises(TokenInvalid, match="signature"):
        verify(KEY, token)


def test_tampered_payload_is_invalid() -> None:
    """Changing the payload (read -> admin) breaks the signature."""
    token = issue_token(KEY, subject="x", scopes=["read"], tenants=["a"])
    head, _, sig = token.split(".")
    forged = jwt.encode(claims(scope="admin"), b"k" * 32, algorithm="HS256").split(".")[1]
    with pytest.raises(TokenInvalid):
        verify(KEY, f"{head}.{forged}.{sig}")


def test_alg_none_is_refused() -> None:
    """An unsigned token (alg none, RFC 8725 3.1) is never accepted."""
    token = jwt.encode(claims(scope="admin"), None, algorithm="none")
    with pytest.raises(TokenInvalid, match="HS256"):
        verify(KEY, token)


@pytest.mark.parametrize("alg", ["HS384", "HS512"])
def test_only_hs256_is_accepted(alg: str) -> None:
    """Another HMAC with the right key is still refused: the algorithm is ours, not the
    token's header's."""
    token = jwt.encode(claims(), KEY, algorithm=alg)
    with pytest.raises(TokenInvalid, match="HS256"):
        verify(KEY, token)


@pytest.mark.parametrize("missing", ["iss", "sub", "scope", "tenants", "iat"])
def test_required_claims(missing: str) -> None:
    """Each required claim missing: TokenInvalid naming it."""
    token = jwt.encode(claims(**{missing: None}), KEY, algorithm="HS256")
    with pytest.raises(TokenInvalid, match=missing):
        verify(KEY, token)


def test_wrong_issuer_is_invalid() -> None:
    token = jwt.encode(claims(iss="someone-else"), KEY, algorithm="HS256")
    with pytest.raises(TokenInvalid):
        verify(KEY, token)


@pytest.mark.parametrize(
    "extra", [{"tenants": "a"}, {"tenants": [1]}, {"scope": ["read"]}, {"sub": 5}]
)
def test_malformed_claims_are_invalid(extra: dict[str, Any]) -> None:
    """Claims of the wrong type are refused, not trusted."""
    token = jwt.encode(claims(**extra), KEY, algorithm="HS256")
    with pytest.raises(TokenInvalid):
        verify(KEY, token)


def test_unknown_scopes_grant_nothing() -> None:
    """RFC 6749 3.3: scope tokens we do not define are ignored."""
    token = jwt.encode(claims(scope="superuser readwrite"), KEY, algorithm="HS256")
    assert verify(KEY, token).scopes == frozenset()


@pytest.mark.parametrize("garbage", ["", "a.b.c", "x" * 50, "eyJ.eyJ.sig"])
def test_garbage_is_invalid(garbage: str) -> None:
    with pytest.raises(TokenInvalid):
        verify(KEY, garbage)


def test_short_key_is_refused() -> None:
    """RFC 7518 3.2: an HS256 key shorter than 256 bits is refused on both sides."""
    with pytest.raises(KeyUnusable):
        issue_token(b"short", subject="x", scopes=["read"], tenants=["*"])
    with pytest.raises(KeyUnusable):
        verify(b"", "a.b.c")


@pytest.mark.parametrize(
    "kwargs",
    [{"scopes": []}, {"scopes": ["root"]}, {"tenants": []}, {"ttl": 0}, {"ttl": -1}],
)
def test_issue_token_refuses_bad_arguments(kwargs: dict[str, Any]) -> None:
    args: dict[str, Any] = {"subject": "x", "scopes": ["read"], "tenants": ["*"], **kwargs}
    with pytest.raises(ValueError):
        issue_token(KEY, **args)


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    [
        ("GET", "/ngsi-ld/v1/entities", "read"),
        ("HEAD", "/ngsi-ld/v1/entities/urn:x", "read"),
        ("POST", "/ngsi-ld/v1/entityOperations/query", "read"),
        ("POST", "/ngsi-ld/v1/entityOperations/query/", "read"),
        ("POST", "/ngsi-ld/v1/temporal/entityOperations/query", "read"),
        ("POST", "/ngsi-ld/v1/entities", "write"),
        ("PATCH", "/ngsi-ld/v1/entities/urn:x/attrs", "write"),
        ("DELETE", "/ngsi-ld/v1/entities/urn:x", "write"),
        ("POST", "/ngsi-ld/v1/entityOperations/upsert", "write"),
        ("POST", "/ngsi-ld/v1/temporal/entities", "write"),
        ("POST", "/ngsi-ld/v1/subscriptions", "write"),
        ("POST", "/ngsi-ld/v1/csourceRegistrations", "write"),
        ("DELETE", "/ngsi-ld/v1/csourceSubscriptions/urn:x", "write"),
        ("GET", "/ngsi-ld/v1/jsonldContexts", "read"),
        ("POST", "/ngsi-ld/v1/jsonldContexts", "admin"),
        ("DELETE", "/ngsi-ld/v1/jsonldContexts/abc", "admin"),
        ("POST", "/ngsi-ld/v1/jsonldContextsX", "write"),
    ],
)
def test_required_scope(method: str, path: str, scope: str) -> None:
    """The scope each kind of request needs (module docstring of city_platform.auth)."""
    assert required_scope(method, path) == scope


def test_challenge_quotes_nothing_it_should_not() -> None:
    """error_description never carries '"' or '\\' (RFC 6750 3), so the header stays parseable."""
    exc = InsufficientScope('needs "write" \\ now', scope="write")
    challenge = exc.challenge("r197")
    assert challenge == (
        'Bearer realm="r197", error="insufficient_scope", '
        'error_description="needs \'write\' \' now", scope="write"'
    )
