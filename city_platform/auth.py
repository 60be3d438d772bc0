"""Bearer tokens of the NGSI-LD API: JWTs (RFC 7519) signed with HS256 (RFC 7518 3.2).

The testbed holds one secret key (``testbed`` keeps it in ``<data dir>/city/security/api-jwt.key``);
whoever holds it issues tokens with :func:`issue_token`, the platform checks them with
:func:`verify`.  PyJWT does the signing; its exceptions become ours here and nowhere else.

Claims::

    iss     "r197-testbed" (required, checked)
    sub     who the token was issued to (required; it is logged, never trusted for access)
    scope   space-separated scopes (OAuth 2.0, RFC 6749 3.3): "read", "write", "admin"
    tenants the NGSI-LD tenants (CIM 009 4.14) the token may act on; "*" is every tenant and
            "" the default tenant (a request without an NGSILD-Tenant header)
    iat     when it was issued (required)
    exp     when it expires (optional; without it the token lives until the key is rotated)

Scopes nest: **admin implies write, write implies read**.

- ``read``: GET, HEAD and OPTIONS, and the query-only POSTs ``/entityOperations/query`` and
  ``/temporal/entityOperations/query`` (CIM 009 6.23, 6.24: they change nothing);
- ``write``: everything else that creates, updates or deletes: entities, attributes, batch
  operations, temporal writes, subscriptions, csourceRegistrations, csourceSubscriptions;
- ``admin``: also writes and deletes of ``/jsonldContexts`` (CIM 009 5.13: a hosted @context
  changes how every client's terms expand) and any route under :data:`ADMIN_PREFIXES`.

Only HS256 is accepted (``alg: none`` and every other algorithm are refused, RFC 8725 3.1).

::

    AuthError                 (outside PlatformError: HTTP-level, RFC 6750 3, not CIM 009 5.5.2)
    ├── KeyUnusable           the key is missing, empty or shorter than 32 bytes
    ├── TokenMissing          401, no Authorization: Bearer header
    ├── TokenInvalid          401 error="invalid_token": bad signature, expired, malformed
    ├── InsufficientScope     403 error="insufficient_scope"
    └── WrongTenant           403 error="insufficient_scope": not bound to the request's tenant
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Final, Literal

import jwt

__all__ = [
    "ADMIN_PREFIXES",
    "ALGORITHM",
    "ANY_TENANT",
    "DEFAULT_TENANT",
    "ISSUER",
    "MIN_KEY_BYTES",
    "SCOPES",
    "AuthError",
    "InsufficientScope",
    "KeyUnusable",
    "Principal",
    "Scope",
    "TokenInvalid",
    "TokenMissing",
    "WrongTenant",
    "check_key",
    "issue_token",
    "required_scope",
    "verify",
]

Scope = Literal["read", "write", "admin"]
SCOPES: Final[tuple[Scope, ...]] = ("read", "write", "admin")  # each implies the ones before
ISSUER: Final = "r197-testbed"
ALGORITHM: Final = "HS256"
ANY_TENANT: Final = "*"
DEFAULT_TENANT: Final = ""  # no NGSILD-Tenant header (api/deps.get_tenant names it "" too)
MIN_KEY_BYTES: Final = 32  # RFC 7518 3.2: an HS256 key at least as long as the hash (256 bits)
API_PREFIX: Final = "/ngsi-ld/v1"
# POSTs that only read (CIM 009 6.23.3.1 Query Entities, 6.24.3.1 Query Temporal Evolution)
QUERY_POSTS: Final = frozenset(
    {API_PREFIX + "/entityOperations/query", API_PREFIX + "/temporal/entityOperations/query"}
)
# Writes under these need admin: the @context store (5.13) changes every tenant's expansion.
ADMIN_PREFIXES: Final = (API_PREFIX + "/jsonldContexts",)
_READ_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})


class AuthError(Exception):
    """Root of the authentication errors; ``status`` and ``challenge`` make the HTTP answer."""

    status: ClassVar[int] = 401
    title: ClassVar[str] = "Unauthorized"
    error: ClassVar[str | None] = None  # the RFC 6750 3.1 error code
    reason: ClassVar[str] = "refused"  # a short word for logs and metrics

    def __init__(self, detail: str, *, scope: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.scope = scope

    def challenge(self, realm: str) -> str:
        """The ``WWW-Authenticate`` value (RFC 6750 3): realm, error, error_description, scope."""
        parts = [f'Bearer realm="{realm}"']
        if self.error is not None:
            parts.append(f'error="{self.error}"')
            parts.append(f'error_description="{_quoted(self.detail)}"')
        if self.scope is not None:
            parts.append(f'scope="{self.scope}"')
        return ", ".join(parts)


class KeyUnusable(AuthError):
    reason = "key"


class TokenMissing(AuthError):
    """RFC 6750 3.1: a request without credentials gets no error code, only the challenge."""

    reason = "missing"


class TokenInvalid(AuthError):
    error = "invalid_token"
    reason = "invalid"


class InsufficientScope(AuthError):
    status = 403
    title = "Forbidden"
    error = "insufficient_scope"
    reason = "scope"


class WrongTenant(AuthError):
    status = 403
    title = "Forbidden"
    error = "insufficient_scope"
    reason = "tenant"


def _quoted(text: str) -> str:
    # RFC 6750 3: error_description is %x20-21 / %x23-5B / %x5D-7E (no '"' and no '\').
    return "".join(c if " " <= c <= "~" and c not in '"\\' else "'" for c in text)


@dataclass(frozen=True)
class Principal:
    """Who a verified token speaks for."""

    subject: str
    scopes: frozenset[Scope]
    tenants: frozenset[str]
    expires: float | None = None

    def allows(self, scope: Scope) -> bool:
        """Admin implies write implies read."""
        rank = SCOPES.index(scope)
        return any(SCOPES.index(s) >= rank for s in self.scopes)

    def serves(self, tenant: str) -> bool:
        return ANY_TENANT in self.tenants or tenant in self.tenants


def check_key(key: bytes) -> bytes:
    """``key`` when it is long enough for HS256, else KeyUnusable.  Used as given: a key file's
    surrounding white space is dropped by whoever reads it (testbed's read_key and
    CityCredentials.jwt_key both do), so both sides hold the same bytes."""
    if len(key) < MIN_KEY_BYTES:
        raise KeyUnusable(
            f"the token key has {len(key)} bytes; HS256 needs at least {MIN_KEY_BYTES} "
            "(RFC 7518 3.2)"
        )
    return key


def issue_token(
    key: bytes,
    *,
    subject: str,
    scopes: Sequence[str],
    tenants: Sequence[str],
    ttl: float | None = None,
) -> str:
    """A signed token for ``subject`` with these scopes and tenants, expiring after ``ttl`` s."""
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise ValueError(f"scopes must be some of {', '.join(SCOPES)}, got {list(scopes)}")
    if not tenants:
        raise ValueError(f"a token needs a tenant ('{ANY_TENANT}' for every tenant)")
    if ttl is not None and ttl <= 0:
        raise ValueError(f"ttl must be positive, got {ttl}")
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": ISSUER,
        "sub": subject,
        "scope": " ".join(dict.fromkeys(scopes)),
        "tenants": list(dict.fromkeys(tenants)),
        "iat": now,
    }
    if ttl is not None:
        claims["exp"] = math.ceil(now + ttl)  # NumericDate (RFC 7519 2), whole seconds
    return jwt.encode(claims, check_key(key), algorithm=ALGORITHM)


def verify(key: bytes, token: str) -> Principal:
    """The principal of a valid token; TokenInvalid for anything else."""
    try:
        claims = jwt.decode(
            token,
            check_key(key),
            algorithms=[ALGORITHM],  # never the header's choice: no alg=none, no RS/HS mix-up
            issuer=ISSUER,
            options={"require": ["iss", "sub", "iat", "scope", "tenants"]},
        )
    except jwt.ExpiredSignatureError:
        raise TokenInvalid("the token has expired") from None
    except jwt.InvalidSignatureError:
        raise TokenInvalid("the token's signature does not verify") from None
    except jwt.InvalidAlgorithmError:
        raise TokenInvalid(f"the token is not signed with {ALGORITHM}") from None
    except jwt.MissingRequiredClaimError as exc:
        raise TokenInvalid(f"the token lacks the {exc.claim!r} claim") from None
    except jwt.InvalidTokenError as exc:
        raise TokenInvalid(f"the token is not valid: {exc}") from None
    scope, tenants, subject = claims["scope"], claims["tenants"], claims["sub"]
    if not isinstance(scope, str) or not isinstance(subject, str):
        raise TokenInvalid("the token's scope and sub claims must be strings")
    if not isinstance(tenants, list) or not all(isinstance(t, str) for t in tenants):
        raise TokenInvalid("the token's tenants claim must be a list of strings")
    # RFC 6749 3.3: scope tokens this server does not define grant nothing.
    known = frozenset(s for s in SCOPES if s in scope.split(" "))
    exp = claims.get("exp")
    return Principal(
        subject=subject,
        scopes=known,
        tenants=frozenset(tenants),
        expires=float(exp) if isinstance(exp, int | float) else None,
    )


def required_scope(method: str, path: str) -> Scope:
    """The scope a request needs (module docstring); ``path`` as routed, without the query."""
    bare = path.rstrip("/") or "/"
    if any(bare == p or bare.startswith(p + "/") for p in ADMIN_PREFIXES):
        return "read" if method in _READ_METHODS else "admin"
    if method in _READ_METHODS or (method == "POST" and bare in QUERY_POSTS):
        return "read"
    return "write"
