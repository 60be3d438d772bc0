"""OSCORE (RFC 8613) on the gateway's side: one security context per provisioned device.

The keys come from the city's ``oscore.json`` (``{"device id": {"secret", "salt", "device_id",
"gateway_id"}}``, hex); the gateway reads it itself (DESIGN 2). In the context for device D the
gateway's Sender ID is ``gateway_id`` and its Recipient ID D's ``device_id`` (RFC 8613 3.1).
The same context serves D's pushes to the gateway (server) and the gateway's observations and
actuator PUTs to D (client), in one process, so one object per device is shared by
:class:`~gateway.transports.coap.CoapIngest` and :class:`~gateway.transports.coap.CoapObserver`.

Sequence numbers and replay windows persist (RFC 8613 7.5, Appendix B.1) in one directory per
device under ``contexts/gateway`` next to ``oscore.json`` (aiocoap's
:class:`~aiocoap.oscore.FilesystemSecurityContext`): a replay stays a replay after a restart,
and after an unclean stop aiocoap recovers the window with Echo (B.1.2).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from aiocoap.credentials import CredentialsMap
from aiocoap.transports.oscore import OSCOREAddress


def _open(directory: Path, settings: dict[str, str], claim: str) -> Any:
    from aiocoap.oscore import FilesystemSecurityContext  # noqa: PLC0415  # only with OSCORE

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
    context.authenticated_claims = [claim]  # the device this context authenticates
    return context


def _close(context: Any) -> None:
    """Write the sequence number and replay window back and unlock (aiocoap does it only when
    the object is collected)."""
    if getattr(context, "lockfile", None) is not None:
        context._destroy()  # aiocoap 0.4 has no public close


class GatewayOscore:
    """The gateway's contexts, one per device in ``keys_file``; :meth:`close` when done."""

    def __init__(self, keys_file: Path, state: Path | None = None) -> None:
        raw: dict[str, dict[str, str]] = json.loads(keys_file.read_text())
        root = state if state is not None else keys_file.parent / "contexts" / "gateway"
        self.contexts: dict[str, Any] = {}
        try:
            for device, keys in raw.items():
                settings = {
                    "secret_hex": keys["secret"],
                    "salt_hex": keys["salt"],
                    "sender-id_hex": keys["gateway_id"],
                    "recipient-id_hex": keys["device_id"],
                }
                self.contexts[device] = _open(root / device, settings, device)
        except BaseException:
            self.close()
            raise

    def server_credentials(self) -> CredentialsMap:
        """aiocoap server credentials: every device's context (found by its kid)."""
        credentials = CredentialsMap()
        for device, context in self.contexts.items():
            credentials[f":{device}"] = context
        return credentials

    def close(self) -> None:
        for context in self.contexts.values():
            _close(context)
        self.contexts.clear()


def authenticated_device(remote: Any) -> str | None:
    """The device whose context protected a request, or None for an unprotected one."""
    if not isinstance(remote, OSCOREAddress):
        return None
    claims = remote.security_context.authenticated_claims
    return str(claims[0]) if claims else None
