"""OSCORE (RFC 8613) for the simulated CoAP devices: one security context per device.

The keys come from the city's ``oscore.json`` (``{"device id": {"secret", "salt", "device_id",
"gateway_id"}}``, hex; testbed.credentials writes it). This reader is the devices' own on purpose
(DESIGN 2: a device stands for somebody else's firmware).

Each device holds two contexts derived from its one master secret and salt (RFC 8613 3.2):

- with the gateway: Sender ID = the device's id, Recipient ID = the gateway's id; it protects
  the device's pushes (client) and its answers and Observe notifications (server, 4.1.3.5);
- with the resource directory: the same ids and secret, but the ID Context ``r197-rd`` (RFC
  8613 3.3 / 5.1: a distinct context from the same secret) and the RD's Sender ID ``rd``, so
  that the RD and the gateway, two processes, never send with the same key and nonce.

Sequence numbers and replay windows survive restarts (RFC 8613 7.5, Appendix B.1): aiocoap's
:class:`~aiocoap.oscore.FilesystemSecurityContext` keeps them in one directory per context.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiocoap
from aiocoap.oscore import FilesystemSecurityContext
from aiocoap.transports.oscore import OSCOREAddress

RD_ID_CONTEXT = b"r197-rd"  # ID Context of every device's context with the RD (RFC 8613 3.3)
RD_SENDER_ID = b"rd"  # the RD's Sender ID in those contexts


@dataclass(frozen=True)
class DeviceKeys:
    """One device's OSCORE master material (RFC 8613 3.2)."""

    secret: bytes
    salt: bytes
    device_id: bytes  # the device's Sender ID
    gateway_id: bytes  # the gateway's Sender ID = the device's Recipient ID


def read_keys(path: Path) -> dict[str, DeviceKeys]:
    """Every device's keys from an ``oscore.json``."""
    raw: dict[str, dict[str, str]] = json.loads(path.read_text())
    return {
        device: DeviceKeys(
            bytes.fromhex(v["secret"]),
            bytes.fromhex(v["salt"]),
            bytes.fromhex(v["device_id"]),
            bytes.fromhex(v["gateway_id"]),
        )
        for device, v in raw.items()
    }


def state_dir(keys_file: Path) -> Path:
    """Where the devices' contexts live: ``contexts/devices`` next to ``oscore.json``."""
    return keys_file.parent / "contexts" / "devices"


def open_context(
    directory: Path,
    *,
    secret: bytes,
    salt: bytes,
    sender_id: bytes,
    recipient_id: bytes,
    id_context: bytes | None = None,
    claim: str,
) -> Any:
    """A persistent context in ``directory``, made from the keys (a new key: a new sequence).

    ``claim`` is what a peer authenticated with this context is (aiocoap's
    ``authenticated_claims``). The directory is locked while the context is open.
    """
    settings: dict[str, str] = {
        "secret_hex": secret.hex(),
        "salt_hex": salt.hex(),
        "sender-id_hex": sender_id.hex(),
        "recipient-id_hex": recipient_id.hex(),
    }
    if id_context is not None:
        settings["id-context_hex"] = id_context.hex()
    secret_file = directory / "secret.json"
    if not secret_file.exists() or json.loads(secret_file.read_text()) != settings:
        # New key material: the old sequence numbers belong to the old key (RFC 8613 7.5).
        if directory.exists():
            shutil.rmtree(directory)
        directory.mkdir(parents=True, mode=0o700)
        fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(settings, f)
    context = FilesystemSecurityContext(str(directory))
    context.authenticated_claims = [claim]
    return context


def close_context(context: Any) -> None:
    """Write the sequence number and replay window back and unlock (aiocoap does it only when
    the object is collected)."""
    if getattr(context, "lockfile", None) is not None:
        context._destroy()  # aiocoap 0.4 has no public close


class DeviceContexts:
    """A device's context with the gateway and its context with the RD."""

    def __init__(self, device: str, keys: DeviceKeys, root: Path) -> None:
        self.device = device
        self.gateway = open_context(
            root / device / "gateway", secret=keys.secret, salt=keys.salt,
            sender_id=keys.device_id, recipient_id=keys.gateway_id, claim="gateway",
        )  # fmt: skip
        try:
            self.rd = open_context(
                root / device / "rd", secret=keys.secret, salt=keys.salt,
                sender_id=keys.device_id, recipient_id=RD_SENDER_ID, id_context=RD_ID_CONTEXT,
                claim="rd",
            )  # fmt: skip
        except BaseException:
            close_context(self.gateway)
            raise

    def close(self) -> None:
        close_context(self.gateway)
        close_context(self.rd)


def uri_pattern(base: str, tail: str = "/*") -> str:
    """The credentials key aiocoap matches for requests under ``base`` (it drops a default
    port, so the key is built the way aiocoap builds a request's URI)."""
    uri: str = aiocoap.Message(code=aiocoap.GET, uri=base.rstrip("/") + "/x").get_request_uri()
    return uri[: -len("/x")] + tail


def is_protected(request: aiocoap.Message) -> bool:
    """Whether the request came through OSCORE (the wrapper sets an OSCORE remote)."""
    return isinstance(request.remote, OSCOREAddress)
