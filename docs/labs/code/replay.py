"""Lab 08: an eavesdropper replays a device's OSCORE-protected CoAP push (RFC 8613 7.4).

    python docs/labs/code/replay.py --port 5684 --device parking-0901

plays the device parking-0901 (its OSCORE keys are in security/oscore.json: lab 01 provisioned
them, and no running device uses them, so nothing real is locked out): it sends one protected
push of a reading to the gateway, then the very same bytes again, as someone who recorded them
off the network would (they cannot protect a new request without the keys), and last a plain
push without OSCORE. The gateway should take the first (2.04) and refuse the other two (4.01).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import aiocoap

from testbed.credentials import OscoreKeys
from testbed.oscore_client import (
    device_context,
    exchange,
    protected_datagram,
    read_answer,
    with_message_id,
)

SECURITY = Path.home() / ".local/share/r197-testbed/city/security"  # testbed up's default


def show(what: str, answer: aiocoap.Message) -> None:
    detail = answer.payload.decode(errors="replace")
    print(f"{what}: {answer.code.dotted} {detail}".rstrip(), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="replay an OSCORE push (lab 08)")
    parser.add_argument("--port", type=int, default=5684, help="the gateway's CoAP port")
    parser.add_argument("--device", default="parking-0901")
    parser.add_argument("--oscore", type=Path, default=SECURITY / "oscore.json")
    args = parser.parse_args()

    raw = json.loads(args.oscore.read_text())[args.device]
    keys = OscoreKeys(
        bytes.fromhex(raw["secret"]), bytes.fromhex(raw["salt"]),
        bytes.fromhex(raw["device_id"]), bytes.fromhex(raw["gateway_id"]),
    )  # fmt: skip
    # Sequence numbers must never repeat under one key (RFC 8613 7.2.1): start from the clock,
    # above any earlier run of this script.
    context = device_context(keys, first_sequence=int(time.time()))
    reading = [{"bn": f"urn:dev:r197:{args.device}:", "n": "status", "vs": "free"}]
    request = aiocoap.Message(
        code=aiocoap.POST, uri_path=("up", args.device),
        payload=json.dumps(reading).encode(), content_format=110,
    )  # fmt: skip

    datagram, request_id = protected_datagram(context, request, mid=1)
    show("protected push", read_answer(context, exchange("::1", args.port, datagram), request_id))
    # The same bytes under a new Message ID, so CoAP's own deduplication does not hide it.
    show("the same bytes again", exchange("::1", args.port, with_message_id(datagram, 2)))
    plain = aiocoap.Message(
        code=aiocoap.POST, uri_path=("up", args.device),
        payload=json.dumps(reading).encode(), content_format=110,
    )  # fmt: skip
    plain.mtype, plain.mid, plain.token = aiocoap.CON, 3, b"\x03"
    show("a plain push, no OSCORE", exchange("::1", args.port, plain.encode()))


if __name__ == "__main__":
    main()
