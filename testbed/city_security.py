"""What a secure city is provisioned with, for ``testbed up`` and ``testbed secrets``.

:class:`CitySecurity` turns a scenario into accounts and keys: an MQTT account with a password
of its own for the gateway, the observers and every MQTT device, an OSCORE context for every
CoAP device (RFC 8613 3), the API's token key, the gateway's notify token, and the bearer tokens
the city hands out (``tokens/*.jwt``: admin, reader, gateway).  The files live under
``<data dir>/security`` (testbed/credentials.py; docs/security.md).

:func:`write_broker_dir` writes what a Mosquitto of its own (the ``eclipse-mosquitto:2``
container of docker-compose.yml) needs: configuration, hashed password file, ACL and TLS files,
with paths as the broker will see them.  The passwords are hashed here (Mosquitto 2.0's PBKDF2
format), as the testbed image has no ``mosquitto_passwd``.

Also the pieces ``testbed up`` builds a secure city from: :func:`stack_security` (the files its
processes get, testbed.parts.StackSecurity), :func:`fleet_oscore`, :func:`clear_data`
(``--fresh``) and the lines it prints.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import os
import secrets
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from testbed.brokers import (
    GATEWAY_USER,
    OBSERVER_USER,
    TLS_PORT,
    acl_text,
    city_accounts,
    gateway_users,
    is_gateway,
    is_observer,
)
from testbed.credentials import CityCredentials
from testbed.parts import StackSecurity
from testbed.pki import LOOPBACK_HOSTS, write_private

# name: (scopes, tenants).  Tokens do not expire (``testbed secrets rotate api`` revokes them
# all); admin implies write implies read (city_platform/auth.py).
TOKENS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "admin": (("admin",), ("*",)),
    "reader": (("read",), ("*",)),
    # The gateway writes readings into the default tenant only (its --tenant default).
    "gateway": (("write",), ("",)),
    # The dashboard's own: it creates its one subscription (write); users log in with theirs.
    "dashboard": (("write",), ("",)),
}
INSECURE_BANNER = """\
!!! INSECURE CITY (--insecure): plain MQTT with one shared, documented device password, plain
!!! CoAP, an API and a /notify anyone on this machine can read, write and delete through.
!!! For a first lesson on one machine only; drop --insecure for the secure city."""

PBKDF2_ITERATIONS = 101  # Mosquitto 2.0's default for its "$7$" (PBKDF2-SHA512) hashes
PBKDF2_SALT_BYTES = 12


def scenario_devices(scenario: Any) -> tuple[list[str], list[str]]:
    """(MQTT device ids, CoAP device ids: observed and push) of a scenario."""
    mqtt: list[str] = []
    coap: list[str] = []
    for spec in scenario.devices():
        (mqtt if spec.group.protocol == "mqtt" else coap).append(spec.device_id)
    return mqtt, coap


@dataclass(frozen=True)
class CitySecurity:
    """The credentials of one secure city (a CityCredentials root) and its minted tokens."""

    credentials: CityCredentials

    @classmethod
    def at(cls, data: Path) -> CitySecurity:
        """The city whose data directory is ``data`` (its secrets under ``data/security``)."""
        return cls(CityCredentials(data / "security"))

    @property
    def root(self) -> Path:
        return self.credentials.root

    @property
    def tokens_dir(self) -> Path:
        return self.root / "tokens"

    def token_file(self, name: str) -> Path:
        return self.tokens_dir / f"{name}.jwt"

    def prepare(
        self,
        mqtt_devices: Sequence[str],
        coap_devices: Sequence[str],
        *,
        broker_hosts: Sequence[str] = LOOPBACK_HOSTS,
        gateways: int = 1,
    ) -> dict[str, str]:
        """Make whatever is missing (kept across restarts), mint the tokens anew with the
        current key; returns every MQTT account with its password: the scenario's devices and
        those provisioned before (another scenario's, a plugfest guest's from ``testbed secrets
        init --mqtt-device``), each under its own topics only (the ACL's %u patterns), and
        ``gateways`` gateway accounts (gateway, gateway-2, ...: testbed up --gateways)."""
        creds = self.credentials
        if creds.broker_cert.exists() and not _names_hosts(creds.broker_cert, broker_hosts):
            creds.rotate("broker")  # a host was added (docker-compose's "mosquitto"): reissue
        creds.ensure(oscore_devices=coap_devices, broker_hosts=broker_hosts)
        known = [u for u in creds.mqtt_passwords() if not is_gateway(u) and not is_observer(u)]
        accounts = city_accounts(creds, dict.fromkeys([*known, *mqtt_devices]), gateways=gateways)
        self.mint_tokens()
        return accounts

    def mint_tokens(self) -> None:
        """``tokens/<name>.jwt`` (0600) for each of :data:`TOKENS`, signed with today's key:
        after ``rotate api`` the next start gives tokens that the restarted platform accepts."""
        from city_platform.auth import issue_token  # noqa: PLC0415  # only a secure city needs it

        key = self.credentials.jwt_key()
        self.tokens_dir.mkdir(mode=0o700, exist_ok=True)
        for name, (scopes, tenants) in TOKENS.items():
            token = issue_token(key, subject=f"testbed-{name}", scopes=scopes, tenants=tenants)
            write_private(self.token_file(name), token.encode())

    def token(self, name: str) -> str:
        return self.token_file(name).read_text().strip()

    def observer_password(self) -> str:
        return self.credentials.mqtt_password(OBSERVER_USER)

    def gateway_password(self) -> str:
        return self.credentials.mqtt_password(GATEWAY_USER)

    def observer_help(self, port: int) -> str:
        """The start-up line that says how to watch the city's MQTT over TLS."""
        return (
            f"          read-only user {OBSERVER_USER!r} (and observer-01..30, see `testbed "
            f"secrets show`): mosquitto_sub -h ::1 -p {port} --cafile {self.credentials.ca_file} "
            f"-u {OBSERVER_USER} -P '{self.observer_password()}' -t 'city/#' -v"
        )

    def token_help(self, platform_url: str) -> str:
        """The start-up lines that say where the tokens are, with a copy-paste curl line."""
        admin, reader = self.token_file("admin"), self.token_file("reader")
        key = self.credentials.jwt_key_file
        return (
            f"tokens    API bearer tokens: read {reader}, admin {admin} (every tenant; more with "
            f"`testbed token --key {key}`):\n"
            f'          curl -g -H "Authorization: Bearer $(cat {reader})" '
            f"'{platform_url}/ngsi-ld/v1/entities?type=WeatherObserved&options=keyValues'"
        )


def stack_security(security: CitySecurity, allow: list[str], gateways: int = 1) -> StackSecurity:
    creds = security.credentials
    more = gateway_users(gateways)[1:]  # gateway-2 ..: prepare(gateways=) made their accounts
    return StackSecurity(
        ca_file=creds.ca_file,
        auth_key=creds.jwt_key_file,
        platform_token_file=security.token_file("gateway"),
        notify_token_file=creds.notify_token_file,
        gateway_password=security.gateway_password(),
        oscore_file=creds.oscore_file,
        allow_endpoints=tuple(allow),
        dashboard_token_file=security.token_file("dashboard"),
        more_gateway_passwords=tuple(creds.mqtt_password(u) for u in more),
    )


def clear_data(data: Path) -> None:
    """``--fresh``: delete the city's databases, queue, broker state and logs, but keep its
    credentials: clients hold the CA and passwords, and OSCORE sequence numbers must not start
    again under the same keys (RFC 8613 7.5)."""
    if not data.exists():
        return
    for entry in data.iterdir():
        if entry.name == "security":
            continue
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def fleet_oscore(security: StackSecurity | None) -> dict[str, Any]:
    """The Fleet's keyword arguments for the CoAP devices' OSCORE contexts (RFC 8613), their
    sequence numbers kept under security/contexts/devices across restarts (RFC 8613 7.5)."""
    from devices.oscore import read_keys, state_dir  # noqa: PLC0415

    if security is None or security.oscore_file is None:
        return {}
    return {
        "oscore": read_keys(security.oscore_file),
        "oscore_dir": state_dir(security.oscore_file),
    }


def _names_hosts(cert_file: Path, hosts: Sequence[str]) -> bool:
    """Whether the certificate's subjectAltName lists every one of ``hosts``."""
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return not hosts
    names = {str(n) for n in san.get_values_for_type(x509.DNSName)}
    names |= {str(a) for a in san.get_values_for_type(x509.IPAddress)}
    return all(str(_host_key(h)) in names for h in hosts)


def _host_key(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


def mosquitto_hash(password: str, salt: bytes | None = None) -> str:
    """A Mosquitto 2.0 password-file hash: ``$7$<iterations>$<salt>$<PBKDF2-SHA512>`` (base64),
    what ``mosquitto_passwd`` writes."""
    salt = secrets.token_bytes(PBKDF2_SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS)
    b64 = base64.b64encode
    return f"$7${PBKDF2_ITERATIONS}${b64(salt).decode()}${b64(digest).decode()}"


def write_broker_dir(
    security: CitySecurity,
    accounts: dict[str, str],
    directory: Path,
    *,
    seen_as: str | None = None,
    port: int = TLS_PORT,
    host: str = "::",
    owner: tuple[int, int] | None = None,
    run_as: str | None = None,
    persistence: str | None = "/mosquitto/data/",
) -> Path:
    """Write a TLS-only Mosquitto's files into ``directory``; returns its mosquitto.conf.

    ``seen_as`` is where the broker finds the directory (``/mosquitto/config`` in its
    container; default: ``directory`` itself); ``owner`` (uid, gid) is who may read the key and
    the password file there (1883:1883 is the mosquitto user of ``eclipse-mosquitto:2``, which
    drops root before it reads them); ``run_as`` adds a ``user`` line; ``persistence`` is the
    directory of the broker's sessions and retained messages (the image's /mosquitto/data)."""
    creds = security.credentials
    directory.mkdir(parents=True, exist_ok=True)
    where = Path(seen_as) if seen_as is not None else directory
    shutil.copyfile(creds.ca_file, directory / "ca.pem")
    shutil.copyfile(creds.broker_cert, directory / "broker.pem")
    write_private(directory / "broker.key", creds.broker_key.read_bytes())
    passwd = "".join(f"{user}:{mosquitto_hash(pw)}\n" for user, pw in accounts.items())
    write_private(directory / "passwd", passwd.encode())
    (directory / "acl").write_text(acl_text(accounts))
    lines = [
        "per_listener_settings false",
        f"listener {port} {host}",  # the only listener: no plain MQTT at all
        f"cafile {where / 'ca.pem'}",
        f"certfile {where / 'broker.pem'}",
        f"keyfile {where / 'broker.key'}",
        "tls_version tlsv1.2",  # at least 1.2 (testbed/brokers.py, tests/testbed/test_broker_tls)
        "require_certificate false",  # clients authenticate with their own password
        "use_username_as_clientid true",  # no account takes another's session over
        "allow_anonymous false",
        f"password_file {where / 'passwd'}",
        f"acl_file {where / 'acl'}",
        *(["persistence true", f"persistence_location {persistence}"] if persistence else []),
        "log_dest stdout",
        *([f"user {run_as}"] if run_as else []),
    ]
    conf = directory / "mosquitto.conf"
    conf.write_text("\n".join(lines) + "\n")
    if owner is not None:
        for path in (directory, *directory.iterdir()):
            os.chown(path, *owner)
    return conf
