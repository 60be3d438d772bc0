"""A notification receiver for lab 04: prints what an NGSI-LD subscription sends it.

    python docs/labs/code/receiver.py --port 9000 --count 2

listens on http://[::1]:9000/, answers every POST with 204 (CIM 009 5.11.2: the platform only
needs a 2xx) and prints one line per entity of each notification; it stops after --count
notifications, or when none came for --timeout seconds.
"""

from __future__ import annotations

import argparse
import json
import socket
from http.server import BaseHTTPRequestHandler, HTTPServer


class Server(HTTPServer):
    address_family = socket.AF_INET6  # the city is IPv6 first: [::1]
    received = 0


class Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(204)
        self.end_headers()
        assert isinstance(self.server, Server)
        self.server.received += 1
        notification = json.loads(body)
        subscription = notification["subscriptionId"]
        print(f"notification {self.server.received} from subscription {subscription}")
        for entity in notification["data"]:
            values = {k: v for k, v in entity.items() if k not in ("id", "type", "@context")}
            print(f"  {entity['id']} {json.dumps(values)}", flush=True)

    def log_message(self, format: str, *args: object) -> None:
        pass  # one line per entity is enough


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=9000)
    parser.add_argument("--count", type=int, default=3, help="stop after this many notifications")
    parser.add_argument("--timeout", type=float, default=60, help="stop after this long idle")
    args = parser.parse_args()
    server = Server(("::1", args.port), Handler)
    server.timeout = args.timeout
    print(f"listening on http://[::1]:{args.port}/", flush=True)
    while server.received < args.count:
        before = server.received
        server.handle_request()  # returns after one request, or after the timeout
        if server.received == before:
            print("no notification within the timeout")
            raise SystemExit(1)


if __name__ == "__main__":
    main()
