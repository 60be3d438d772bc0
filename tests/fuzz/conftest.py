"""Property-based tests (hypothesis) of every decoder and parser we own (issue 17).

Each test feeds a decoder input built from its format's grammar (so that deep paths are
reached, not only bytes that fail at byte 0) and asserts that nothing but our own error types
comes out: :class:`gateway.errors.RejectedPayload` (gateway), ``MalformedPacket`` (MQTT codec),
``MalformedCoap`` (conformance's CoAP decoder), :class:`city_platform.errors.PlatformError`
subclasses (platform); where an encoder exists, that decoding what it encodes gives the input.

Two hypothesis profiles, chosen with ``HYPOTHESIS_PROFILE``:

``ci`` (the default)
    250 examples per test, no deadline (a loaded CI machine is not a bug), no example
    database (a clean clone gets no ``.hypothesis`` directory), failing examples printed as
    a reproduction blob.  The whole directory runs in well under a minute.
``deep``
    20,000 examples per test, for a fuzzing session by hand (a file or two at a time: the
    query and SenML files alone take about 15 minutes)::

        HYPOTHESIS_PROFILE=deep .venv/bin/python -m pytest -q tests/fuzz/test_query.py

    A failure prints ``@reproduce_failure(...)``; turn the input into an ``@example`` beside
    the test, fix the decoder, and keep the example as the regression test.

The tests that go through HTTP (test_entities.py, test_http_requests.py) set fewer examples
(80 to 150): each is a request to the platform app, run in process by the ``platform``
fixture below (real routes and SQLite in memory, no server process, no port).  Generated
documents are passed as JSON bytes, not objects: hypothesis prints an example by recursing
into it, which overflows the stack at the nesting depths tested.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from contextlib import AsyncExitStack

import httpx
import pytest
from hypothesis import HealthCheck, settings

from city_platform.api.app import create_app
from city_platform.storage.sqlite import SqliteStorage

_COMMON = {
    "deadline": None,
    "database": None,
    "print_blob": True,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}
settings.register_profile("ci", max_examples=250, **_COMMON)  # type: ignore[arg-type]
settings.register_profile("deep", max_examples=20_000, **_COMMON)  # type: ignore[arg-type]
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="module")
def platform() -> Iterator[tuple[asyncio.Runner, httpx.AsyncClient]]:
    """The platform app in process around SQLite in memory, its lifespan entered once."""
    app = create_app(SqliteStorage(":memory:"), allow_remote_contexts=False)
    with asyncio.Runner() as runner:
        stack = AsyncExitStack()
        transport = httpx.ASGITransport(app=app)
        http = httpx.AsyncClient(transport=transport, base_url="http://platform/ngsi-ld/v1")

        async def enter() -> None:
            await stack.enter_async_context(app.router.lifespan_context(app))
            await stack.enter_async_context(http)

        runner.run(enter())
        yield runner, http
        runner.run(stack.aclose())
