"""The MQTT broker of a testbed run: Mosquitto when installed, else the embedded amqtt broker.

Mosquitto runs as a child process with a configuration we write (its own port, IPv6 listener,
password file and ACL so that a device may only publish under its own id, DESIGN 3).  amqtt is
pure Python and runs in our event loop; it speaks MQTT 3.1.1 only and has no per-topic ACL, so
the command says which broker it uses.

Secure mode (``tls=BrokerTls...``): the only listener speaks TLS (1.2 at least, 1.3 accepted),
clients authenticate with a username and a password of their own (CityCredentials), and the
client id is the username (``use_username_as_clientid``), so no account can take another's
session over.  Passwords rather than client certificates (``use_identity_as_username``): the
city already keeps one distinct password per account, aiomqtt, our gateway and mosquitto_sub
all send one, and a fleet of thousands needs no certificate per device; the server certificate
and the CA file give the clients what they need to authenticate the broker (RFC 6125 6).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from testbed.credentials import CityCredentials
from testbed.processes import ManagedProcess, PortClaim, ProcessFailed, ProcessSpec, TcpReady

log = logging.getLogger(__name__)

MOSQUITTO_PATHS = ("/usr/sbin/mosquitto", "/usr/bin/mosquitto", "/usr/local/sbin/mosquitto")
GATEWAY_USER = "gateway"
OBSERVER_USER = "observer"  # read-only, for students and tools such as mosquitto_sub
MAX_QUEUED = 1_000_000  # QoS 1 messages queued per session (see write_config)

OBSERVERS = 30  # read-only accounts observer-01 .. observer-30 besides "observer" (secure mode)
TLS_PORT = 8883  # IANA's port for MQTT over TLS
_OBSERVER_NAME = re.compile(rf"{OBSERVER_USER}(-\d+)?")
_GATEWAY_NAME = re.compile(rf"{GATEWAY_USER}(-[2-9]|-[1-9]\d+)?")  # gateway, gateway-2, ...

# Each device publishes and reads only under its own id; %u is the MQTT username (= device id).
_GATEWAY_ACL = """\
user {gateway}
topic read city/#
topic read $share/#
topic write city/+/+/cmd
topic read $SYS/#

"""
_ACL = """\
{gateways}\
{observers}\
pattern write city/+/%u/up/#
pattern readwrite city/+/%u/status
pattern read city/+/%u/cmd
"""
_OBSERVER_ACL = """\
user {user}
topic read city/#
topic read $SYS/#

"""


def observer_users(count: int = OBSERVERS) -> list[str]:
    """The read-only accounts: ``observer`` and ``observer-01`` .. ``observer-NN``.  With the
    client id tied to the username, two tools sharing one account would end each other's
    session (MQTT 5 3.1.4-3), so each student or tool takes an account of its own."""
    return [OBSERVER_USER, *(f"{OBSERVER_USER}-{i:02d}" for i in range(1, count + 1))]


def is_observer(user: str) -> bool:
    return _OBSERVER_NAME.fullmatch(user) is not None


def gateway_users(count: int = 1) -> list[str]:
    """The gateways' accounts: ``gateway``, ``gateway-2`` .. ``gateway-N``.  The gateways of one
    shared-subscription group (MQTT 5 4.8.2) each need a session of their own, and the secure
    broker's client id is the username (``use_username_as_clientid``), so an account each."""
    return [GATEWAY_USER, *(f"{GATEWAY_USER}-{i}" for i in range(2, count + 1))]


def is_gateway(user: str) -> bool:
    return _GATEWAY_NAME.fullmatch(user) is not None


def acl_text(users: Iterable[str], writers: Iterable[str] = ()) -> str:
    """The ACL file: a block per gateway account (``gateway`` always), one read-only block per
    observer account, a block per account that may publish readings for any device
    (``writers``), and the per-device patterns."""
    users = list(users)
    gateways = dict.fromkeys([GATEWAY_USER, *(u for u in users if is_gateway(u))])
    observers = "".join(_OBSERVER_ACL.format(user=u) for u in users if is_observer(u))
    observers += "".join(f"user {u}\ntopic write city/+/+/up/#\n\n" for u in writers)
    blocks = "".join(_GATEWAY_ACL.format(gateway=g) for g in gateways)
    return _ACL.format(gateways=blocks, observers=observers)


def city_accounts(
    credentials: CityCredentials,
    devices: Iterable[str],
    *,
    observers: int = OBSERVERS,
    gateways: int = 1,
) -> dict[str, str]:
    """Every MQTT account of a secure city with its own password (CityCredentials): the
    gateways, the observers and each device."""
    names = [*gateway_users(gateways), *observer_users(observers), *devices]
    passwords = credentials.mqtt_passwords(names)
    return {name: passwords[name] for name in names}


@dataclass(frozen=True)
class BrokerTls:
    """The files of the broker's TLS listener (PEM)."""

    cafile: Path
    certfile: Path
    keyfile: Path

    @classmethod
    def of(cls, credentials: CityCredentials) -> BrokerTls:
        """The city's CA and broker certificate (made by ``CityCredentials.ensure``)."""
        return cls(credentials.ca_file, credentials.broker_cert, credentials.broker_key)


@dataclass(frozen=True)
class TlsReady:
    """Ready when a TLS handshake on (host, port) completes.  Not verified: it asks whether the
    listener is up, not whom to trust; a bare TCP probe would make Mosquitto log an OpenSSL
    "unexpected eof" error at every start."""

    host: str
    port: int

    def __call__(self) -> bool:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        try:
            with (
                socket.create_connection((self.host, self.port), timeout=0.5) as raw,
                context.wrap_socket(raw) as tls,
            ):
                tls.unwrap()
                return True
        except OSError:
            return False


class Broker(Protocol):
    name: Literal["mosquitto", "amqtt"]
    host: str
    port: int

    @property
    def url(self) -> str: ...

    async def __aenter__(self) -> Broker: ...

    async def __aexit__(self, *exc: object) -> None: ...


def find_mosquitto() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    return next((p for p in MOSQUITTO_PATHS if Path(p).exists()), None)


def _url(host: str, port: int, scheme: str = "mqtt") -> str:
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


class MosquittoBroker:
    """Mosquitto as a child process with a generated configuration.

    ``users`` maps usernames to passwords; with none, anonymous clients are allowed and no ACL
    applies (the plugfest mode).  ``persistence`` keeps sessions and retained messages across a
    restart of the same instance (its files live in ``workdir``).  With ``tls`` the listener on
    ``port`` speaks TLS only (secure mode, see the module's docstring; ``users`` required).
    """

    name: Literal["mosquitto", "amqtt"] = "mosquitto"

    def __init__(
        self,
        *,
        host: str = "::1",
        port: int = 1883,
        users: Mapping[str, str] | None = None,
        workdir: Path | None = None,
        persistence: bool = True,
        executable: str | None = None,
        tls: BrokerTls | None = None,
        writers: Iterable[str] = (),
    ) -> None:
        if tls is not None and not users:
            raise ValueError("a TLS broker needs users: secure mode refuses anonymous clients")
        self.host = host
        self.port = port
        self.users = dict(users or {})
        self.tls = tls
        # Accounts that publish readings under any device's topic: the benchmarks' load
        # generator speaks for a thousand devices on one connection.  Never a device.
        self.writers = tuple(writers)
        self.persistence = persistence
        self.executable = executable or find_mosquitto()
        if self.executable is None:
            raise FileNotFoundError("mosquitto is not installed (apt-get install mosquitto)")
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._workdir = workdir
        self._process: ManagedProcess | None = None

    @property
    def url(self) -> str:
        """mqtt://[::1]:PORT, or mqtts://[::1]:PORT for the TLS listener."""
        return _url(self.host, self.port, "mqtts" if self.tls else "mqtt")

    @property
    def tls_url(self) -> str | None:
        return self.url if self.tls else None

    @property
    def workdir(self) -> Path:
        """Where the configuration and persistence files live (a temporary one by default)."""
        if self._workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="r197-mosquitto-")
            self._workdir = Path(self._tmp.name)
        return self._workdir

    def write_config(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        lines = [
            "per_listener_settings false",
            f"listener {self.port} {self.host}",
            *self._tls_lines(),
            # QoS 1 readings a session holds while its client (the gateway) is away or behind;
            # past it Mosquitto drops them.  100,000 lost a 5,000-device fleet's readings
            # after 20 s of gateway outage; 1,000,000 is about 300 MB of broker memory at most.
            f"max_queued_messages {MAX_QUEUED}",
            "set_tcp_nodelay true",
            "log_type error",
            "log_type warning",
            "log_dest stderr",
        ]
        if os.geteuid() == 0:
            # As root Mosquitto drops to user 'mosquitto', which cannot read our 0600 files.
            lines.append("user root")
        if self.persistence:
            lines += ["persistence true", f"persistence_location {self.workdir}/"]
        if self.users:
            passwd = self.workdir / "passwd"
            passwd.write_text("".join(f"{u}:{p}\n" for u, p in self.users.items()))
            passwd.chmod(0o600)
            # mosquitto_passwd -U hashes a plain-text file in place: one call for any fleet size.
            tool = Path(self.executable or "").with_name("mosquitto_passwd")
            cmd = str(tool) if tool.exists() else "mosquitto_passwd"
            subprocess.run([cmd, "-U", str(passwd)], check=True, capture_output=True)
            acl = self.workdir / "acl"
            acl.write_text(acl_text(self.users, self.writers))
            acl.chmod(0o600)
            lines += ["allow_anonymous false", f"password_file {passwd}", f"acl_file {acl}"]
        else:
            lines += ["allow_anonymous true"]
        conf = self.workdir / "mosquitto.conf"
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def _tls_lines(self) -> list[str]:
        if self.tls is None:
            return []
        return [
            f"cafile {self.tls.cafile}",
            f"certfile {self.tls.certfile}",
            f"keyfile {self.tls.keyfile}",
            # Mosquitto 2.0: the lowest version accepted (1.6 and older: the only one); TLS 1.0
            # and 1.1 are refused (RFC 8996), 1.3 accepted (tests/testbed/test_broker_tls.py).
            "tls_version tlsv1.2",
            "require_certificate false",  # clients authenticate with their password
            # The client id is the username: another account connecting with a device's
            # client id gets a session of its own instead of taking the device's over
            # (MQTT 5 3.1.4-3 would end the device's connection).
            "use_username_as_clientid true",
        ]

    def spec(self, conf: Path) -> ProcessSpec:
        assert self.executable is not None
        return ProcessSpec(
            name="mosquitto",
            argv=(self.executable, "-c", str(conf)),
            ready=TlsReady(self.host, self.port) if self.tls else TcpReady(self.host, self.port),
            ports=(PortClaim("MQTT broker", self.port, "tcp", self.host),),
            start_timeout=10,
            stop_timeout=10,
        )

    @property
    def process(self) -> ManagedProcess:
        """The broker's process (written its configuration on first use); start() runs it."""
        if self._process is None:
            self._process = ManagedProcess(
                self.spec(self.write_config()), log_path=self.workdir / "mosquitto.log"
            )
        return self._process

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        return self.process.proc if self._process is not None else None

    def start(self) -> None:
        try:
            self.process.start()
        except ProcessFailed as exc:
            raise RuntimeError(f"mosquitto did not start: {exc}") from None
        log.info("mosquitto listening at %s", self.url)

    def stop(self) -> str:
        """Stop the broker; returns what it wrote since it started."""
        if self._process is None:
            return ""
        self._process.stop()
        return self._process.output()

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    async def __aenter__(self) -> MosquittoBroker:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.close)


class AmqttBroker:
    """The embedded pure-Python broker (MQTT 3.1.1 only), for machines without Mosquitto."""

    name: Literal["mosquitto", "amqtt"] = "amqtt"

    def __init__(self, *, host: str = "::1", port: int = 1883) -> None:
        self.host = host
        self.port = port
        self._broker: Any = None

    @property
    def url(self) -> str:
        return _url(self.host, self.port)

    async def __aenter__(self) -> AmqttBroker:
        from amqtt.broker import Broker as _Amqtt  # noqa: PLC0415  # optional dependency

        # amqtt writes IPv6 bind addresses without brackets (DESIGN 8).
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            # Only the anonymous plugin: amqtt's password-file plugin refuses unknown usernames.
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
            },
        }
        self._broker = _Amqtt(config)
        await self._broker.start()
        log.info("amqtt listening at %s", self.url)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._broker is not None:
            with contextlib.suppress(Exception):
                await self._broker.shutdown()
            self._broker = None


def choose_broker(
    *,
    prefer: Literal["auto", "mosquitto", "amqtt"] = "auto",
    host: str = "::1",
    port: int = 1883,
    users: Mapping[str, str] | None = None,
    workdir: Path | None = None,
    tls: BrokerTls | None = None,
) -> Broker:
    """Mosquitto when installed (or asked for), else amqtt (which has no TLS and no ACL: a
    secure city, ``tls`` given, needs Mosquitto)."""
    if prefer == "mosquitto" or (prefer == "auto" and find_mosquitto() is not None):
        return MosquittoBroker(host=host, port=port, users=users, workdir=workdir, tls=tls)
    if tls is not None:
        raise RuntimeError("MQTT over TLS needs Mosquitto (apt-get install mosquitto)")
    return AmqttBroker(host=host, port=port)
