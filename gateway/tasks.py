"""Background loops in an ``asyncio.TaskGroup`` with named tasks, stopped in one place.

DESIGN 4: long-lived objects run their loops in a TaskGroup.

``async with Background() as tasks: tasks.start(loop(), name="...")`` runs each loop as a task
of one TaskGroup.  Leaving the block cancels the loops still running and lets the TaskGroup
await them.  A loop that raises (a bug of ours: the loops handle connection errors themselves,
with back-off) makes the TaskGroup cancel its siblings and the task that entered the block, and
leaving the block raises it in an ``ExceptionGroup``: the failure reaches the program instead of
silently ending one loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from types import TracebackType
from typing import Any

__all__ = ["Background", "Parts"]


class Background:
    """A TaskGroup whose tasks are loops that run until the block is left."""

    def __init__(self) -> None:
        self._group = asyncio.TaskGroup()
        self._running: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> Background:
        await self._group.__aenter__()
        return self

    def start(self, coro: Coroutine[Any, Any, None], *, name: str) -> asyncio.Task[None]:
        """Run ``coro`` as the task ``name``; the handle cancels this one task alone."""
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
        # The loops never end by themselves: cancel them, then the TaskGroup awaits them and
        # raises what failed.
        for task in list(self._running):
            task.cancel()
        if exc_type is not None and not issubclass(exc_type, asyncio.CancelledError):
            # The block's own exception (or an outer part's failure) leaves as itself; the
            # TaskGroup would wrap it in one more ExceptionGroup.
            exc_type, exc, tb = None, None, None
        await self._group.__aexit__(exc_type, exc, tb)


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
