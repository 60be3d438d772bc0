"""OSCORE (RFC 8613) as an outside tester speaks it: client contexts made from OscoreKeys.

For tests and the conformance suite, which play a provisioned device (or the gateway) against
the real parts. The context lives in memory: its sequence numbers are not persisted, so use it
for a device id that no running device uses, or start past the numbers that device has used
(``first_sequence``): the recipient's replay window refuses numbers it has seen (RFC 8613 7.4).

    ctx = device_context(keys)
    creds = credentials_for("coap://[::1]:5684/*", ctx)
    client = await aiocoap.Context.create_client_context(transports=["oscore", "udp6"])
    client.client_credentials.update(creds)
    ...                                    # a protected POST
    ctx.sender_sequence_number -= 1        # the next request reuses the last number: a replay
    answer = await answer_of(client, request)   # the 4.01 a refusal is sent as, unprotected

A refusal of a protected request comes unprotected (RFC 8613 8.2: the server could not, or
would not, use the context); aiocoap's client raises on it, :func:`answer_of` returns it.
"""

from __future__ import annotations

import socket
from typing import Any

import aiocoap
from aiocoap.credentials import CredentialsMap
from aiocoap.oscore import (
    DEFAULT_WINDOWSIZE,
    CanProtect,
    CanUnprotect,
    NotAProtectedMessage,
    ReplayWindow,
    SecurityContextUtils,
    algorithms,
    hashfunctions,
)

from devices.oscore import RD_ID_CONTEXT, RD_SENDER_ID
from testbed.credentials import OscoreKeys


class MemoryContext(CanProtect, CanUnprotect, SecurityContextUtils):  # type: ignore[misc]
    """An OSCORE security context in memory (RFC 8613 3.2), AES-CCM-16-64-128, HKDF-SHA-256."""

    def __init__(
        self,
        *,
        secret: bytes,
        salt: bytes,
        sender_id: bytes,
        recipient_id: bytes,
        id_context: bytes | None = None,
        first_sequence: int = 0,
    ) -> None:
        self.alg_aead = algorithms["AES-CCM-16-64-128"]
        self.hashfun = hashfunctions["sha256"]
        self.sender_id = sender_id
        self.recipient_id = recipient_id
        self.id_context = id_context
        self.derive_keys(salt, secret)
        self.sender_sequence_number = first_sequence
        self.recipient_replay_window = ReplayWindow(DEFAULT_WINDOWSIZE, lambda: None)
        self.recipient_replay_window.initialize_empty()
        self.echo_recovery = None
        self.authenticated_claims: list[str] = []

    def post_seqnoincrease(self) -> None:
        """Nothing to persist: this context lives for one test."""


def device_context(keys: OscoreKeys, *, first_sequence: int = 0, rd: bool = False) -> Any:
    """The device's side of its context with the gateway (or, ``rd``, with the RD)."""
    if rd:
        return MemoryContext(
            secret=keys.master_secret, salt=keys.master_salt, sender_id=keys.device_id,
            recipient_id=RD_SENDER_ID, id_context=RD_ID_CONTEXT, first_sequence=first_sequence,
        )  # fmt: skip
    return MemoryContext(
        secret=keys.master_secret, salt=keys.master_salt, sender_id=keys.device_id,
        recipient_id=keys.gateway_id, first_sequence=first_sequence,
    )  # fmt: skip


def gateway_context(keys: OscoreKeys, *, first_sequence: int = 0) -> Any:
    """The gateway's side of a device's context (to talk to a device as the gateway does)."""
    return MemoryContext(
        secret=keys.master_secret, salt=keys.master_salt, sender_id=keys.gateway_id,
        recipient_id=keys.device_id, first_sequence=first_sequence,
    )  # fmt: skip


def credentials_for(uri_pattern: str, context: Any) -> CredentialsMap:
    """aiocoap client credentials using ``context`` for URIs matching ``uri_pattern``
    (``coap://[::1]:5684/*``; aiocoap drops a default port 5683 from request URIs)."""
    credentials = CredentialsMap()
    credentials[uri_pattern] = context
    return credentials


async def answer_of(client: Any, request: aiocoap.Message) -> aiocoap.Message:
    """The answer to ``request``, also an unprotected refusal of a protected request."""
    try:
        answer: aiocoap.Message = await client.request(request).response
    except NotAProtectedMessage as exc:
        plain: aiocoap.Message = exc.plain_message
        return plain
    return answer


# -- raw datagrams: a replay is the same bytes again (an attacker cannot protect anew) --------


def protected_datagram(
    context: Any, request: aiocoap.Message, *, mid: int, token: bytes = b"\x01"
) -> tuple[bytes, Any]:
    """``request`` protected with ``context`` (RFC 8613 8.1) as one confirmable CoAP/UDP
    datagram, and the request id :func:`read_answer` needs."""
    outer, request_id = context.protect(request)
    outer.mtype = aiocoap.CON
    outer.mid = mid
    outer.token = token
    datagram: bytes = outer.encode()
    return datagram, request_id


def with_message_id(datagram: bytes, mid: int) -> bytes:
    """The same datagram under another Message ID (not integrity-protected, RFC 8613 4.1):
    a replay that CoAP deduplication (RFC 7252 4.5) does not catch and OSCORE must (7.4)."""
    return datagram[:2] + mid.to_bytes(2, "big") + datagram[4:]


def exchange(host: str, port: int, datagram: bytes, *, timeout: float = 5.0) -> aiocoap.Message:
    """Send one datagram, return the answer (blocking: run it in a thread from async code)."""
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(datagram, (host, port))
        answer: aiocoap.Message = aiocoap.Message.decode(sock.recv(65535))
    return answer


def read_answer(context: Any, answer: aiocoap.Message, request_id: Any) -> aiocoap.Message:
    """The inner answer of a protected one; an unprotected refusal as it is."""
    if answer.opt.oscore is None:
        return answer
    inner, _ = context.unprotect(answer, request_id)
    plain: aiocoap.Message = inner
    return plain
