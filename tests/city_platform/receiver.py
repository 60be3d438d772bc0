"""A real HTTP notification receiver on [::1] for subscription tests."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from typing import Any


class _Server(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6
    daemon_threads = True


class Receiver:
    """Records every POST (headers and JSON body); answers ``status``."""

    def __init__(self, status: int = 204) -> None:
        self.status = status
        self.received: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"null")
                outer.headers.append({k.lower(): v for k, v in self.headers.items()})
                outer.received.append(body)
                self.send_response(outer.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = _Server(("::1", 0), Handler)
        self.port = self._server.server_address[1]
        self.url = f"http://[::1]:{self.port}/notify"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def entities(self) -> list[dict[str, Any]]:
        return [e for n in self.received for e in n["data"]]

    def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Wait until ``count`` entities were notified; returns them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.entities()) >= count:
                return self.entities()
            time.sleep(0.02)
        raise AssertionError(f"expected {count} notified entities, got {self.entities()}")
