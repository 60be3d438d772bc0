"""The process layer: start, readiness, failure with the log's tail, stop, supervision."""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import time
from pathlib import Path

import pytest

from testbed.processes import (
    CoapReady,
    HttpReady,
    ManagedProcess,
    PortClaim,
    PortInUse,
    ProcessFailed,
    ProcessSpec,
    TcpReady,
    check_ports,
    free_port,
    valid_port,
)
from testbed.summary import SlidingRate, recent_window
from testbed.supervisor import Supervisor


def python(code: str) -> tuple[str, ...]:
    return (sys.executable, "-c", code)


def _listener(port: int) -> str:
    """A program that prints, then listens on [::1]:port (TCP) after half a second."""
    return (
        "import socket, time\nprint('hello from the child', flush=True)\ntime.sleep(0.5)\n"
        "s = socket.socket(socket.AF_INET6)\n"
        "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"  # as servers do
        f"s.bind(('::1', {port})); s.listen()\n"
        "while True: s.accept()[0].close()\n"
    )


def test_start_waits_until_the_program_answers_and_stop_ends_it(tmp_path: Path) -> None:
    """start() returns once the TCP port accepts; stop() ends it; the log keeps its output."""
    port = free_port()
    spec = ProcessSpec("listener", python(_listener(port)), ready=TcpReady("::1", port))
    proc = ManagedProcess(spec, log_path=tmp_path / "listener.log")
    began = time.monotonic()
    proc.start()
    assert time.monotonic() - began >= 0.4
    assert proc.alive
    assert TcpReady("::1", port)()
    assert proc.stop() == -signal.SIGTERM
    assert not proc.alive
    assert "hello from the child" in (tmp_path / "listener.log").read_text()


def test_a_program_that_exits_while_starting_fails_with_its_log_tail() -> None:
    """The error names the part, its exit status and the last lines it wrote."""
    code = "import sys; print('cannot open the database'); sys.exit(3)"
    spec = ProcessSpec("platform", python(code), ready=TcpReady("::1", free_port()))
    proc = ManagedProcess(spec)
    with pytest.raises(ProcessFailed) as failed:
        proc.start()
    assert failed.value.reason == "exited with 3 while starting"
    assert "cannot open the database" in str(failed.value)
    assert not proc.alive


def test_a_program_that_never_answers_is_stopped_after_the_timeout() -> None:
    """A start that times out leaves no process behind."""
    spec = ProcessSpec(
        "mute", python("import time; time.sleep(60)"), ready=TcpReady("::1", free_port()),
        start_timeout=0.5,
    )  # fmt: skip
    proc = ManagedProcess(spec)
    with pytest.raises(ProcessFailed, match=r"did not answer within 0\.5 s"):
        proc.start()
    assert proc.proc is None


def test_stop_kills_a_program_that_ignores_sigterm() -> None:
    """SIGTERM first; after stop_timeout, SIGKILL."""
    code = (
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('up', flush=True)\ntime.sleep(60)"
    )
    spec = ProcessSpec("stubborn", python(code), stop_timeout=0.5)
    proc = ManagedProcess(spec)
    proc.start()
    deadline = time.monotonic() + 10
    while "up" not in proc.output() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.stop() == -signal.SIGKILL


async def test_a_cancelled_async_start_leaves_nothing_running() -> None:
    """Ctrl-C while a part is starting (its task cancelled) stops that part."""
    spec = ProcessSpec("slow", python("import time; time.sleep(60)"), ready=lambda: False)
    proc = ManagedProcess(spec)
    task = asyncio.create_task(proc.astart())
    await asyncio.sleep(0.5)
    child = proc.proc
    assert child is not None
    assert child.poll() is None
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert child.poll() is not None


def test_readiness_probes_answer_false_when_nothing_listens() -> None:
    """HTTP, TCP and CoAP probes say 'not yet' instead of raising."""
    assert not HttpReady(f"http://[::1]:{free_port()}/health")()
    assert not TcpReady("::1", free_port())()
    assert not CoapReady("::1", free_port("udp"))()


def test_port_claims_detect_a_taken_port() -> None:
    """A bound TCP or UDP port is reported with its owner and the option that changes it."""
    for transport, kind in (("tcp", socket.SOCK_STREAM), ("udp", socket.SOCK_DGRAM)):
        with socket.socket(socket.AF_INET6, kind) as taken:
            taken.bind(("::1", 0))
            port = taken.getsockname()[1]
            claim = PortClaim("gateway", port, transport, option="--http-port")  # type: ignore[arg-type]
            assert claim.in_use()
            with pytest.raises(PortInUse, match=f"port {port} on \\[::1\\] \\(gateway\\)"):
                check_ports([PortClaim("other", free_port()), claim])
        assert not claim.in_use()


@pytest.mark.parametrize("port", [0, -1, 65536, 99999])
def test_ports_outside_the_range_are_refused(port: int) -> None:
    with pytest.raises(ValueError, match="outside 1-65535"):
        valid_port(port)
    with pytest.raises(ValueError, match="outside 1-65535"):
        PortClaim("platform", port)


async def test_the_supervisor_restarts_a_killed_part_and_counts_it() -> None:
    """A part killed with SIGKILL is started again; the summary names the restart."""
    port = free_port()
    spec = ProcessSpec("gateway", python(_listener(port)), ready=TcpReady("::1", port))
    proc = ManagedProcess(spec)
    events: list[str] = []
    supervisor = Supervisor(first_delay=0.1, poll=0.05, on_event=events.append)
    await proc.astart()
    supervisor.watch(proc)
    stopping = asyncio.Event()
    runner = asyncio.create_task(supervisor.run(stopping))
    first = proc.pid
    proc.signal(signal.SIGKILL)
    deadline = time.monotonic() + 20
    while supervisor.restarts.get("gateway") != 1 and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    assert supervisor.restarts == {"gateway": 1}
    assert proc.alive
    assert proc.pid != first
    assert supervisor.describe() == f"gateway restarted 1x (last exit {-signal.SIGKILL})"
    assert any("exited with -9" in e for e in events)
    stopping.set()
    await asyncio.wait_for(runner, 5)
    await proc.astop()


async def test_the_supervisor_backs_off_a_part_that_keeps_dying() -> None:
    """Each restart of a crashing part waits about twice as long as the one before."""
    spec = ProcessSpec("crashy", python("import sys; sys.exit(1)"))
    proc = ManagedProcess(spec)
    supervisor = Supervisor(first_delay=0.05, max_delay=0.4, poll=0.01)
    proc.spawn()
    supervisor.watch(proc)
    delays: list[float] = []
    stopping = asyncio.Event()

    def noted(text: str) -> None:
        if "restarting in" in text:
            delays.append(supervisor.states["crashy"].delay)
            if len(delays) == 5:
                stopping.set()

    supervisor.on_event = noted
    await asyncio.wait_for(supervisor.run(stopping), 20)
    assert delays == [0.05, 0.1, 0.2, 0.4, 0.4]  # doubled each time, up to max_delay
    await proc.astop()


def test_the_sliding_rate_is_steady_over_bursty_samples() -> None:
    """Batches of 200 every other second read as 100/s, not 0, 200, 0, ..."""
    rate = SlidingRate(window=10)
    readings = 0.0
    seen = []
    for second in range(30):
        readings += 200 if second % 2 else 0
        seen.append(rate.add(readings, now=float(second)))
    assert all(90 <= r <= 111 for r in seen[12:]), seen
    rate.add(readings, now=30.0)
    assert 90 <= rate.add(100.0, now=31.0) <= 111  # restarted at 0, now 100: 100 more, not less


def test_online_window_follows_the_slowest_device() -> None:
    assert recent_window([0.2, 1]) == 10.0
    assert recent_window([5, 60]) == 180.0
