"""Lab 06: a CoAP air-quality sensor with two bugs, for the conformance suite to find.

    python docs/labs/code/broken_device.py --port 5699

serves, on coap://[::1]:5699, /.well-known/core, an observable /sensors (SenML JSON), a long
/log (Block2) and /actuators/powerState (PUT). It looks fine with coap-client, but:

1. its hand-written /.well-known/core says Content-Format 0 (text/plain) instead of 40
   (application/link-format, RFC 6690 7.1), and ignores query filters such as ?rt=...
   (RFC 6690 4.1);
2. /sensors ignores the Accept option: it answers SenML JSON to every request, where it should
   answer SenML CBOR to Accept 112 and 4.06 Not Acceptable to a format it has not
   (RFC 7252 5.10.4);
3. it answers requests carrying a critical option it does not know, which it must reject with
   4.02 Bad Option (RFC 7252 5.4.1): aiocoap's Site does not check that for you.

Lab 06 asks you to find them in the conformance report, then fix them (see FIXED below).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import aiocoap
import aiocoap.error
from aiocoap import resource

FIXED = False  # set to True once you have read the report: the bugs go away

LINKS = (
    '</sensors>;obs;rt="r197.airquality";ct="110 112",</log>;ct="110",'
    '</actuators/powerState>;rt="r197.actuator"'
)


def pack() -> list[dict[str, object]]:
    return [
        {
            "bn": "urn:dev:r197:airquality-0999:",
            "bt": time.time(),
            "n": "pm25",
            "u": "kg/m3",
            "v": 1.2e-8,
        }
    ]


class Links(resource.Resource):  # type: ignore[misc]
    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        # Bug 1: the links are right, their media type is not (RFC 6690 7.1 says 40).
        fmt = 40 if FIXED else 0
        return aiocoap.Message(payload=LINKS.encode(), content_format=fmt)


class Sensors(resource.ObservableResource):  # type: ignore[misc]
    rt, ct = "r197.airquality", "110 112"  # the link attributes aiocoap's own wkc lists

    def __init__(self) -> None:
        super().__init__()
        asyncio.get_running_loop().call_later(1, self.tick)

    def tick(self) -> None:
        self.updated_state()  # a new reading every second for the observers (RFC 7641 4.2)
        asyncio.get_running_loop().call_later(1, self.tick)

    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        accept = request.opt.accept
        if FIXED and accept not in (None, 110, 112):
            return aiocoap.Message(code=aiocoap.NOT_ACCEPTABLE)
        if FIXED and accept == 112:
            import cbor2  # noqa: PLC0415 - only the fixed device speaks CBOR

            labels = {"bn": -2, "bt": -3, "n": 0, "u": 1, "v": 2}  # RFC 8428 6
            records = [{labels[k]: v for k, v in r.items()} for r in pack()]
            return aiocoap.Message(payload=cbor2.dumps(records), content_format=112)
        # Bug 2: whatever was asked for, JSON comes back.
        return aiocoap.Message(payload=json.dumps(pack()).encode(), content_format=110)


class Log(resource.Resource):  # type: ignore[misc]
    ct = 110

    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        history = [pack()[0] | {"bt": time.time() - 5 * i} for i in range(40)]
        return aiocoap.Message(payload=json.dumps(history).encode(), content_format=110)


class PowerState(resource.Resource):  # type: ignore[misc]
    rt = "r197.actuator"
    state = b"on"

    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        return aiocoap.Message(payload=self.state, content_format=0)

    async def render_put(self, request: aiocoap.Message) -> aiocoap.Message:
        if request.opt.content_format not in (None, 0):
            return aiocoap.Message(code=aiocoap.UNSUPPORTED_CONTENT_FORMAT)
        self.state = request.payload
        return aiocoap.Message(code=aiocoap.CHANGED)


# Critical options (odd numbers, RFC 7252 5.4.6) aiocoap handles for us: If-Match, Uri-Host,
# ETag... Uri-Path, Content-Format, Uri-Query, Accept, Proxy-*, Block2/1 (23, 27), Size.
KNOWN_CRITICAL = frozenset({1, 3, 5, 7, 9, 11, 15, 17, 23, 27, 35, 39})


class CheckingSite(resource.Site):  # type: ignore[misc]
    """The fix of bug 3: refuse unknown critical options with 4.02 (RFC 7252 5.4.1)."""

    async def render_to_pipe(self, pipe: Any) -> Any:
        for option in pipe.request.opt.option_list():
            if int(option.number) & 1 and int(option.number) not in KNOWN_CRITICAL:
                raise aiocoap.error.BadOption(f"unrecognized critical option {option.number}")
        return await super().render_to_pipe(pipe)


async def main(port: int, seconds: float) -> None:
    site = CheckingSite() if FIXED else resource.Site()
    if FIXED:  # aiocoap's own: ct 40 and the RFC 6690 4.1 filters
        site.add_resource(
            [".well-known", "core"], resource.WKCResource(site.get_resources_as_linkheader)
        )
    else:
        site.add_resource([".well-known", "core"], Links())
    site.add_resource(["sensors"], Sensors())
    site.add_resource(["log"], Log())
    site.add_resource(["actuators", "powerState"], PowerState())
    context = await aiocoap.Context.create_server_context(site, bind=("::1", port))
    print(f"broken device on coap://[::1]:{port}", flush=True)
    await asyncio.sleep(seconds)
    await context.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="a CoAP sensor with two bugs (lab 06)")
    parser.add_argument("--port", type=int, default=5699)
    parser.add_argument("--seconds", type=float, default=3600, help="stop after this long")
    args = parser.parse_args()
    asyncio.run(main(args.port, args.seconds))
