"""Test-case metadata and verdicts (the Sparkplug TCK style: every case has a stable id).

A case declares its id ``R197-<GROUP>-<nn>``, objective, the requirements it verifies (ids
of conformance/requirements.toml, which say the document and clause), the Resolution 197
theme it serves, and the PICS items it needs::

    @case("R197-MQTT-01", "CONNECT with clean session is accepted and session present is 0",
          verifies=["MQTT311-3.2.2-1"], theme="interoperability", pics=["mqtt.v311"])
    def test_connack(mqtt_broker): ...
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import pytest

from conformance.requirements import registry

Theme = Literal["interoperability", "ipv6", "security", "energy-efficiency", "resilience"]
Verdict = Literal["pass", "fail", "inconclusive", "n/a", "error"]
THEMES: tuple[Theme, ...] = (
    "interoperability",
    "ipv6",
    "security",
    "energy-efficiency",
    "resilience",
)
_ID = re.compile(r"^R197-[A-Z0-9]+-\d{2}$")
F = TypeVar("F", bound=Callable[..., Any])


class Inconclusive(Exception):  # a verdict, named as the standards name it
    """Raise when the observation cannot decide pass or fail (e.g. the IUT sent nothing)."""


class DeadlineExceeded(Inconclusive):
    """The case ran past its overall deadline (PIXIT ``case.deadline_s``): conftest.py raises
    it from a SIGALRM in whatever the case was waiting on, so an IUT that keeps a helper busy
    (notifications with wrong tokens, a trickle of bytes) cannot make a case run forever."""


_deadline: list[float] = []  # monotonic time the running case must end by (conftest.py)


def set_deadline(at: float | None) -> None:
    _deadline[:] = [at] if at is not None else []


def time_left(at_most: float) -> float:
    """Seconds a case may still wait: ``at_most``, or less when its overall deadline is near
    (one second before it, so a helper can end with what it saw rather than be cut off)."""
    if not _deadline:
        return at_most
    return max(0.05, min(at_most, _deadline[0] - time.monotonic() - 1.0))


@dataclass(frozen=True)
class Case:
    id: str
    objective: str
    verifies: tuple[str, ...]  # requirement ids; collection checks them (check_cases)
    theme: Theme
    pics: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not _ID.match(self.id):
            raise ValueError(f"test case id {self.id!r} is not R197-<GROUP>-<nn>")
        if not self.verifies:
            raise ValueError(f"test case {self.id} verifies no requirement")
        if len(set(self.verifies)) != len(self.verifies):
            raise ValueError(f"test case {self.id} names a requirement twice")

    @property
    def clauses(self) -> tuple[str, ...]:
        """The clauses it traces to, as cited (``RFC 7252 4.3``), from the registry."""
        return tuple(registry().citation(r) for r in self.verifies)


@dataclass
class Result:
    case: Case
    nodeid: str
    verdict: Verdict
    detail: str = ""
    duration: float = 0.0
    figures: dict[str, float] = field(default_factory=dict)
    roles: tuple[str, ...] = ()  # the roles the case exercised


def case(
    case_id: str,
    objective: str,
    *,
    verifies: list[str],
    theme: Theme,
    pics: list[str] | None = None,
) -> Callable[[F], F]:
    """Declare a conformance test case."""
    meta = Case(case_id, objective, tuple(verifies), theme, tuple(pics or ()))

    def wrap(fn: F) -> F:
        return pytest.mark.r197(meta)(fn)  # type: ignore[no-any-return]

    return wrap
