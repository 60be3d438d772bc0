"""``testbed dashboard``: the city's web dashboard (city_platform/dashboard, docs/dashboard.md)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from testbed.processes import port_arg
from testbed.secret_file import read_secret
from testbed.settings import Settings

DEFAULT_PORT = 8090
DESCRIPTION = """\
Serve the city's web dashboard: a map of the devices (offline base layer, colour by domain),
live values pushed by Server-Sent Events from one NGSI-LD subscription on the platform, a
chart of each measurement's history (temporal API), the device table with the gateway's and
platform's health, streetlight switching and dimming through the platform, and the
conformance reports with their interop matrix. Every asset is shipped: it works offline.

The platform notifies the dashboard's /notify: on a platform with --allow-endpoint, allow
http://[HOST]:PORT/notify (`testbed up` does). With --token-file (a secure city) the page asks
for a platform token (pasted by the user, kept in an HttpOnly session cookie and used for that
user's calls); without it (an --insecure city) there is no login.
"""


def register(sub: Any, epilog: str) -> None:
    parser = sub.add_parser(
        "dashboard",
        help="serve the city's web dashboard (map, live values, devices, actuation, reports)",
        description=DESCRIPTION,
        epilog=epilog + "\nExample: testbed dashboard --platform http://[::1]:8000 "
        "--token-file ~/.local/share/r197-testbed/city/security/tokens/dashboard.jwt",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--platform", default="http://[::1]:8000", help="the platform's URL")
    parser.add_argument(
        "--gateway", default="http://[::1]:8081",
        help="the gateway's HTTP side (/health, /metrics), or 'off'",
    )  # fmt: skip
    parser.add_argument("--host", default="::1", help="address to listen on (::1)")
    parser.add_argument(
        "--port", type=port_arg, default=DEFAULT_PORT, help=f"TCP port ({DEFAULT_PORT})"
    )
    parser.add_argument(
        "--token-file", type=Path, metavar="FILE",
        help="the dashboard's own platform token (write scope: it creates its subscription); "
        "given = a secure city, the page then asks users for their token",
    )  # fmt: skip
    parser.add_argument(
        "--reports", type=Path, action="append", metavar="DIR",
        help="a directory of conformance reports: report.json files and other report *.json "
        "such as docs/interop/ (repeatable; default: conformance-report, where `testbed "
        "conformance` writes)",
    )  # fmt: skip
    parser.add_argument(
        "--devices", type=Path, metavar="FILE",
        help="JSON {device id: {protocol, format, kind}} for the device table (`testbed up` "
        "writes it)",
    )  # fmt: skip
    parser.add_argument(
        "--type", action="append", dest="types", metavar="TYPE",
        help="an entity type to show (repeatable; default: the city's Smart Data Model types)",
    )  # fmt: skip
    parser.add_argument(
        "--public-url", metavar="URL",
        help="the dashboard's URL as the platform reaches it (default http://[HOST]:PORT)",
    )  # fmt: skip
    parser.set_defaults(func=run_dashboard)


def run_dashboard(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn  # noqa: PLC0415  # heavy: only for the programs that serve HTTP

    from city_platform.dashboard import DashboardConfig, create_app  # noqa: PLC0415
    from city_platform.dashboard.app import CITY_TYPES  # noqa: PLC0415

    token = None
    try:
        if args.token_file is not None:
            token = read_secret(args.token_file)  # EmptySecretError is a ValueError
        devices = json.loads(args.devices.read_text()) if args.devices else {}
    except (OSError, ValueError) as exc:
        print(f"dashboard: {exc}", file=sys.stderr, flush=True)
        return 2
    shown = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{shown}:{args.port}"
    config = DashboardConfig(
        platform_url=args.platform,
        gateway_url=None if args.gateway == "off" else args.gateway,
        token=token,
        reports=tuple(args.reports or [Path("conformance-report")]),
        devices=devices if isinstance(devices, dict) else {},
        types=tuple(args.types or CITY_TYPES),
        public_url=args.public_url or url,
    )
    print(
        f"dashboard: {url}/ (platform {args.platform}, "
        f"{'login with a platform token' if token else 'no login: open city'})",
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(
        create_app(config), host=args.host, port=args.port, log_level="warning",
        access_log=False, timeout_graceful_shutdown=2,
    )  # fmt: skip
    return 0


def write_inventory(scenario: Any, path: Path) -> None:
    """The dashboard's --devices file: protocol, payload format and kind of each device of a
    scenario (devices.scenario.Scenario), which the platform's entities do not carry."""
    doc = {
        spec.device_id: {
            "protocol": spec.group.protocol,
            "format": spec.group.format,
            "kind": spec.group.kind,
        }
        for spec in scenario.devices()
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1) + "\n")
