"""The programs of a city as :class:`ProcessSpec` s, and the description of a whole stack.

Each command line is written here once: ``testbed up``, the conformance reference stack, the
test fixtures and the benchmarks build their processes from these functions.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from testbed.processes import (
    CoapReady,
    HttpReady,
    PortClaim,
    ProcessSpec,
    free_port,
)

ROOT = Path(__file__).resolve().parent.parent
UDP_ONLY = {"AIOCOAP_SERVER_TRANSPORT": "udp6"}  # aiocoap also binds TCP and WebSocket otherwise
SHIPPED_CONTEXTS = ROOT / "city_platform" / "contexts"  # testbed up's --context-dir


def cli_argv(*args: str, verbose: int = 0) -> tuple[str, ...]:
    """``python -m testbed [-v...] ARGS`` with this interpreter."""
    flags = ("-" + "v" * verbose,) if verbose > 0 else ()
    return (sys.executable, "-m", "testbed", *flags, *args)


def url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def platform_spec(
    *,
    port: int,
    db: str | Path = ":memory:",
    host: str = "::1",
    verbose: int = 1,
    remote_contexts: bool = False,
    context_dir: str | Path | None = None,
    name: str = "platform",
    option: str | None = None,
    auth_key: Path | None = None,
    allow_endpoints: Sequence[str] = (),
    influx: Sequence[str] = (),
) -> ProcessSpec:
    """``testbed platform``, ready when /health answers (open also with ``auth_key``).

    ``influx``: the InfluxDB flags as they are (``--influx URL --influx-bucket B ...``)."""
    args = ["platform", "--host", host, "--port", str(port), "--db", str(db)]
    if not remote_contexts:
        args.append("--no-remote-contexts")
    if context_dir is not None:
        args += ["--context-dir", str(context_dir)]
    if auth_key is not None:
        args += ["--auth-key", str(auth_key)]
    for prefix in allow_endpoints:
        args += ["--allow-endpoint", prefix]
    args += influx
    return ProcessSpec(
        name=name,
        argv=cli_argv(*args, verbose=verbose),
        ready=HttpReady(f"http://{url_host(host)}:{port}/health"),
        cwd=ROOT,
        ports=(PortClaim(name, port, "tcp", host, option),),
    )


@dataclass(frozen=True)
class GatewayOptions:
    """What a gateway process is started with (the ``testbed gateway`` options)."""

    platform_url: str
    broker_url: str | None
    http_port: int
    coap_port: int
    queue: Path
    rd: str = "off"
    broker_user: str | None = None
    broker_password: str | None = None
    southbound: bool = True
    host: str = "::1"
    broker_ca: Path | None = None  # with an mqtts:// broker_url
    extra: tuple[str, ...] = ()
    platform_token_file: Path | None = None
    notify_token_file: Path | None = None
    oscore_file: Path | None = None  # the devices' OSCORE keys: CoAP with OSCORE only
    profiles_dir: Path | None = None  # more device profiles (<kind>.toml), e.g. a lab's domain


def gateway_spec(
    options: GatewayOptions,
    *,
    verbose: int = 1,
    name: str = "gateway",
    wait_for_mqtt: bool = True,
    http_option: str | None = None,
    coap_option: str | None = None,
) -> ProcessSpec:
    """``testbed gateway``; ready when /health answers (and, by default, says MQTT is up)."""
    o = options
    args = ["gateway", "--platform", o.platform_url, "--broker", o.broker_url or "off"]
    args += ["--rd", o.rd, "--coap-port", str(o.coap_port), "--http-port", str(o.http_port)]
    args += ["--queue", str(o.queue)]
    if o.broker_user is not None:
        args.append(f"--broker-user={o.broker_user}")
    if o.broker_password is not None:
        # "=": a generated password may begin with "-", which argparse takes for an option
        # (the gateway then refused to start, about once in 64 starts).
        args.append(f"--broker-password={o.broker_password}")
    if o.broker_ca is not None:
        args += ["--broker-ca", str(o.broker_ca)]
    if not o.southbound:
        args.append("--no-southbound")
    if o.platform_token_file is not None:
        args += ["--platform-token-file", str(o.platform_token_file)]
    if o.notify_token_file is not None:
        args += ["--notify-token-file", str(o.notify_token_file)]
    if o.oscore_file is not None:
        args += ["--oscore", str(o.oscore_file)]
    if o.profiles_dir is not None:
        args += ["--profiles", str(o.profiles_dir)]
    args += o.extra
    health = f"http://{url_host(o.host)}:{o.http_port}/health"
    return ProcessSpec(
        name=name,
        argv=cli_argv(*args, verbose=verbose),
        # "mqtt": the subscription is in place, so a reading published now is not lost to a
        # gateway that is still connecting.
        ready=HttpReady(health, require="mqtt" if wait_for_mqtt and o.broker_url else None),
        cwd=ROOT,
        ports=(
            PortClaim(name, o.http_port, "tcp", o.host, http_option),
            PortClaim(f"{name} CoAP", o.coap_port, "udp", o.host, coap_option),
        ),
    )


def rd_spec(
    *, port: int, host: str = "::1", option: str | None = None, oscore: Path | None = None
) -> ProcessSpec:
    """``testbed rd``: aiocoap's CoRE resource directory (RFC 9176) on UDP only, ready when it
    answers a ping; with ``oscore`` only provisioned devices register (testbed/rd_cmd.py)."""
    args = ["rd", "--host", host, "--port", str(port)]
    if oscore is not None:
        args += ["--oscore", str(oscore)]
    return ProcessSpec(
        name="rd",
        argv=cli_argv(*args),
        ready=CoapReady(host, port),
        env=UDP_ONLY,
        cwd=ROOT,
        ports=(PortClaim("resource directory", port, "udp", host, option),),
    )


def dashboard_spec(
    *, port: int, platform_url: str, gateway_url: str | None = None, host: str = "::1",
    token_file: Path | None = None, reports: Sequence[Path] = (), devices: Path | None = None,
    option: str | None = None, verbose: int = 1, types: Sequence[str] = (),
) -> ProcessSpec:  # fmt: skip
    """``testbed dashboard`` (city_platform/dashboard), ready when its page's session answers."""
    args = ["dashboard", "--host", host, "--port", str(port), "--platform", platform_url]
    args += ["--gateway", gateway_url or "off"]
    if token_file is not None:
        args += ["--token-file", str(token_file)]
    for directory in reports:
        args += ["--reports", str(directory)]
    if devices is not None:
        args += ["--devices", str(devices)]
    for entity_type in types:  # none: the dashboard's default, the shipped profiles' types
        args += ["--type", entity_type]
    return ProcessSpec(
        name="dashboard",
        argv=cli_argv(*args, verbose=verbose),
        ready=HttpReady(f"http://{url_host(host)}:{port}/api/session"),
        cwd=ROOT,
        ports=(PortClaim("dashboard", port, "tcp", host, option),),
    )


def devices_spec(
    *, scenario: Path, name: str = "devices", rd: str = "off", ready_port: int | None = None,
    extra: Sequence[str] = (),
) -> ProcessSpec:  # fmt: skip
    """``testbed devices``; ready when the CoAP server on ``ready_port`` answers a ping."""
    argv = cli_argv("devices", "--scenario", str(scenario), "--rd", rd, *extra)
    ready = CoapReady("::1", ready_port) if ready_port is not None else None
    return ProcessSpec(name=name, argv=argv, ready=ready, cwd=ROOT)


@dataclass(frozen=True)
class StackPorts:
    """The ports of one stack on [::1]."""

    platform: int = 8000
    broker: int = 1883
    rd: int = 5783
    gateway_coap: int = 5684
    gateway_http: int = 8081
    dashboard: int = 8090

    @classmethod
    def free(cls) -> StackPorts:
        """Ports the OS says are free now (tests and benchmarks run many stacks side by side)."""
        ports = (free_port(), free_port(), free_port("udp"), free_port("udp"), free_port())
        return cls(*ports, dashboard=free_port())


@dataclass(frozen=True)
class StackSecurity:
    """The files a secure stack runs with (testbed.city_security.CitySecurity makes them)."""

    ca_file: Path  # the city's CA: the gateway verifies the TLS broker with it
    auth_key: Path  # the platform's --auth-key (HS256)
    platform_token_file: Path  # the gateway's bearer token for the platform (write scope)
    notify_token_file: Path  # what the gateway's POST /notify requires
    gateway_password: str  # the gateway's MQTT password: given in its environment, not argv
    oscore_file: Path | None = None  # per-device OSCORE contexts (gateway and RD --oscore)
    allow_endpoints: tuple[str, ...] = ()  # more --allow-endpoint prefixes than the gateway's
    dashboard_token_file: Path | None = None  # the dashboard's own token (its subscription)
    more_gateway_passwords: tuple[str, ...] = ()  # gateway-2 .. gateway-N's (StackLayout.gateways)


@dataclass(frozen=True)
class StackLayout:
    """One whole stack: where each part listens, where its files go, how the gateway logs in.

    The broker is not a spec here: it is an object of its own (testbed.brokers), as it writes a
    configuration and password file first, and may run in-process (amqtt).
    """

    data: Path
    ports: StackPorts = field(default_factory=StackPorts)
    rd: bool = True
    southbound: bool = True
    gateway_user: str | None = None
    gateway_password: str | None = None
    verbose: int = 1
    remote_contexts: bool = False  # testbed up works offline: the shipped @contexts only
    # Secure mode: TLS broker, platform tokens, /notify token (None: the open lab city).
    security: StackSecurity | None = None
    dashboard: bool = False  # `testbed up` serves the web dashboard too
    reports: tuple[Path, ...] = ()  # the dashboard's --reports (conformance report files)
    inventory: Path | None = None  # the dashboard's --devices (protocol and format per device)
    profiles_dir: Path | None = None  # the gateway's extra device profiles (testbed up --profiles)
    # Gateways in the MQTT 5 shared-subscription group (testbed up --gateways): gateway k > 1
    # listens on the gateway ports + k - 1 and takes MQTT only (StackLayout.gateway).
    gateways: int = 1
    # Platform processes on one PostgreSQL database (testbed up --platforms M --db URL): platform
    # k listens on the platform port + k - 1; gateway k writes to platform (k - 1) % M + 1.
    platforms: int = 1
    db_url: str | None = None  # postgresql://...; None: SQLite <data>/platform.db (one platform)

    @property
    def platform_url(self) -> str:
        return f"http://[::1]:{self.ports.platform}"

    def platform_url_of(self, number: int) -> str:
        """Platform ``number``'s URL (1: :attr:`platform_url`, what tools and the dashboard use)."""
        return f"http://[::1]:{self.ports.platform + number - 1}"

    def platform_for_gateway(self, number: int) -> str:
        """The gateways spread round-robin over the platforms (one database behind them all)."""
        return self.platform_url_of((number - 1) % self.platforms + 1)

    @property
    def broker_url(self) -> str:
        scheme = "mqtts" if self.security is not None else "mqtt"
        return f"{scheme}://[::1]:{self.ports.broker}"

    @property
    def dashboard_url(self) -> str:
        return f"http://[::1]:{self.ports.dashboard}"

    @property
    def notify_url(self) -> str:
        """The gateway's POST /notify (gateway.service: http://[http_host]:http_port/notify)."""
        return f"http://[::1]:{self.ports.gateway_http}/notify"

    @property
    def rd_url(self) -> str:
        return f"coap://[::1]:{self.ports.rd}" if self.rd else "off"

    @property
    def gateway_health(self) -> str:
        return f"http://[::1]:{self.ports.gateway_http}/health"

    def platform(self, number: int = 1) -> ProcessSpec:
        sec = self.security
        return platform_spec(
            port=self.ports.platform + number - 1,
            db=self.db_url or self.data / "platform.db", verbose=self.verbose,
            name="platform" if number == 1 else f"platform-{number}",
            option="--platform-port", context_dir=SHIPPED_CONTEXTS,
            remote_contexts=self.remote_contexts,
            auth_key=sec.auth_key if sec else None,
            # SSRF: the platform notifies the gateway and whatever the user allowed, nothing else
            allow_endpoints=(
                (self.notify_url, *self._dashboard_notify, *sec.allow_endpoints) if sec else ()
            ),
        )  # fmt: skip  # offline unless asked: no remote @context fetching, shipped ones preloaded

    @property
    def _dashboard_notify(self) -> tuple[str, ...]:
        return (f"{self.dashboard_url}/notify",) if self.dashboard else ()

    def dashboard_part(self) -> ProcessSpec:
        sec = self.security
        return dashboard_spec(
            port=self.ports.dashboard, platform_url=self.platform_url,
            gateway_url=f"http://[::1]:{self.ports.gateway_http}",
            token_file=sec.dashboard_token_file if sec else None, reports=self.reports,
            devices=self.inventory, option="--dashboard-port", verbose=self.verbose,
            types=self.profile_types(),
        )  # fmt: skip

    def profile_types(self) -> tuple[str, ...]:
        """With --profiles, every entity type the gateway makes (a lab 09 domain's too)."""
        if self.profiles_dir is None:
            return ()
        from gateway.profiles import Profiles  # noqa: PLC0415

        profiles = Profiles(self.profiles_dir)
        found = (profiles.get(kind) for kind in profiles.kinds())
        return tuple(dict.fromkeys(p.entity_type for p in found if p is not None))

    def resource_directory(self) -> ProcessSpec:
        # Secure: only provisioned devices register, each with its own OSCORE context.
        oscore = self.security.oscore_file if self.security else None
        return rd_spec(port=self.ports.rd, option="--rd-port", oscore=oscore)

    def gateway(self, number: int = 1) -> ProcessSpec:
        """Gateway ``number`` (1: the city's gateway, with CoAP, the RD and actuation)."""
        if number > 1:
            return self._more_gateway(number)
        options = GatewayOptions(
            platform_url=self.platform_url,
            broker_url=self.broker_url,
            http_port=self.ports.gateway_http,
            coap_port=self.ports.gateway_coap,
            queue=self.data / "gateway-queue.db",
            rd=self.rd_url,
            broker_user=self.gateway_user,
            broker_password=self.gateway_password if self.security is None else None,
            southbound=self.southbound,
            profiles_dir=self.profiles_dir,
        )
        sec = self.security
        if sec is not None:
            options = replace(
                options, broker_user="gateway", broker_ca=sec.ca_file,
                platform_token_file=sec.platform_token_file,
                notify_token_file=sec.notify_token_file, oscore_file=sec.oscore_file,
            )  # fmt: skip
        spec = gateway_spec(
            options, verbose=self.verbose, wait_for_mqtt=False,
            http_option="--gateway-http-port", coap_option="--gateway-coap-port",
        )  # fmt: skip
        if sec is None:
            return spec
        # The password in the environment (settings: gateway.broker_password), not in the
        # command line that every local user sees in `ps`.
        return replace(
            spec, env={**spec.env, "TESTBED_GATEWAY__BROKER_PASSWORD": sec.gateway_password}
        )

    def _more_gateway(self, number: int) -> ProcessSpec:
        """Gateway 2 .. N: one more member of the shared subscription ($share/r197-gateways),
        MQTT only, with an account, client id, queue file and HTTP port of its own.  No CoAP:
        the devices push to and are observed by gateway 1 (two observers would each forward
        every observation), and its OSCORE contexts are gateway 1's alone (one sequence
        number state per context, RFC 8613 7.5); no actuation, which gateway 1 relays."""
        name = f"gateway-{number}"
        sec = self.security
        password = self.gateway_password
        if sec is not None:
            password = sec.more_gateway_passwords[number - 2]
        options = GatewayOptions(
            platform_url=self.platform_for_gateway(number), broker_url=self.broker_url,
            http_port=self.ports.gateway_http + number - 1, coap_port=self.ports.gateway_coap,
            queue=self.data / f"{name}-queue.db", rd="off", southbound=False,
            broker_user=name if sec is not None else self.gateway_user,
            broker_password=password if sec is None else None,
            broker_ca=sec.ca_file if sec else None,
            platform_token_file=sec.platform_token_file if sec else None,
            profiles_dir=self.profiles_dir, extra=("--client-id", name),
        )  # fmt: skip
        spec = gateway_spec(
            options, verbose=self.verbose, wait_for_mqtt=False, name=name,
            http_option="--gateway-http-port",
        )  # fmt: skip
        env = {**spec.env, "TESTBED_GATEWAY__COAP_HOST": "off"}  # no CoAP ingest at all
        if sec is not None:  # in the environment, not in `ps` (as gateway 1's)
            env["TESTBED_GATEWAY__BROKER_PASSWORD"] = password or ""
        return replace(spec, env=env, ports=spec.ports[:1])  # no CoAP port to claim

    def specs(self) -> list[ProcessSpec]:
        """The child processes in start order (the broker comes before them)."""
        return [
            *(self.platform(k) for k in range(1, self.platforms + 1)),
            *([self.resource_directory()] if self.rd else []),
            self.gateway(),
            *(self.gateway(k) for k in range(2, self.gateways + 1)),
            *([self.dashboard_part()] if self.dashboard else []),
        ]

    def claims(self) -> list[PortClaim]:
        """Every port the stack binds, the broker's included, for a check before start."""
        broker = PortClaim("MQTT broker", self.ports.broker, "tcp", "::1", "--broker-port")
        return [broker, *(c for spec in self.specs() for c in spec.ports)]
