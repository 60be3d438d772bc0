"""Helpers shared by the R197-NGSILD case modules (``conformance/test_ngsild*.py``).

The ``api`` fixture (a client on the IUT's API with a fresh tenant) lives in
``conformance/conftest.py``; these are the plain functions and the notification receiver.
"""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
import uuid
from types import TracebackType
from typing import Any, Self

import httpx

from conformance.observed import excerpt, expect_status, iut_json

ERR = "https://uri.etsi.org/ngsi-ld/errors/"
CORE_V18 = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"


def unique(prefix: str = "R197") -> str:
    """A type or id part no other run of the suite uses (an IUT may be shared)."""
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def entity(n: int = 1, value: float = 21.5, kind: str = "R197Room") -> dict[str, Any]:
    return {
        "id": f"urn:ngsi-ld:{kind}:{uuid.uuid4().hex[:6]}-{n}",
        "type": kind,
        "temperature": {"type": "Property", "value": value, "unitCode": "CEL",
                        "observedAt": "2026-01-01T10:00:00Z"},
        "location": {"type": "GeoProperty",
                     "value": {"type": "Point", "coordinates": [6.1432, 46.2044]}},
    }  # fmt: skip


def problem(r: httpx.Response, status: int, kind: str) -> None:
    """The answer is ProblemDetails of error type ``kind`` with HTTP ``status`` (CIM 009 5.5.2)."""
    expect_status(r, status)
    body = iut_json(r.content, f"the error body of {r.status_code}")
    assert isinstance(body, dict), f"error body is not a JSON object: {excerpt(r.content)}"
    assert body.get("type") == ERR + kind, f"ProblemDetails type {body.get('type')!r}"
    assert "title" in body, f"ProblemDetails without title: {r.text[:200]!r}"


class _Server(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True


class QuietHandler(http.server.BaseHTTPRequestHandler):
    """A request handler that logs nothing; :meth:`answer` sends a JSON body."""

    def answer(self, status: int, body: Any) -> None:
        self.send_raw(status, json.dumps(body).encode())

    def send_raw(self, status: int, raw: bytes) -> None:
        """``raw`` as the whole body, labelled application/json (JSON or not)."""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args: object) -> None:
        pass


class LocalServer:
    """An HTTP server on [::1] (a free port) running ``handler`` in a thread while its
    ``with`` block lasts; ``url`` is its address followed by ``path``."""

    def __init__(self, handler: type[http.server.BaseHTTPRequestHandler], path: str = "") -> None:
        self._server = _Server(("::1", 0), handler)
        self.url = f"http://[::1]:{self._server.server_address[1]}{path}"

    def __enter__(self) -> Self:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()


class Receiver(LocalServer):
    """An HTTP endpoint on [::1] that records the notifications POSTed to it.

    with Receiver() as rx:
        ...subscribe with rx.url...
        note = rx.wait()          # the first notification, or AssertionError after ``timeout``
    """

    def __init__(self) -> None:
        self.got: list[Any] = []
        self.headers: list[dict[str, str]] = []
        self._cond = threading.Condition()
        outer = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body: Any = json.loads(raw)
                except ValueError:
                    body = raw
                with outer._cond:
                    outer.got.append(body)
                    outer.headers.append(dict(self.headers.items()))
                    outer._cond.notify_all()
                self.send_response(204)
                self.end_headers()

        super().__init__(Handler, "/notify")

    def wait(self, count: int = 1, timeout: float = 10.0) -> list[Any]:
        """The first ``count`` notifications; AssertionError when they do not come in time."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.got) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"{len(self.got)} of {count} notification(s) within {timeout:g} s"
                    )
                self._cond.wait(left)
            return list(self.got[:count])
