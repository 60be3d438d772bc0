"""``testbed gateway``: MQTT and CoAP in, NGSI-LD batch upserts out."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from testbed.secret_file import EmptySecretError, read_secret
from testbed.settings import Settings

if TYPE_CHECKING:
    from gateway.service import GatewayConfig

log = logging.getLogger(__name__)

DESCRIPTION = """\
Run the gateway: it subscribes to the MQTT broker (MQTT 5 shared subscription where the broker
supports it), observes the CoAP devices registered in the resource directory, takes CoAP POSTs
from push devices at coap://[HOST]:PORT/up/<device id>, normalizes every reading (SenML
JSON/CBOR, vendor JSON/CSV) into NGSI-LD entities and batch-upserts them to the platform through
a durable on-disk queue. Prometheus metrics at http://[::1]:8081/metrics.
"""


def register(sub: Any, epilog: str) -> None:
    parser = sub.add_parser(
        "gateway",
        help="run the gateway (MQTT/CoAP in, NGSI-LD out)",
        description=DESCRIPTION,
        epilog=epilog + "\nExample: testbed gateway --platform http://[::1]:8000 "
        "--broker mqtt://[::1]:1883 --broker-password secret",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--platform", help="NGSI-LD platform base URL (default http://[::1]:8000)")
    parser.add_argument("--tenant", help="NGSILD-Tenant to write into (default: the default one)")
    parser.add_argument(
        "--broker",
        help="MQTT broker URL (default mqtt://[::1]:1883; mqtts://[::1]:8883 for TLS); 'off' to "
        "skip",
    )
    parser.add_argument("--broker-user", help="MQTT username (default 'gateway')")
    parser.add_argument("--broker-password", help="MQTT password")
    parser.add_argument(
        "--broker-ca",
        type=Path,
        help="CA file the broker's certificate must chain to (mqtts:// URLs; default: the "
        "system's CAs), e.g. <data dir>/security/ca.pem",
    )
    parser.add_argument(
        "--client-id",
        help="MQTT client id (default r197-gateway); each gateway sharing the load needs its own",
    )
    parser.add_argument("--coap-port", type=int, help="CoAP ingest port for push devices (5684)")
    parser.add_argument(
        "--rd", help="CoRE resource directory URL (default coap://[::1]:5783); 'off'"
    )
    parser.add_argument("--queue", type=Path, help="durable queue file (default: user data dir)")
    parser.add_argument("--http-port", type=int, help="port of /metrics and /notify (8081)")
    parser.add_argument(
        "--no-southbound", action="store_true", help="do not relay actuator commands"
    )
    parser.add_argument(
        "--profiles", type=Path, metavar="DIR",
        help="more device profiles (<kind>.toml, as in gateway/profile_data) beside the shipped "
        "ones; one of the same kind replaces the shipped one",
    )  # fmt: skip
    parser.add_argument(
        "--platform-token-file",
        type=Path,
        help="file holding the bearer token the gateway sends to the platform (testbed token)",
    )
    parser.add_argument(
        "--notify-token-file",
        type=Path,
        help="file holding the bearer token POST /notify requires (default: /notify is open); "
        "the gateway's subscription gives it to the platform",
    )
    parser.add_argument(
        "--oscore",
        type=Path,
        help="the devices' OSCORE keys (<data dir>/security/oscore.json): CoAP pushes, "
        "observations and commands then need OSCORE (RFC 8613); sequence numbers persist in "
        "contexts/gateway next to it",
    )
    parser.add_argument(
        "--loop",
        choices=("auto", "asyncio", "uvloop"),
        default="auto",
        help="event loop: uvloop where installed (auto, the default, as uvicorn chooses), or the "
        "standard asyncio loop",
    )
    parser.set_defaults(func=run_gateway)


def new_event_loop(choice: str) -> asyncio.AbstractEventLoop:
    """The event loop ``--loop`` names: uvloop costs the gateway 3-5 % less CPU per reading
    (docs/benchmarks.md); ``auto`` falls back to asyncio where it is not installed."""
    if choice != "asyncio":
        try:
            import uvloop  # noqa: PLC0415
        except ImportError:
            if choice == "uvloop":
                raise SystemExit(
                    "testbed gateway: --loop uvloop, but uvloop is not installed"
                ) from None
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def _off(value: str | None, default: str | None) -> str | None:
    """The flag's value, else the setting's; ``off`` (or empty) in either turns the part off
    (a TOML file has no null, so ``rd_url = "off"`` is how a settings file says it)."""
    chosen = default if value is None else value
    return None if chosen in (None, "", "off") else chosen


def read_token(path: Path | str | None, what: str) -> str | None:
    """A token from a file (whitespace around it dropped); None when no file is named."""
    if path is None or str(path) == "":
        return None
    try:
        return read_secret(path)
    except OSError as exc:
        raise SystemExit(f"testbed gateway: cannot read the {what} file: {exc}") from None
    except EmptySecretError:
        raise SystemExit(f"testbed gateway: the {what} file {path} is empty") from None


def oscore_keys(path: str | Path | None) -> Path | None:
    """The OSCORE keys file, which must exist (the gateway then speaks OSCORE only)."""
    if path is None or str(path) == "":
        return None
    if not Path(path).is_file():
        raise SystemExit(f"testbed gateway: no OSCORE keys file {path}")
    return Path(path)


def gateway_config(args: argparse.Namespace, settings: Settings) -> GatewayConfig:
    """The gateway's configuration: each flag given, else the setting."""
    from gateway.service import GatewayConfig  # noqa: PLC0415  # heavy imports

    cfg = settings.gateway
    return GatewayConfig(
        platform_url=args.platform or cfg.platform_url,
        tenant=args.tenant if args.tenant is not None else cfg.tenant,
        queue_path=args.queue or Path(cfg.queue),
        broker_url=_off(args.broker, cfg.broker_url),
        broker_username=args.broker_user or cfg.broker_username,
        broker_password=args.broker_password or cfg.broker_password,
        broker_ca=args.broker_ca or (Path(cfg.broker_ca) if cfg.broker_ca else None),
        shared_group=cfg.shared_group,
        client_id=args.client_id or cfg.client_id,
        coap_host=_off(None, cfg.coap_host),
        coap_port=args.coap_port if args.coap_port is not None else cfg.coap_port,
        rd_url=_off(args.rd, cfg.rd_url),
        http_host=cfg.http_host,
        http_port=args.http_port if args.http_port is not None else cfg.http_port,
        southbound=cfg.southbound and not args.no_southbound,
        batch_entities=cfg.batch_entities,
        uplink_lanes=cfg.uplink_lanes,
        profiles_dir=args.profiles or (Path(cfg.profiles_dir) if cfg.profiles_dir else None),
        platform_token=read_token(
            args.platform_token_file or cfg.platform_token_file,
            "platform token",
        ),
        notify_token=read_token(args.notify_token_file or cfg.notify_token_file, "notify token"),
        oscore_file=oscore_keys(args.oscore or cfg.oscore_file),
    )


def run_gateway(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.profiles import ProfileError  # noqa: PLC0415
    from gateway.service import Gateway  # noqa: PLC0415  # heavy imports

    config = gateway_config(args, settings)
    try:
        gateway = Gateway(config)
    except ProfileError as exc:  # a profiles directory of the user's (--profiles)
        print(f"testbed gateway: {exc}", file=sys.stderr)
        return 2

    async def start() -> None:
        await gateway.start()
        shown = f"[{config.http_host}]" if ":" in config.http_host else config.http_host
        coap = f"coap://[{config.coap_host}]:{config.coap_port}" if config.coap_host else "off"
        print(
            f"gateway: platform {config.platform_url}, "
            f"MQTT {f'{config.broker_url} as {config.client_id}' if config.broker_url else 'off'}, "
            f"CoAP ingest {coap}, "
            f"RD {config.rd_url or 'off'}, metrics http://{shown}:{gateway.http_port}/metrics, "
            f"queue {config.queue_path}",
            file=sys.stderr,
            flush=True,
        )

    def tick() -> None:
        h = gateway.health()
        if args.verbose:
            print(
                f"gateway: received {h['received']:.0f}, forwarded {h['forwarded']:.0f}, "
                f"rejected {h['rejected']:.0f}, queued {h['queued']}, platform {h['platform']}",
                file=sys.stderr,
                flush=True,
            )

    from testbed.daemon import run_until_signal  # noqa: PLC0415

    with asyncio.Runner(loop_factory=lambda: new_event_loop(args.loop)) as runner:
        try:
            runner.run(run_until_signal(start, gateway.shutdown, tick=tick, interval=10.0))
        except Exception:
            # A loop of ours failed and its TaskGroup stopped the rest (DESIGN 4): said once,
            # with the traceback, and the exit status tells whoever supervises the gateway.
            log.exception("gateway: stopped by an unexpected error")
            return 1
    return 0
