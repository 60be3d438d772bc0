"""The aiocoap internals we patch or rely on still exist with the shape we use.

Two modules reach below aiocoap's public API: gateway/transports/coap_dedup.py replaces the
duplicate detection hooks of aiocoap's MessageManager (falling back, with only a warning, to
aiocoap's own table when they are missing), and devices/coap.py wraps ``Pipe._any_interest``.
pyproject.toml bounds aiocoap to the minor version these were read on; an upgrade that moves
any of them fails here, not silently in the lab (a gateway back on aiocoap's 3 KB-per-request
table, or devices that stop notifying).
"""

from __future__ import annotations

import inspect
import logging
import tomllib
from importlib import metadata

import aiocoap
import pytest
from aiocoap import pipe, resource
from aiocoap.message import Direction
from aiocoap.messagemanager import MessageManager
from aiocoap.numbers.constants import TransportTuning
from aiocoap.numbers.types import Type
from aiocoap.transports.udp6 import UDP6EndpointAddress
from packaging.requirements import Requirement

import devices.coap  # noqa: F401  # installs the Pipe patch on import
from gateway.transports import coap_dedup
from tests.conftest import ROOT


def _parameters(function: object) -> list[str]:
    return list(inspect.signature(function).parameters)  # type: ignore[arg-type]


def test_the_installed_aiocoap_is_within_the_bound_in_pyproject() -> None:
    """Each extra that needs aiocoap bounds it, and the installed one is inside the bound."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = [Requirement(dep) for extra in project["optional-dependencies"].values()
             for dep in extra if dep.startswith("aiocoap")]  # fmt: skip
    assert specs
    for spec in specs:
        assert any(s.operator == "<" for s in spec.specifier), f"{spec} has no upper bound"
        assert spec.specifier.contains(metadata.version("aiocoap")), spec


def test_the_message_manager_has_the_duplicate_hooks_coap_dedup_replaces() -> None:
    """coap_dedup.install sets these on each MessageManager instance: they must be methods
    taking the message, and aiocoap must call them through ``self`` (so that an instance
    attribute takes over) on every incoming request and every message sent first."""
    for name in ("_deduplicate_message", "_store_response_for_duplicates", "_send_via_transport"):
        assert callable(getattr(MessageManager, name, None)), name
        assert _parameters(getattr(MessageManager, name)) == ["self", "message"], name
    assert "self._deduplicate_message(message)" in inspect.getsource(
        MessageManager.dispatch_message
    )
    assert "self._store_response_for_duplicates(message)" in inspect.getsource(
        MessageManager._send_initially
    )
    assert "self._recent_messages" in inspect.getsource(MessageManager.__init__)


async def test_coap_dedup_installs_its_table_on_a_udp6_server_context() -> None:
    """On a server context as the gateway makes it, every hook is replaced (no fallback)."""
    context = await aiocoap.Context.create_server_context(
        resource.Site(), bind=("::1", 0), transports=["udp6"]
    )
    try:
        managers = [i.token_interface for i in context.request_interfaces]
        assert managers
        assert all(isinstance(m, MessageManager) for m in managers)
        assert all(isinstance(m._recent_messages, dict) for m in managers)
        assert coap_dedup.install(context) is not None
        for manager in managers:
            assert manager._deduplicate_message.__qualname__.startswith("_deduplicator")
            assert manager._store_response_for_duplicates.__qualname__.startswith("_storer")
            assert manager._recent_messages == {}
    finally:
        await context.shutdown()


def test_what_a_duplicate_answer_is_rebuilt_from() -> None:
    """Message.decode(bytes, remote), Message.direction, EXCHANGE_LIFETIME and the UDP remote's
    sockaddr, which coap_dedup uses to send a stored answer again and to key its table."""
    assert _parameters(aiocoap.Message.decode) == ["rawdata", "remote"]
    # The bytes of an answer as coap_dedup stores them (aiocoap deprecates mtype= and token=).
    encoded = bytes([0x60 | 1, aiocoap.CHANGED, 0x12, 0x67, 0x01])  # ACK 2.04 MID 4711 token 01
    again = aiocoap.Message.decode(encoded, None)
    again.direction = Direction.OUTGOING
    assert (again.mtype, again.mid, again.code, again.token) == (
        Type.ACK,
        4711,
        aiocoap.CHANGED,
        b"\x01",
    )
    assert again.encode() == encoded
    assert TransportTuning().EXCHANGE_LIFETIME == 247  # RFC 7252 4.8.2
    assert _parameters(UDP6EndpointAddress.__init__)[:2] == ["self", "sockaddr"]
    assert "self.sockaddr = sockaddr" in inspect.getsource(UDP6EndpointAddress.__init__)


def test_the_pipe_internals_the_device_patch_wraps() -> None:
    """``_event_callbacks`` is a list, False once the pipe ended; ``_add_event`` asks
    ``_any_interest`` after its callbacks; the wrapper answers for an ended pipe."""
    assert "self._event_callbacks = False" in inspect.getsource(pipe.Pipe._end)
    assert "self._any_interest()" in inspect.getsource(pipe.Pipe._add_event)
    ended = pipe.Pipe(aiocoap.Message(code=aiocoap.GET), logging.getLogger(__name__))
    assert ended._event_callbacks == []
    ended._end()
    assert ended._event_callbacks is False
    assert ended._any_interest() is True  # devices/coap.py's wrapper


def test_aiocoap_still_has_the_bug_the_device_patch_works_around() -> None:
    """The original ``_any_interest`` fails on an ended pipe (aiocoap 0.4.17).  When this
    test fails, aiocoap has fixed it: remove _tolerate_ended_pipes from devices/coap.py."""
    original = inspect.getclosurevars(pipe.Pipe._any_interest).nonlocals["original"]
    ended = pipe.Pipe(aiocoap.Message(code=aiocoap.GET), logging.getLogger(__name__))
    ended._end()
    with pytest.raises(TypeError):
        original(ended)


def test_the_entry_points_we_call_take_the_arguments_we_pass() -> None:
    """Site.render_to_pipe (overridden by devices.coap.StrictSite) and the two context
    factories with an explicit transport list (DESIGN 8: otherwise TCP and WebSocket too)."""
    assert inspect.iscoroutinefunction(resource.Site.render_to_pipe)
    assert len(_parameters(resource.Site.render_to_pipe)) == 2
    assert {"site", "bind", "transports"} <= set(_parameters(aiocoap.Context.create_server_context))
    assert "transports" in _parameters(aiocoap.Context.create_client_context)
