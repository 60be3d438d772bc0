"""The secrets of one city, kept under ``<data dir>/security`` (docs/security.md).

``testbed up`` calls :meth:`CityCredentials.ensure` before it starts anything: what is missing is
made, what exists is kept (a restarted city keeps its CA, its passwords and its devices' OSCORE
contexts, so sessions and sequence numbers carry on).  Deleting a file and restarting rotates
that secret (``testbed secrets rotate`` does it by name).

Layout (every secret file mode 0600)::

    security/
      ca.pem, ca.key             the city's CA (testbed.pki)
      broker.pem, broker.key     the MQTT broker's TLS server certificate (SAN: loopback + hosts)
      mqtt-passwords.json        {"username": "password"}: one distinct password per account
      oscore.json                {"device id": OSCORE master secret, salt and ids (RFC 8613 3.2)}
      api-jwt.key                the key that signs the platform's bearer tokens (HS256)
      notify-token               what the platform sends the gateway's /notify (receiverInfo)
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from testbed.pki import LOOPBACK_HOSTS, Issued, issue, new_ca, write_private

PASSWORD_BYTES = 18  # 24 URL-safe characters
OSCORE_SECRET_BYTES = 16  # RFC 8613 3.1: the master secret; 16 bytes for AES-CCM-16-64-128
OSCORE_SALT_BYTES = 8
GATEWAY_OSCORE_ID = b"\x00"  # the gateway's Sender ID in every device's context


@dataclass(frozen=True)
class OscoreKeys:
    """One device's OSCORE security context material, shared with the gateway (RFC 8613 3)."""

    master_secret: bytes
    master_salt: bytes
    device_id: bytes  # the device's Sender ID = the gateway's Recipient ID for it; unique
    gateway_id: bytes = GATEWAY_OSCORE_ID

    def to_json(self) -> dict[str, str]:
        return {
            "secret": self.master_secret.hex(),
            "salt": self.master_salt.hex(),
            "device_id": self.device_id.hex(),
            "gateway_id": self.gateway_id.hex(),
        }

    @classmethod
    def from_json(cls, data: dict[str, str]) -> OscoreKeys:
        return cls(
            bytes.fromhex(data["secret"]),
            bytes.fromhex(data["salt"]),
            bytes.fromhex(data["device_id"]),
            bytes.fromhex(data["gateway_id"]),
        )


def _id_bytes(number: int) -> bytes:
    """A short, unique OSCORE Sender ID (1 byte up to 255 devices, then 2, ...)."""
    return number.to_bytes(max(1, (number.bit_length() + 7) // 8), "big")


class CityCredentials:
    """The files under ``root`` (``<data dir>/security``) and how to make them."""

    def __init__(self, root: Path) -> None:
        self.root = root

    # -- paths --------------------------------------------------------------------------------

    @property
    def ca_file(self) -> Path:
        return self.root / "ca.pem"

    @property
    def ca_key_file(self) -> Path:
        return self.root / "ca.key"

    @property
    def broker_cert(self) -> Path:
        return self.root / "broker.pem"

    @property
    def broker_key(self) -> Path:
        return self.root / "broker.key"

    @property
    def passwords_file(self) -> Path:
        return self.root / "mqtt-passwords.json"

    @property
    def oscore_file(self) -> Path:
        return self.root / "oscore.json"

    @property
    def jwt_key_file(self) -> Path:
        return self.root / "api-jwt.key"

    @property
    def notify_token_file(self) -> Path:
        return self.root / "notify-token"

    # -- making and keeping -------------------------------------------------------------------

    def ensure(
        self,
        *,
        mqtt_users: Iterable[str] = (),
        oscore_devices: Iterable[str] = (),
        broker_hosts: Sequence[str] = LOOPBACK_HOSTS,
    ) -> None:
        """Make whatever is missing; keep what exists."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)
        ca = self.ca()
        if not self.broker_cert.exists() or not self.broker_key.exists():
            issue(ca, "r197-testbed MQTT broker", hosts=broker_hosts).write(
                self.broker_cert, self.broker_key
            )
        self.mqtt_passwords(mqtt_users)
        self.oscore(oscore_devices)
        self.jwt_key()
        self.notify_token()

    def ca(self) -> Issued:
        """The city's CA, made on first use."""
        if self.ca_file.exists() and self.ca_key_file.exists():
            return Issued.read(self.ca_file, self.ca_key_file)
        ca = new_ca()
        ca.write(self.ca_file, self.ca_key_file)
        # A new CA invalidates every certificate the old one signed.
        self.broker_cert.unlink(missing_ok=True)
        return ca

    def mqtt_passwords(self, users: Iterable[str] = ()) -> dict[str, str]:
        """Every MQTT account's password; ``users`` without one get a new, distinct one."""
        known: dict[str, str] = {}
        if self.passwords_file.exists():
            known = json.loads(self.passwords_file.read_text())
        added = {u: secrets.token_urlsafe(PASSWORD_BYTES) for u in users if u not in known}
        if added or not self.passwords_file.exists():
            known.update(added)
            write_private(self.passwords_file, json.dumps(known, indent=1).encode())
        return known

    def mqtt_password(self, user: str) -> str:
        return self.mqtt_passwords([user])[user]

    def oscore(self, devices: Iterable[str] = ()) -> dict[str, OscoreKeys]:
        """Every provisioned device's OSCORE keys; new devices get new ones (unique ids)."""
        raw: dict[str, dict[str, str]] = {}
        if self.oscore_file.exists():
            raw = json.loads(self.oscore_file.read_text())
        used = {bytes.fromhex(v["device_id"]) for v in raw.values()} | {GATEWAY_OSCORE_ID}
        number = len(raw) + 1
        changed = not self.oscore_file.exists()
        for device in devices:
            if device in raw:
                continue
            while _id_bytes(number) in used:
                number += 1
            keys = OscoreKeys(
                secrets.token_bytes(OSCORE_SECRET_BYTES),
                secrets.token_bytes(OSCORE_SALT_BYTES),
                _id_bytes(number),
            )
            used.add(keys.device_id)
            raw[device] = keys.to_json()
            changed = True
        if changed:
            write_private(self.oscore_file, json.dumps(raw, indent=1).encode())
        return {device: OscoreKeys.from_json(v) for device, v in raw.items()}

    def jwt_key(self) -> bytes:
        """The HS256 key of the platform's bearer tokens (RFC 7518 3.2: at least 256 bits)."""
        return self._secret(self.jwt_key_file, 32)

    def notify_token(self) -> str:
        return self._secret(self.notify_token_file, 24).decode()

    def _secret(self, path: Path, size: int) -> bytes:
        if path.exists():
            return path.read_bytes().strip()
        value = secrets.token_urlsafe(size).encode()
        write_private(path, value)
        return value

    def rotate(self, what: str) -> None:
        """Forget one secret so that the next :meth:`ensure` makes it anew."""
        files = {
            "ca": (self.ca_file, self.ca_key_file, self.broker_cert, self.broker_key),
            "broker": (self.broker_cert, self.broker_key),
            "mqtt": (self.passwords_file,),
            "oscore": (self.oscore_file,),
            "api": (self.jwt_key_file,),
            "notify": (self.notify_token_file,),
        }
        if what not in files:
            raise ValueError(f"unknown secret {what!r}: one of {', '.join(files)}")
        for path in files[what]:
            path.unlink(missing_ok=True)
