"""Keeping a city's processes running: a part that dies is started again, with back-off.

A workshop room must not lose its city because one part crashed or was killed: the supervisor
watches every :class:`ManagedProcess` it is given and, when one exits, starts it again after a
jittered exponential delay (0.5 s, 1 s, 2 s, ... up to 30 s, DESIGN 4), back to the shortest
delay once the part has run for a minute. Nothing is lost meanwhile: devices' QoS 1 readings
wait in the broker's session for the gateway, and the gateway's durable queue holds what the
platform has not confirmed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from testbed.processes import ManagedProcess, ProcessFailed

log = logging.getLogger(__name__)


@dataclass
class PartState:
    """What the summary says about one supervised part."""

    restarts: int = 0
    last_exit: int | None = None
    up_since: float = field(default_factory=time.monotonic)
    delay: float = 0.0  # the back-off for the next restart


class Supervisor:
    """Restarts supervised processes that exit; ``run`` until ``stopping`` is set."""

    def __init__(
        self,
        *,
        first_delay: float = 0.5,
        max_delay: float = 30.0,
        stable_after: float = 60.0,
        poll: float = 0.25,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        self.first_delay = first_delay
        self.max_delay = max_delay
        self.stable_after = stable_after
        self.poll = poll
        self.on_event = on_event or (lambda _text: None)
        self.parts: dict[str, ManagedProcess] = {}
        self.states: dict[str, PartState] = {}

    def watch(self, proc: ManagedProcess) -> None:
        self.parts[proc.name] = proc
        self.states[proc.name] = PartState(delay=self.first_delay)

    @property
    def restarts(self) -> dict[str, int]:
        return {name: s.restarts for name, s in self.states.items() if s.restarts}

    def describe(self) -> str:
        """'gateway restarted 2x (last exit -9)' for each part that was restarted, or ''."""
        return ", ".join(
            f"{name} restarted {s.restarts}x (last exit {s.last_exit})"
            for name, s in self.states.items()
            if s.restarts
        )

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            for name, proc in self.parts.items():
                if not proc.alive and not stopping.is_set():
                    await self._restart(name, proc, stopping)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self.poll)

    async def _restart(self, name: str, proc: ManagedProcess, stopping: asyncio.Event) -> None:
        state = self.states[name]
        if proc.returncode is not None:  # None: it had not come back from an earlier restart
            state.last_exit = proc.returncode
        if time.monotonic() - state.up_since >= self.stable_after:
            state.delay = self.first_delay
        delay = state.delay * random.uniform(0.5, 1.5)  # noqa: S311  # jitter, not cryptography
        self.on_event(
            f"{name} exited with {state.last_exit}; restarting in {delay:.1f} s "
            f"(log {proc.log_path})"
        )
        log.info("%s exited with %s; restarting in %.1f s", name, state.last_exit, delay)
        state.delay = min(state.delay * 2, self.max_delay)
        await proc.astop()  # reap it (the exit status is kept above)
        try:
            await asyncio.wait_for(stopping.wait(), delay)
            return  # stopping: the city is shutting down, no restart
        except TimeoutError:
            pass
        try:
            await proc.astart()
        except ProcessFailed as exc:
            # Tried again at the next poll, with the longer delay.
            log.info("%s did not come back: %s", name, exc.reason)
            self.on_event(f"{name} did not come back: {exc.reason}")
            return
        state.restarts += 1
        state.up_since = time.monotonic()
        self.on_event(f"{name} is back (restart {state.restarts}, pid {proc.pid})")
