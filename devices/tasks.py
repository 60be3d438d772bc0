"""Device loops in an ``asyncio.TaskGroup`` with named tasks, stopped in one place.

DESIGN 4: long-lived objects run their loops in a TaskGroup.

The devices carry their own copy of this small helper: they stand for somebody else's firmware
and import nothing of the gateway (DESIGN 2).  ``async with Background() as tasks:
tasks.start(loop(), name="...")``; leaving the block cancels the loops and the TaskGroup awaits
them, and a loop that raised (a bug, not a lost connection, which the loops retry) has made the
TaskGroup cancel its siblings and the task that entered the block, and is raised in an
``ExceptionGroup`` on leaving.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from types import TracebackType
from typing import Any

__all__ = ["Background", "Parts", "together"]

RECANCEL = 1.0  # seconds between two cancellations of a loop that has not ended yet


class Background:
    """A TaskGroup whose tasks are loops that run until the block is left."""

    def __init__(self) -> None:
        self._group = asyncio.TaskGroup()
        self._running: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Background:
        await self._group.__aenter__()
        return self

    def start(self, coro: Coroutine[Any, Any, None], *, name: str) -> asyncio.Task[None]:
        """Run ``coro`` as the task ``name``."""
        task = self._group.create_task(coro, name=name)
        self._running.add(task)
        task.add_done_callback(self._running.discard)
        return task

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self._stop()
        finally:
            if exc_type is not None and not issubclass(exc_type, asyncio.CancelledError):
                # The block's own exception (or an outer part's failure) leaves as itself; the
                # TaskGroup would wrap it in one more ExceptionGroup.
                exc_type, exc, tb = None, None, None
            await self._group.__aexit__(exc_type, exc, tb)

    async def _stop(self) -> None:
        """Cancel until every loop has ended: on Python 3.11 asyncio.wait_for (used by aiomqtt)
        can swallow a cancellation, and a loop that missed it would keep the TaskGroup, and the
        event loop's shutdown, waiting for ever."""
        pending = set(self._running)
        again: asyncio.CancelledError | None = None
        while pending:
            for task in pending:
                task.cancel()
            try:
                _, pending = await asyncio.wait(pending, timeout=RECANCEL)
            except asyncio.CancelledError as exc:  # asked to stop while stopping: go on
                again = exc
                pending = {task for task in pending if not task.done()}
        if again is not None:
            raise again


async def together(*named: tuple[str, Coroutine[Any, Any, None]]) -> None:
    """Run ``(name, coroutine)`` pairs side by side until all end or one fails, which stops
    the others; that first failure is raised as itself, not in an ExceptionGroup, so that a
    caller's ``except`` for a lost connection still matches (the others failed after it, from
    the same cause or while being cancelled)."""
    try:
        async with Background() as tasks:
            await asyncio.wait([tasks.start(coro, name=name) for name, coro in named])
    except BaseExceptionGroup as failed:
        first = failed.exceptions[0]
        raise first from (None if len(failed.exceptions) == 1 else failed)


class Parts:
    """Base of a long-lived object whose ``__aenter__`` enters its parts on ``self._stack``
    (an ``AsyncExitStack`` kept with ``pop_all()``): leaving the object leaves them in reverse
    order, and a failed loop's exception comes out there (DESIGN 4)."""

    _stack: contextlib.AsyncExitStack

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.__aexit__(exc_type, exc, tb)
