"""``testbed up``: a whole city on one machine, offline, IPv6 loopback.

Starts the MQTT broker (Mosquitto when installed, else the embedded amqtt), the platform, a
CoRE resource directory (aiocoap-rd) and the gateway, each as a supervised child process with
its log under the data directory, then the scenario's devices (in this process); prints where
everything listens, shows a live one-line summary, restarts a part that dies, and stops it all
on Ctrl-C. Every port is checked before anything starts, and a failed start stops what had
started.

Secure by default (docs/security.md): the city's credentials are made under
``<data dir>/security`` (kept across restarts), Mosquitto listens with TLS only and a password
per account, the platform wants bearer tokens and notifies only the gateway's /notify, which
wants its own token.  ``--insecure`` is the open lab city of the first lesson: plain MQTT with
the scenario's shared password, no tokens.  One ``--broker-port`` whose default follows the
mode (8883, IANA's MQTT over TLS, or 1883): a city has one MQTT listener, never both.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import signal
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

import httpx
import platformdirs

from gateway.profiles import unprofiled
from testbed.brokers import (
    OBSERVER_USER,
    TLS_PORT,
    Broker,
    BrokerTls,
    MosquittoBroker,
    choose_broker,
    find_mosquitto,
)
from testbed.city_security import (
    INSECURE_BANNER,
    CitySecurity,
    clear_data,
    fleet_oscore,
    scenario_devices,
    stack_security,
)
from testbed.dashboard_cmd import write_inventory
from testbed.parts import ROOT, StackLayout, StackPorts
from testbed.processes import (
    ManagedProcess,
    PortClaim,
    ProcessError,
    check_ports,
    free_port,
    port_arg,
)
from testbed.settings import Settings
from testbed.summary import Summary, recent_window
from testbed.supervisor import Supervisor

OBSERVER_PASSWORD = "observer"  # noqa: S105  # read-only lab account, printed at start

PLAIN_PORT = 1883
MAX_GATEWAYS = 16
MAX_PLATFORMS = 8
CITY_DATABASE = "r197_city"  # in the throw-away cluster of --platforms M > 1 without --db
INTEROP = ROOT / "docs" / "interop"  # the interop matrix's reports, in a clone of the repository
DESCRIPTION = """\
Start a whole smart city on this machine: MQTT broker, NGSI-LD platform, CoAP resource
directory, gateway and the devices of a scenario, all on IPv6 loopback [::1]. Prints where each
part listens and a live summary; a part that dies is restarted; Ctrl-C stops everything cleanly.
Works offline: the platform fetches no @context from the network (the shipped ones are
preloaded) unless --remote-contexts is given.

Secure by default: credentials under DATA_DIR/security (see `testbed secrets show`), MQTT over
TLS only with a password per device, API bearer tokens (printed at start), a token on the
gateway's /notify. --insecure starts the open lab city instead (plain MQTT, shared password,
no tokens). See docs/security.md.
"""


def register(sub: Any, epilog: str) -> None:
    parser = sub.add_parser(
        "up",
        help="start a whole city: broker, platform, resource directory, gateway, devices",
        description=DESCRIPTION,
        epilog=epilog + "\nExample: testbed up --scenario workshop",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--scenario", default="workshop", help="scenario file or shipped name (workshop)"
    )
    parser.add_argument(
        "--broker", choices=["auto", "mosquitto", "amqtt"], default="auto",
        help="MQTT broker: Mosquitto if installed (auto), or the embedded amqtt",
    )  # fmt: skip
    parser.add_argument("--data-dir", type=Path, help="databases, queue and logs (user data dir)")
    parser.add_argument(
        "--fresh", action="store_true",
        help="start with an empty city database (the credentials under security/ are kept: "
        "`testbed secrets rotate` renews them)",
    )  # fmt: skip
    parser.add_argument(
        "--insecure", action="store_true",
        help="the open lab city: plain MQTT on 1883 with the scenario's shared password, plain "
        "CoAP, no API tokens (a first lesson; never on a shared network)",
    )  # fmt: skip
    parser.add_argument(
        "--broker-port", type=port_arg, metavar="PORT",
        help=f"the MQTT broker's TCP port ({TLS_PORT}, TLS; {PLAIN_PORT} with --insecure)",
    )  # fmt: skip
    parser.add_argument(
        "--allow-endpoint", action="append", default=[], metavar="URLPREFIX",
        help="let the platform also notify (or fetch @contexts from) URLs under this prefix "
        "(repeatable; the gateway's /notify is always allowed)",
    )  # fmt: skip
    ports = StackPorts()
    for option, default, what in (
        ("--platform-port", ports.platform, "the platform's HTTP port"),
        ("--rd-port", ports.rd, "the resource directory's CoAP (UDP) port"),
        ("--gateway-coap-port", ports.gateway_coap, "the gateway's CoAP push (UDP) port"),
        ("--gateway-http-port", ports.gateway_http, "the gateway's /metrics and /health port"),
        ("--dashboard-port", ports.dashboard, "the web dashboard's HTTP port"),
    ):
        parser.add_argument(
            option, type=port_arg, default=default, metavar="PORT", help=f"{what} ({default})"
        )
    parser.add_argument(
        "--remote-contexts", action="store_true",
        help="let the platform fetch @context URLs over the network (off: the city works "
        "offline, with the shipped @contexts preloaded and those added by POST /jsonldContexts)",
    )  # fmt: skip
    parser.add_argument(
        "--profiles", type=Path, metavar="DIR",
        help="the gateway's extra device profiles (<kind>.toml), e.g. a domain of your own "
        "(docs/labs/09-new-domain.md)",
    )  # fmt: skip
    parser.add_argument(
        "--reports", type=Path, default=Path("conformance-report"), metavar="DIR",
        help="the conformance reports the dashboard shows, besides docs/interop's "
        "(conformance-report)",
    )  # fmt: skip
    parser.add_argument(
        "--gateways", type=gateway_count, default=1, metavar="N",
        help="gateways in the MQTT 5 shared subscription group $share/r197-gateways (1); "
        "gateway k > 1 takes MQTT only, its /metrics on --gateway-http-port + k - 1",
    )  # fmt: skip
    parser.add_argument(
        "--platforms", type=platform_count, default=1, metavar="M",
        help="platform processes on one PostgreSQL database (1); platform k on --platform-port "
        "+ k - 1, the gateways spread over them round-robin; M > 1 without --db starts a "
        "throw-away PostgreSQL cluster (gone when the city stops)",
    )  # fmt: skip
    parser.add_argument(
        "--db", metavar="URL",
        help="the platforms' PostgreSQL database, postgresql://user:pw@[::1]:5432/city "
        "(default: SQLite in the data directory)",
    )  # fmt: skip
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument(
        "--no-restart", action="store_true",
        help="stop the city when a part dies instead of restarting it",
    )  # fmt: skip
    parser.set_defaults(func=run_up)


def gateway_count(text: str) -> int:
    """--gateways: 1 to 16 (each one more process, MQTT session and HTTP port)."""
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 1 <= count <= MAX_GATEWAYS:
        raise argparse.ArgumentTypeError(f"from 1 to {MAX_GATEWAYS}, not {count}")
    return count


def platform_count(text: str) -> int:
    """--platforms: 1 to 8."""
    count = gateway_count(text)
    if count > MAX_PLATFORMS:
        raise argparse.ArgumentTypeError(f"from 1 to {MAX_PLATFORMS}, not {count}")
    return count


def broker_port(args: argparse.Namespace) -> int:
    """--broker-port, or the mode's default: 1883 for the open city, 8883 (TLS) otherwise."""
    if args.broker_port is not None:
        return int(args.broker_port)
    return PLAIN_PORT if args.insecure else TLS_PORT


def layout_of(args: argparse.Namespace, data: Path, gateway_password: str) -> StackLayout:
    ports = StackPorts(
        platform=args.platform_port,
        broker=broker_port(args),
        rd=args.rd_port,
        gateway_coap=args.gateway_coap_port,
        gateway_http=args.gateway_http_port,
        dashboard=args.dashboard_port,
    )
    return StackLayout(
        data=data, ports=ports, gateway_password=gateway_password,
        remote_contexts=args.remote_contexts,
        profiles_dir=args.profiles.resolve() if args.profiles else None,
        dashboard=True, inventory=data / "dashboard-devices.json",
        reports=(args.reports.resolve(), *([INTEROP] if INTEROP.is_dir() else [])),
        gateways=args.gateways, platforms=args.platforms, db_url=args.db,
    )  # fmt: skip


def run_up(args: argparse.Namespace, settings: Settings) -> int:
    from devices.scenario import ScenarioError, load_scenario  # noqa: PLC0415
    from testbed.devices_cmd import resolve_scenario  # noqa: PLC0415

    try:
        scenario = load_scenario(resolve_scenario(args.scenario))
    except (FileNotFoundError, ScenarioError) as exc:
        print(f"testbed up: {exc}", file=sys.stderr)
        return 2
    if problem := unprofiled({g.kind for g in scenario.groups}, args.profiles):
        print(f"testbed up: {problem}", file=sys.stderr)  # else the gateway refuses them all
        return 2
    if not args.insecure and (args.broker == "amqtt" or find_mosquitto() is None):
        # The embedded amqtt broker has no TLS, no per-device passwords and no ACL.
        print(
            "testbed up: a secure city needs Mosquitto for MQTT over TLS: install mosquitto "
            "(apt-get install mosquitto) or use --insecure",
            file=sys.stderr,
        )
        return 2
    if args.gateways > 1 and (args.broker == "amqtt" or find_mosquitto() is None):
        # amqtt speaks MQTT 3.1.1: no shared subscription, every gateway would get every reading
        print(
            "testbed up: --gateways needs Mosquitto (MQTT 5 shared subscriptions)", file=sys.stderr
        )
        return 2
    if args.db is not None and not args.db.startswith(("postgresql://", "postgres://")):
        print("testbed up: --db takes a postgresql:// URL", file=sys.stderr)
        return 2
    data = args.data_dir or Path(platformdirs.user_data_dir("r197-testbed")) / "city"
    cluster = None
    if args.platforms > 1 and args.db is None:
        from testbed.pgcluster import PgCluster  # noqa: PLC0415

        cluster = PgCluster(port=free_port())  # SQLite is one process's: M need PostgreSQL
        args.db = cluster.url(CITY_DATABASE)
    layout = layout_of(args, data, secrets.token_urlsafe(12))
    claims = [*layout.claims(), *_device_claims(scenario)]
    try:
        check_ports(claims)  # before anything starts, or anything is deleted
    except ProcessError as exc:
        print(f"testbed up: {exc}", file=sys.stderr)
        return 1
    if args.fresh:
        clear_data(data)
    (data / "logs").mkdir(parents=True, exist_ok=True)
    write_inventory(scenario, data / "dashboard-devices.json")  # the dashboard's device table
    security = None if args.insecure else CitySecurity.at(data)
    accounts: dict[str, str] = {}
    if security is not None:
        accounts = security.prepare(*scenario_devices(scenario), gateways=args.gateways)
        sec = stack_security(security, args.allow_endpoint, gateways=args.gateways)
        layout = replace(layout, security=sec)
    city = City(args, scenario, layout, sys.stderr, security=security, accounts=accounts)
    city.cluster = cluster
    try:
        return asyncio.run(city.run())
    except ProcessError as exc:
        print(f"testbed up: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C while starting: everything started was stopped
        print("city stopped", file=sys.stderr, flush=True)
        return 130


def _device_claims(scenario: Any) -> list[PortClaim]:
    host = scenario.endpoints.coap_host
    return [
        PortClaim(f"CoAP device {d.device_id}", d.coap_port, "udp", host, "coap_base_port")
        for d in scenario.devices()
        if d.coap_port is not None
    ]


class City:
    """One run of ``testbed up``: start in order, supervise, summarize, stop in reverse."""

    def __init__(
        self,
        args: argparse.Namespace,
        scenario: Any,
        layout: StackLayout,
        out: TextIO,
        *,
        security: CitySecurity | None = None,
        accounts: dict[str, str] | None = None,
    ) -> None:
        self.security = security
        self.accounts = dict(accounts or {})  # the secure city's MQTT accounts and passwords
        self.args = args
        self.scenario = scenario
        self.layout = layout
        self.out = out
        self.interactive = out.isatty()
        self.stopping = asyncio.Event()
        self.failure: str | None = None
        self.running = False  # started: a signal now stops the city instead of the start-up
        self.show_now = False
        self.supervisor = Supervisor(on_event=self.event)
        self.cluster: Any = None  # a throw-away PgCluster for --platforms M > 1 without --db

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    def event(self, text: str) -> None:
        if self.interactive:
            print(file=self.out)  # off the summary line
        self.say(f"supervisor {text}")
        self.show_now = True  # the next summary says what changed

    def _broker(self) -> Broker:
        if self.security is not None:  # TLS only, one password per account (testbed.brokers)
            return MosquittoBroker(
                port=self.layout.ports.broker, users=self.accounts,
                tls=BrokerTls.of(self.security.credentials),
                workdir=self.layout.data / "mosquitto",
            )  # fmt: skip
        mqtt_ids = [s.device_id for s in self.scenario.devices() if s.group.protocol == "mqtt"]
        assert self.layout.gateway_password is not None
        users = {
            "gateway": self.layout.gateway_password,
            OBSERVER_USER: OBSERVER_PASSWORD,
            **dict.fromkeys(mqtt_ids, self.scenario.password),
        }
        broker = choose_broker(
            prefer=self.args.broker, port=self.layout.ports.broker, users=users,
            workdir=self.layout.data / "mosquitto",
        )  # fmt: skip
        if broker.name == "amqtt":
            for group in self.scenario.groups:
                group.mqtt_version = "3.1.1"  # amqtt speaks MQTT 3.1.1 only
        return broker

    def _on_signal(self, main: asyncio.Task[Any] | None) -> None:
        if self.stopping.is_set() or main is None:
            return
        if self.running:
            self.stopping.set()
        else:
            main.cancel()  # still starting: unwind what has started

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        main = asyncio.current_task()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal, main)
        try:
            async with contextlib.AsyncExitStack() as stack:
                stack.callback(self.say, "city stopped")
                fleet = await self._start(stack)
                self.running = True
                await self._serve(fleet)
                if self.interactive:
                    print(file=self.out)
        except asyncio.CancelledError:
            return 130
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        if self.failure is not None:
            print(f"testbed up: {self.failure}", file=sys.stderr, flush=True)
            return 1
        return 0

    async def _start(self, stack: contextlib.AsyncExitStack) -> Any:
        from devices.fleet import Fleet  # noqa: PLC0415

        layout, ports = self.layout, self.layout.ports
        if self.cluster is not None:
            await asyncio.to_thread(self.cluster.start)
            stack.callback(self.cluster.stop)  # after the platforms (the stack unwinds)
            await asyncio.to_thread(self.cluster.create_database, CITY_DATABASE)
            self.say(
                f"database  throw-away PostgreSQL cluster at [::1]:{self.cluster.port} for "
                f"{layout.platforms} platforms (gone at stop; --db URL for a lasting one)"
            )
        broker = await stack.enter_async_context(self._broker())
        if self.security is None:
            self.say(INSECURE_BANNER)
        if isinstance(broker, MosquittoBroker) and self.security is not None:
            self.supervisor.watch(broker.process)
            self.say(f"broker    mosquitto at {broker.url} (TLS only, a password per account)")
            self.say(self.security.observer_help(ports.broker))
        elif isinstance(broker, MosquittoBroker):
            self.supervisor.watch(broker.process)
            self.say(f"broker    mosquitto at {broker.url}")
            self.say(
                f"          read-only user {OBSERVER_USER!r}, password {OBSERVER_PASSWORD!r}: "
                f"mosquitto_sub -h ::1 -p {ports.broker} -u {OBSERVER_USER} "
                f"-P {OBSERVER_PASSWORD} -t 'city/#' -v"
            )
        else:
            self.say(f"broker    {broker.name} (embedded, MQTT 3.1.1 only) at {broker.url}")
        shown = {
            "platform": (
                f"platform  NGSI-LD at {layout.platform_url}/ngsi-ld/v1 (docs /docs); @contexts: "
                + (
                    "remote ones are fetched"
                    if layout.remote_contexts
                    else "shipped and added ones only (--remote-contexts fetches others)"
                )
            ),
            "rd": f"directory CoRE RD (RFC 9176) at {layout.rd_url}"
            + (", registrations with OSCORE only" if layout.security else ""),
            "gateway": (
                f"gateway   CoAP push at coap://[::1]:{ports.gateway_coap}/up/<device>"
                + (" (OSCORE, RFC 8613)" if layout.security else "")
                + ", "
                f"metrics at http://[::1]:{ports.gateway_http}/metrics"
            ),
            "dashboard": f"dashboard {layout.dashboard_url}/ (map, live values, devices, reports"
            + (", log in with a token below)" if layout.security else ")"),
        }
        for spec in layout.specs():
            proc = ManagedProcess(spec, log_path=layout.data / "logs" / f"{spec.name}.log")
            await stack.enter_async_context(proc)
            self.supervisor.watch(proc)
            self.say(shown.get(spec.name) or self._more_line(spec))
        if self.security is not None:
            self.say(self.security.token_help(layout.platform_url))
        fleet = await stack.enter_async_context(
            Fleet(
                self.scenario, broker=broker.url, rd=layout.rd_url,
                gateway=f"coap://[::1]:{ports.gateway_coap}",
                passwords=self.accounts or None,
                broker_ca=layout.security.ca_file if layout.security else None,
                **fleet_oscore(layout.security),
            )
        )  # fmt: skip
        coap = ", ".join(c.uri for c in fleet.coap[:3]) + (" ..." if len(fleet.coap) > 3 else "")
        self.say(
            f"devices   {len(fleet.devices)} from {self.args.scenario}: {len(fleet.mqtt)} MQTT, "
            f"{len(fleet.coap)} CoAP servers ({coap or 'none'}), {len(fleet.push)} CoAP push"
        )
        self.say(f"logs      {layout.data / 'logs'}; Ctrl-C stops the city")
        return fleet

    def _more_line(self, spec: Any) -> str:
        """platform-2 .., gateway-2 ..: more processes of the same part (StackLayout)."""
        port = spec.ports[0].port
        if spec.name.startswith("platform"):
            return f"{spec.name} NGSI-LD at http://[::1]:{port}/ngsi-ld/v1, the same database"
        return f"{spec.name} MQTT only, same $share group, metrics at http://[::1]:{port}/metrics"

    async def _serve(self, fleet: Any) -> None:
        intervals = [g.interval for g in self.scenario.groups]
        summary = Summary(
            gateway_health=self.layout.gateway_health,
            platform_url=self.layout.platform_url,
            devices=len(fleet.devices),
            recent=recent_window(intervals),
            more_gateways=tuple(
                f"http://[::1]:{self.layout.ports.gateway_http + k - 1}/health"
                for k in range(2, self.layout.gateways + 1)
            ),
            # The line's entity count is a read like any other: with the reader token.
            platform_headers=(
                {"Authorization": f"Bearer {self.security.token('reader')}"}
                if self.security is not None
                else {}
            ),
        )
        async with httpx.AsyncClient(timeout=2) as client:
            async with asyncio.TaskGroup() as tg:
                if self.args.no_restart:
                    tg.create_task(self._watch_only(), name="watch parts")
                else:
                    tg.create_task(self.supervisor.run(self.stopping), name="supervisor")
                tg.create_task(self._show(summary, client), name="summary")
                if self.args.duration is not None:
                    tg.create_task(self._stop_after(self.args.duration), name="duration")
            if self.args.duration is not None:
                self.say(await summary.line(client, self.supervisor.describe()))

    async def _watch_only(self) -> None:
        while not self.stopping.is_set():
            for name, proc in self.supervisor.parts.items():
                if not proc.alive:
                    self.failure = f"{name} exited with {proc.returncode}; see {proc.log_path}"
                    self.stopping.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), 0.5)

    async def _stop_after(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)
        self.stopping.set()

    async def _show(self, summary: Summary, client: httpx.AsyncClient) -> None:
        ticks = 0
        while not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), 1.0)
            if self.stopping.is_set():
                return
            ticks += 1
            line = await summary.line(client, self.supervisor.describe())
            if self.interactive:
                print("\r" + line.ljust(110), end="", file=self.out, flush=True)
            elif ticks % 10 == 1 or self.show_now:
                self.say(line)
            self.show_now = False


def gateway_argv(layout: StackLayout, password: str) -> list[str]:
    """The ``testbed`` arguments that start the city's gateway (after ``python -m testbed``)."""
    argv = list(replace(layout, gateway_password=password).gateway().argv)
    return argv[3:]
