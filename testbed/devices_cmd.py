"""``testbed devices``: run the simulated devices of a scenario."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from testbed.settings import Settings

DESCRIPTION = """\
Run the simulated field devices of a scenario (TOML): MQTT devices publishing to the broker,
CoAP devices each serving /.well-known/core, observable /sensors and /log on their own IPv6
port and registering in the resource directory, and CoAP push devices POSTing to the gateway.
Shipped scenarios: workshop (24 devices, every domain), city-1000, and one per domain
(airquality, weather, noise, traffic, parking, streetlight, flood, energy, soil, indoor).
"""


def register(sub: Any, epilog: str) -> None:
    parser = sub.add_parser(
        "devices",
        help="run simulated MQTT and CoAP devices from a scenario",
        description=DESCRIPTION,
        epilog=epilog + "\nExample: testbed devices --scenario workshop --broker mqtt://[::1]:1883",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--scenario", default="workshop", help="a scenario file, or a shipped scenario's name"
    )
    parser.add_argument(
        "--broker", help="MQTT broker URL (default from the scenario; mqtts://... for TLS)"
    )
    parser.add_argument("--password", help="MQTT password of every device")
    parser.add_argument(
        "--passwords",
        type=Path,
        help="JSON file {device id: password}, each device's own (e.g. <data dir>/security/"
        "mqtt-passwords.json); devices not in it use --password",
    )
    parser.add_argument(
        "--broker-ca",
        type=Path,
        help="CA file the broker's certificate must chain to (mqtts:// brokers)",
    )
    parser.add_argument(
        "--oscore",
        type=Path,
        help="OSCORE keys (<data dir>/security/oscore.json): CoAP and push devices then speak "
        "OSCORE (RFC 8613) only; sequence numbers persist in contexts/devices next to it",
    )
    parser.add_argument("--rd", help="resource directory URL, or 'off'")
    parser.add_argument("--gateway", help="CoAP URL push devices POST to")
    parser.add_argument("--coap-host", help="address CoAP devices bind to (default ::1)")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.set_defaults(func=run_devices)


def resolve_scenario(name: str) -> Path:
    path = Path(name)
    if path.exists():
        return path
    from devices.scenario import shipped  # noqa: PLC0415

    if shipped(name).exists():
        return shipped(name)
    raise FileNotFoundError(f"no scenario file {name!r} and no shipped scenario of that name")


def oscore_options(path: Path | None) -> dict[str, Any]:
    """Fleet's oscore= and oscore_dir= for an oscore.json (none without one)."""
    if path is None:
        return {}
    from devices.oscore import read_keys, state_dir  # noqa: PLC0415  # heavy imports

    return {"oscore": read_keys(path), "oscore_dir": state_dir(path)}


def read_passwords(path: Path | None) -> dict[str, str] | None:
    """{device id: password} from a JSON file (CityCredentials.passwords_file)."""
    if path is None:
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SystemExit(f"testbed devices: cannot read the passwords file: {exc}") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise SystemExit(f"testbed devices: {path} is not a JSON object of passwords")
    return data


def run_devices(args: argparse.Namespace, settings: Settings) -> int:
    from devices.fleet import Fleet  # noqa: PLC0415  # heavy imports
    from devices.scenario import ScenarioError, load_scenario  # noqa: PLC0415
    from testbed.daemon import run_until_signal  # noqa: PLC0415

    try:
        scenario = load_scenario(resolve_scenario(args.scenario))
    except (FileNotFoundError, ScenarioError) as exc:
        print(f"testbed devices: {exc}", file=sys.stderr)
        return 2
    if args.coap_host:
        scenario.endpoints.coap_host = args.coap_host
    try:
        fleet = Fleet(
            scenario,
            broker=args.broker,
            rd=None if args.rd == "off" else args.rd,
            use_rd=args.rd != "off",
            gateway=args.gateway,
            password=args.password,
            passwords=read_passwords(args.passwords),
            broker_ca=args.broker_ca,
            **oscore_options(args.oscore),
        )
    except (ValueError, OSError, KeyError) as exc:  # a bad URL, unreadable CA or keys file
        print(f"testbed devices: {exc}", file=sys.stderr)
        return 2

    async def start() -> None:
        await fleet.__aenter__()
        print(
            f"devices: {len(fleet.devices)} devices from {args.scenario} "
            f"(broker {fleet.broker}, RD {fleet.rd or 'off'}, push to {fleet.gateway})",
            file=sys.stderr,
            flush=True,
        )

    def tick() -> None:
        print(f"devices: {fleet.status().line()}", file=sys.stderr, flush=True)

    async def main() -> None:
        if args.duration is None:
            await run_until_signal(start, fleet.__aexit__, tick=tick, interval=10.0)
            return
        await start()
        try:
            await asyncio.sleep(args.duration)
            tick()
        finally:
            await fleet.__aexit__()

    asyncio.run(main())
    return 0
