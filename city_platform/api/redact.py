"""Credentials inside stored documents are write-only for tokens below admin (api/bearer.py).

A subscription's ``notification.endpoint.receiverInfo`` (CIM 009 5.2.15) and a registration's
``contextSourceInfo`` (5.2.9) are key/value pairs the platform sends as HTTP headers; the
gateway puts ``Authorization: Bearer <notify token>`` there, and an MQTT endpoint URI may hold
``user:password@`` (the MQTT binding).  Returned as stored, any read token on the tenant would
learn the credential and could then call the receiver itself (a forged notification).  So when
the API requires tokens and the token is not admin, the values of credential-like keys and the
password of a URI's userinfo are answered as :data:`MASK`.  Notifications still carry the real
values: only what Retrieve and Query return is masked.  Without ``--auth-key`` nothing is
masked (the API is open anyway, and the documents round-trip as the spec has them).
"""

from __future__ import annotations

import re
from typing import Any, Final

from fastapi import Request

from city_platform.auth import Principal

MASK: Final = "***"
# Header names that carry credentials (RFC 9110 11.6.2, 11.7.2, RFC 6265 Cookie, and the usual
# API-key headers).
_SECRET_KEY: Final = re.compile(r"authorization|cookie|token|secret|passw|api[-_]?key", re.I)
_USERINFO_PASSWORD: Final = re.compile(r"^([a-z][a-z0-9+.-]*://[^:/@]*):[^/@]*@", re.I)


def hides_secrets(request: Request) -> bool:
    """Whether the request's token may not see stored credentials (authenticated, not admin)."""
    principal = getattr(request.state, "principal", None)
    return isinstance(principal, Principal) and not principal.allows("admin")


def _pairs(items: object) -> object:
    if not isinstance(items, list):
        return items
    return [
        {**i, "value": MASK}
        if isinstance(i, dict) and isinstance(i.get("key"), str) and _SECRET_KEY.search(i["key"])
        else i
        for i in items
    ]


def _uri(uri: object) -> object:
    return _USERINFO_PASSWORD.sub(rf"\1:{MASK}@", uri) if isinstance(uri, str) else uri


def redact_subscription(doc: dict[str, Any]) -> dict[str, Any]:
    """A rendered (csource) subscription with its endpoint's credentials masked."""
    note = doc.get("notification")
    endpoint = note.get("endpoint") if isinstance(note, dict) else None
    if not isinstance(note, dict) or not isinstance(endpoint, dict):
        return doc
    endpoint = {**endpoint, "uri": _uri(endpoint.get("uri"))}
    if "receiverInfo" in endpoint:
        endpoint["receiverInfo"] = _pairs(endpoint["receiverInfo"])
    return {**doc, "notification": {**note, "endpoint": endpoint}}


def redact_registration(doc: dict[str, Any]) -> dict[str, Any]:
    """A rendered registration with its contextSourceInfo credentials masked."""
    out = {**doc, "endpoint": _uri(doc["endpoint"])} if "endpoint" in doc else dict(doc)
    if "contextSourceInfo" in out:
        out["contextSourceInfo"] = _pairs(out["contextSourceInfo"])
    return out
