"""``testbed secrets init|show|rotate``: a city's credentials (testbed/city_security.py)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

import platformdirs

from testbed.brokers import GATEWAY_USER, TLS_PORT, gateway_users, is_gateway, is_observer
from testbed.city_security import TOKENS, CitySecurity, scenario_devices, write_broker_dir
from testbed.credentials import CityCredentials
from testbed.pki import LOOPBACK_HOSTS, write_private
from testbed.settings import Settings

DESCRIPTION = """\
A city's credentials, kept under DATA_DIR/security (what `testbed up` makes on its first
start, kept across restarts): the CA and the broker's TLS certificate, one MQTT password per
account, one OSCORE context per CoAP device, the key that signs API tokens, the gateway's
notify token, and the tokens in tokens/*.jwt.

  init    make what is missing (for a scenario's devices), mint the tokens; with
          --broker-config DIR also a TLS-only Mosquitto's config, hashed passwords, ACL and
          certificate files (docker-compose.yml's init service)
  show    where each file is, the accounts and tokens (no password, no private key);
          --reveal ID prints one account's password and OSCORE keys, to hand to its owner
  rotate  forget one secret; the next `testbed up` (or init) makes it anew
"""
ROTATE_HELP = {
    # name: (what is made anew, what must restart)
    "ca": (
        "the CA and the broker's certificate",
        "the whole city; tools such as mosquitto_sub need the new ca.pem",
    ),
    "broker": ("the broker's TLS certificate (same CA)", "the broker (restart testbed up)"),
    "mqtt": (
        "every MQTT password (gateway, observers, devices)",
        "the broker, the gateway and the devices (restart testbed up)",
    ),
    "oscore": (
        "every device's OSCORE context (new keys, sequence numbers from 0)",
        "the gateway, the resource directory and the CoAP devices (restart testbed up)",
    ),
    "api": (
        "the API token key: every token issued so far is refused (revocation)",
        "the platform and the gateway (restart testbed up; it mints new tokens/*.jwt)",
    ),
    "notify": (
        "the gateway's /notify token",
        "the gateway (restart testbed up; its subscription carries the new token)",
    ),
}


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("r197-testbed")) / "city"  # testbed up's default


def register(sub: Any, epilog: str) -> None:
    parser = sub.add_parser(
        "secrets",
        help="make, show or rotate a city's credentials (CA, passwords, OSCORE keys, tokens)",
        description=DESCRIPTION,
        epilog=epilog + "\nExamples: testbed secrets show; testbed secrets rotate mqtt",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(func=_no_action, parser=parser)
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data-dir", type=Path, help=f"the city's data dir (default {default_data_dir()})"
    )
    init = actions.add_parser("init", parents=[common], help="make what is missing")
    init.add_argument("--scenario", default="workshop", help="whose devices get accounts")
    init.add_argument(
        "--mqtt-device", action="append", default=[], metavar="ID",
        help="also an MQTT account for this device id (repeatable; e.g. a plugfest guest's "
        "device; `show --reveal ID` prints its password)",
    )  # fmt: skip
    init.add_argument(
        "--coap-device", action="append", default=[], metavar="ID",
        help="also an OSCORE context for this CoAP device id (repeatable)",
    )  # fmt: skip
    init.add_argument(
        "--broker-host", action="append", default=[], metavar="NAME",
        help="a host name or address the broker's certificate must be valid for, besides "
        "the loopback ones (repeatable; e.g. 'mosquitto' in docker-compose)",
    )  # fmt: skip
    init.add_argument(
        "--broker-config", type=Path, metavar="DIR",
        help="also write a TLS-only Mosquitto's files into DIR",
    )  # fmt: skip
    init.add_argument(
        "--broker-config-as", metavar="PATH",
        help="where the broker sees DIR (e.g. /mosquitto/config; default DIR)",
    )  # fmt: skip
    init.add_argument("--broker-port", type=int, default=TLS_PORT, help="its TLS port (8883)")
    init.add_argument(
        "--gateways", type=int, default=1, metavar="N",
        help="MQTT accounts for N gateways of one shared subscription (gateway, gateway-2, ...) "
        "and a gateway-K.toml login for each (docker-compose's scale-out profile)",
    )  # fmt: skip
    init.add_argument(
        "--broker-data", default="/mosquitto/data/", metavar="PATH",
        help="the broker's persistence directory, as it sees it (/mosquitto/data/)",
    )  # fmt: skip
    init.add_argument(
        "--broker-owner", metavar="UID:GID",
        help="owner of DIR's files (1883:1883 is eclipse-mosquitto's mosquitto user)",
    )  # fmt: skip
    init.add_argument(
        "--broker-run-as", metavar="USER",
        help="the user Mosquitto runs as after start (its 'user' option; default its own)",
    )  # fmt: skip
    init.add_argument(
        "--influx-secrets", type=Path, metavar="DIR",
        help="also make an InfluxDB token, its admin password and Grafana's in DIR "
        "(docker-compose's influx profile)",
    )  # fmt: skip
    init.add_argument(
        "--postgres-secrets", type=Path, metavar="DIR",
        help="also make the PostgreSQL password of user 'city' in DIR: 'password' for the "
        "server, 'pgpass' for the platform (PGPASSFILE; docker-compose's postgres profile)",
    )  # fmt: skip
    init.set_defaults(func=run_init)
    show = actions.add_parser("show", parents=[common], help="where each file is, the accounts")
    show.add_argument(
        "--reveal", metavar="ID",
        help="print this one account's MQTT password and OSCORE keys (to hand to its owner)",
    )  # fmt: skip
    show.set_defaults(func=run_show)
    rotate = actions.add_parser("rotate", parents=[common], help="forget one secret")
    rotate.add_argument("name", choices=sorted(ROTATE_HELP), help="which secret")
    rotate.set_defaults(func=run_rotate)


def _no_action(args: argparse.Namespace, settings: Settings) -> int:
    args.parser.print_help()
    return 2


def _security(args: argparse.Namespace) -> CitySecurity:
    return CitySecurity.at(args.data_dir or default_data_dir())


def run_init(args: argparse.Namespace, settings: Settings) -> int:
    from devices.scenario import ScenarioError, load_scenario  # noqa: PLC0415
    from testbed.devices_cmd import resolve_scenario  # noqa: PLC0415

    try:
        scenario = load_scenario(resolve_scenario(args.scenario))
    except (FileNotFoundError, ScenarioError) as exc:
        print(f"testbed secrets: {exc}", file=sys.stderr)
        return 2
    owner: tuple[int, int] | None = None
    if args.broker_owner is not None:
        try:
            uid, gid = (int(x) for x in args.broker_owner.split(":"))
        except ValueError:
            print("testbed secrets: --broker-owner is UID:GID, e.g. 1883:1883", file=sys.stderr)
            return 2
        owner = (uid, gid)
    security = _security(args)
    hosts = [*LOOPBACK_HOSTS, *args.broker_host]
    mqtt, coap = scenario_devices(scenario)
    accounts = security.prepare(
        [*mqtt, *args.mqtt_device], [*coap, *args.coap_device], broker_hosts=hosts,
        gateways=max(1, args.gateways),
    )  # fmt: skip
    # For programs started from a config file (docker-compose's gateway): its MQTT login.
    gateway = f'[gateway]\nbroker_username = "{GATEWAY_USER}"\n'
    gateway += f"broker_password = {json.dumps(accounts[GATEWAY_USER])}\n"
    write_private(security.root / "gateway.toml", gateway.encode())
    for user in gateway_users(args.gateways)[1:]:  # its own session: client id = username
        login = f'[gateway]\nbroker_username = "{user}"\nclient_id = "{user}"\n'
        login += f"broker_password = {json.dumps(accounts[user])}\n"
        write_private(security.root / f"{user}.toml", login.encode())
    print(f"secrets in {security.root} ({len(accounts)} MQTT accounts)")
    if args.broker_config is not None:
        conf = write_broker_dir(
            security, accounts, args.broker_config, seen_as=args.broker_config_as,
            port=args.broker_port, owner=owner, persistence=args.broker_data,
            run_as=args.broker_run_as,
        )  # fmt: skip
        print(f"mosquitto config {conf} (TLS only on port {args.broker_port})")
    if args.influx_secrets is not None:
        from testbed.influx_cmd import write_influx_secrets  # noqa: PLC0415

        write_influx_secrets(args.influx_secrets)
        print(f"InfluxDB and Grafana secrets in {args.influx_secrets}")
    if args.postgres_secrets is not None:
        from testbed.pgcluster import write_postgres_secrets  # noqa: PLC0415

        write_postgres_secrets(args.postgres_secrets)
        print(f"PostgreSQL secrets in {args.postgres_secrets}")
    return 0


def run_show(args: argparse.Namespace, settings: Settings) -> int:
    security = _security(args)
    creds = security.credentials
    if not creds.root.exists():
        print(f"no credentials in {creds.root} yet: `testbed up` or `testbed secrets init`")
        return 1
    if args.reveal is not None:
        return _reveal(creds, args.reveal)
    print(f"credentials of the city in {creds.root} (every secret file mode 0600):")
    for label, path in _files(creds):
        state = "present" if path.exists() else "missing (made by the next start)"
        print(f"  {label:<28} {path}  {state}")
    if creds.ca_file.exists():
        ca = creds.ca()
        until = ca.cert.not_valid_after_utc.date()
        print(f"  CA: {ca.cert.subject.rfc4514_string()}, valid until {until}")
    users = _json_keys(creds.passwords_file)
    if users:
        observers = [u for u in users if is_observer(u)]
        gateways = [u for u in users if is_gateway(u)]
        devices = [u for u in users if not is_gateway(u) and not is_observer(u)]
        print(f"MQTT accounts ({len(users)}; passwords in {creds.passwords_file}):")
        print(f"  {', '.join(gateways)}: the gateway(s) (read city/#, write commands)")
        print(f"  {', '.join(observers[:2])} .. {observers[-1]}: read-only, one per person/tool")
        print(f"  {len(devices)} devices, each under its own topics only: {_short(devices)}")
    oscore = creds.oscore() if creds.oscore_file.exists() else {}
    if oscore:
        ids = ", ".join(f"{d} (id {k.device_id.hex()})" for d, k in list(oscore.items())[:4])
        print(f"OSCORE contexts ({len(oscore)}, RFC 8613; keys in {creds.oscore_file}): {ids}")
    print("API tokens (send as 'Authorization: Bearer <token>'; `testbed token` makes others):")
    for name, (scopes, tenants) in TOKENS.items():
        path = security.token_file(name)
        shown = ", ".join(repr(t) for t in tenants)
        print(f"  {name:<8} scope {' '.join(scopes):<6} tenants {shown:<5} {_token_state(path)}")
    return 0


def _reveal(creds: CityCredentials, name: str) -> int:
    """One account's secrets, asked for by name: what a device's owner configures."""
    passwords = (
        json.loads(creds.passwords_file.read_text()) if creds.passwords_file.exists() else {}
    )
    password = passwords.get(name)
    keys = creds.oscore().get(name) if creds.oscore_file.exists() else None
    if password is None and keys is None:
        print(f"testbed secrets: no account or OSCORE context named {name!r}", file=sys.stderr)
        return 1
    if password is not None:
        print(f"MQTT username {name}, password {password} (CA {creds.ca_file})")
    if keys is not None:
        print(
            f"OSCORE (RFC 8613) of {name}: master secret {keys.master_secret.hex()}, master salt "
            f"{keys.master_salt.hex()}, sender id {keys.device_id.hex()}, recipient id "
            f"{keys.gateway_id.hex()} (the gateway's)"
        )
    return 0


def _files(creds: CityCredentials) -> list[tuple[str, Path]]:
    return [
        ("CA certificate (public)", creds.ca_file),
        ("CA key", creds.ca_key_file),
        ("broker certificate", creds.broker_cert),
        ("broker key", creds.broker_key),
        ("MQTT passwords", creds.passwords_file),
        ("OSCORE contexts", creds.oscore_file),
        ("API token key (HS256)", creds.jwt_key_file),
        ("gateway /notify token", creds.notify_token_file),
    ]


def _json_keys(path: Path) -> list[str]:
    return list(json.loads(path.read_text())) if path.exists() else []


def _short(names: list[str]) -> str:
    return ", ".join(names[:5]) + (" ..." if len(names) > 5 else "")


def _token_state(path: Path) -> str:
    if not path.exists():
        return f"{path} missing (minted at the next start)"
    import jwt  # noqa: PLC0415

    claims = jwt.decode(path.read_text().strip(), options={"verify_signature": False})
    issued = dt.datetime.fromtimestamp(claims["iat"], dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"{path} (issued {issued})"


def run_rotate(args: argparse.Namespace, settings: Settings) -> int:
    security = _security(args)
    security.credentials.rotate(args.name)
    made, restart = ROTATE_HELP[args.name]
    print(f"forgot {args.name}: the next `testbed up` (or `testbed secrets init`) makes {made}")
    print(f"restart: {restart}")
    return 0
