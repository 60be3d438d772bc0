"""Running a program until SIGINT/SIGTERM (DESIGN 4: every program is a small daemon)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable


async def run_until_signal(
    start: Callable[[], Awaitable[None]],
    stop: Callable[[], Awaitable[None]],
    *,
    tick: Callable[[], None] | None = None,
    interval: float = 2.0,
) -> None:
    """Start, then wait for SIGINT/SIGTERM (calling ``tick`` every ``interval``), then stop.

    A service whose loop failed has its TaskGroup cancel this wait (DESIGN 4); ``stop`` then
    raises that failure, which the command turns into exit status 1.
    """
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stopping.set)
    await start()
    try:
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), interval)
            if tick is not None and not stopping.is_set():
                tick()
    finally:
        await stop()
