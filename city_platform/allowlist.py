"""The allow-list of URLs the platform may contact on a client's behalf (server-side request
forgery, OWASP SSRF; ``testbed platform --allow-endpoint PREFIX``, repeatable).

A subscription's ``notification.endpoint.uri`` (CIM 009 5.2.15), a context source
registration's ``endpoint`` (5.2.9) and every remote @context URL the platform would fetch
(5.5.7, 5.13) are chosen by a client; without a check any client could make the platform send
requests to any host it can reach (the gateway's ``/notify``, a cloud metadata address, a
service on the loopback).  With a non-empty list each such URL must lie under one of the
prefixes; an empty list allows every URL (the behaviour before the list existed; ``testbed up``
always passes at least the gateway's ``/notify`` prefix).

URLs are compared normalized (RFC 3986 6.2.2, 6.2.3), so that spelling cannot smuggle a URL
past a prefix: scheme and host in lower case, IPv6 literals in their canonical form
(``[0:0::1]`` is ``[::1]``), a host's trailing dot dropped, the scheme's default port made
explicit, percent-encoded unreserved characters decoded and dot segments removed (RFC 3986
5.2.4: ``/notify/../admin`` is ``/admin``).  Userinfo is never part of the comparison: in
``http://allowed@evil/`` the host is ``evil``.  A URL with a backslash, white space or a control
character is refused outright (parsers disagree on where its host ends), and so is a path with
an encoded slash or backslash (``%2F``, ``%5C``: servers disagree on where a segment ends).
A prefix matches on a path-segment boundary: ``http://h/notify`` covers ``http://h/notify`` and
``http://h/notify/x``, not ``http://h/notifyother``; query and fragment are ignored.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from city_platform.errors import BadRequestData

__all__ = ["DEFAULT_PORTS", "EndpointAllowList", "Origin", "normalize"]

DEFAULT_PORTS: Final = {"http": 80, "https": 443, "mqtt": 1883, "mqtts": 8883}
OPTION: Final = "--allow-endpoint"
_REFUSED: Final = re.compile(r"[\\\s\x00-\x1f\x7f]")
# %2F and %5C: servers disagree on whether they separate segments (``/notify/..%2Fadmin``);
# encoded controls are refused as the plain ones are.
_HOST_PORT: Final = re.compile(r"(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+))(?::([0-9]{1,5}))?")
_ENCODED_REFUSED: Final = re.compile(r"%(2[fF]|5[cC]|[01][0-9a-fA-F]|7[fF])")
# RFC 3986 2.3: these may be percent-encoded without changing the URL; decoded for comparison.
_UNRESERVED: Final = re.compile(
    r"%(2[dDeE]|3[0-9]|4[1-9a-fA-F]|5[0-9aA]|5[fF]|6[1-9a-fA-F]|7[0-9aAeE])"
)


@dataclass(frozen=True)
class Origin:
    """A URL reduced to what decides where a request goes: scheme, host, port and path."""

    scheme: str
    host: str
    port: int
    path: str

    def covers(self, other: Origin) -> bool:
        """Whether ``other`` lies under this prefix (same origin, path on a segment boundary)."""
        if (self.scheme, self.host, self.port) != (other.scheme, other.host, other.port):
            return False
        base = self.path.rstrip("/")
        return other.path == base or other.path.startswith(base + "/") or not base


def _remove_dots(path: str) -> str:
    """RFC 3986 5.2.4, on segments."""
    out: list[str] = []
    segments = path.split("/")
    for i, seg in enumerate(segments):
        if seg == "..":
            if len(out) > 1:
                out.pop()
            if i == len(segments) - 1:
                out.append("")
        elif seg == ".":
            if i == len(segments) - 1:
                out.append("")
        else:
            out.append(seg)
    return "/".join(out)


def normalize(url: str) -> Origin:
    """The normalized origin of ``url``; ValueError when it is not an absolute URL we can
    compare (module docstring)."""
    if _REFUSED.search(url):
        raise ValueError("the URL holds a backslash, white space or a control character")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise ValueError(f"scheme {parts.scheme!r} is not one of {', '.join(DEFAULT_PORTS)}")
    # The authority after the userinfo must be exactly a host and an optional port: urllib
    # reads "[::1]evil:8081" as [::1] port 8081 where httpx refuses it; no such leeway here.
    found = _HOST_PORT.fullmatch(parts.netloc.rpartition("@")[2])
    if found is None:
        raise ValueError(f"the authority {parts.netloc!r} is not host[:port]")
    v6, name, digits = found.groups()
    if v6 is not None:
        try:
            host = ipaddress.IPv6Address(v6).compressed
        except ValueError:
            raise ValueError(f"[{v6}] is not an IPv6 address") from None
    else:
        host = name.lower().rstrip(".")
        if not host:
            raise ValueError("the URL has no host")
        if re.fullmatch(r"[0-9.]+", host):  # "0", "127.1", "2130706433": clients disagree
            try:
                host = ipaddress.IPv4Address(host).compressed
            except ValueError:
                raise ValueError(f"{host!r} is not a dotted-quad IPv4 address") from None
    port = int(digits) if digits else None
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"port {port} is out of range")
    if _ENCODED_REFUSED.search(parts.path):
        raise ValueError("the path holds an encoded slash, backslash or control character")
    path = _UNRESERVED.sub(lambda m: chr(int(m.group(1), 16)), parts.path)
    return Origin(scheme, host, DEFAULT_PORTS[scheme] if port is None else port, _remove_dots(path))


class EndpointAllowList:
    """The prefixes of ``--allow-endpoint``; empty allows every URL."""

    def __init__(self, prefixes: Iterable[str] = ()) -> None:
        self.prefixes = tuple(prefixes)
        self._origins: list[Origin] = []
        for prefix in self.prefixes:
            try:
                self._origins.append(normalize(prefix))
            except ValueError as exc:
                raise ValueError(f"{OPTION} {prefix!r}: {exc}") from None

    def __bool__(self) -> bool:
        return bool(self.prefixes)

    def permits(self, url: str) -> bool:
        if not self.prefixes:
            return True
        try:
            origin = normalize(url)
        except ValueError:
            return False
        return any(allowed.covers(origin) for allowed in self._origins)

    def check(self, url: object, what: str) -> None:
        """BadRequestData (400) naming the option when ``url`` is a string outside the list;
        anything else is left to the validation of the document that holds it."""
        if isinstance(url, str) and not self.permits(url):
            raise BadRequestData(
                f"{what} {url!r} is not in this platform's allow-list of endpoints "
                f"({OPTION}: {', '.join(self.prefixes)})"
            )

    def check_subscription(self, body: object) -> None:
        """A (csource) subscription's ``notification.endpoint.uri`` (5.2.12, 5.2.15)."""
        note = body.get("notification") if isinstance(body, dict) else None
        endpoint = note.get("endpoint") if isinstance(note, dict) else None
        if isinstance(endpoint, dict):
            self.check(endpoint.get("uri"), "notification.endpoint.uri")

    def check_registration(self, body: object) -> None:
        """A context source registration's ``endpoint`` (5.2.9)."""
        if isinstance(body, dict):
            self.check(body.get("endpoint"), "endpoint")
