"""Reading what an implementation under test answered: decoding faults are its *fail*.

A case asserts on the IUT's bytes; when those bytes are not what they claim (an error body
that is not JSON, a member the case reads that is missing, CBOR that does not decode), the
verdict is *fail* with the observed bytes, never *error* with a Python exception
(JSONDecodeError, KeyError, CBORDecodeError) that reads like a bug of the suite.  Only data
read through these helpers is treated so, so a bug of our own still shows as *error*:

- :func:`iut_json` / :func:`iut_cbor` decode IUT bytes, raising :class:`IutAnswerError` (an
  AssertionError) with an excerpt of the bytes when they do not decode;
- the values they return are :class:`IutDict` / :class:`IutList`: indexing a member or item
  the IUT left out raises :class:`MissingMember`, an AssertionError that is also a
  KeyError/IndexError (so ``except KeyError`` and ``.get`` keep working);
- :func:`watch_responses` makes ``response.json()`` of an httpx client do the same (the
  ``api`` fixture uses it, conftest.py);
- :func:`expect_status` is the status assertion whose reason names the expected and the
  observed status and a bounded excerpt of the body (``<empty body>`` when there is none).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import cbor2
import httpx

EXCERPT = 200  # bytes of an IUT answer quoted in a verdict's reason


class IutAnswerError(AssertionError, ValueError):
    """The IUT's answer does not decode as what it claims to be: a fail of the case (and a
    ValueError, as json.loads raises, for a case that catches that to say it its own way)."""


class MissingMember(IutAnswerError, KeyError, IndexError):
    """A case read a member (or item) the IUT's answer does not have."""

    def __str__(self) -> str:  # KeyError would show repr() of the message
        return str(self.args[0]) if self.args else ""


def excerpt(raw: bytes | str | None, limit: int = EXCERPT) -> str:
    """At most ``limit`` bytes of an answer, as Python writes bytes, or ``<empty body>``."""
    if not raw:
        return "<empty body>"
    data = raw.encode() if isinstance(raw, str) else raw
    shown = repr(data[:limit])
    return shown + (f"... ({len(data)} bytes)" if len(data) > limit else "")


def _wrap(value: Any, path: str, whole: str) -> Any:
    if isinstance(value, dict):
        return IutDict({k: _wrap(v, f"{path}.{k}", whole) for k, v in value.items()}, path, whole)
    if isinstance(value, list):
        return IutList([_wrap(v, f"{path}[{i}]", whole) for i, v in enumerate(value)], path, whole)
    return value


class IutDict(dict[Any, Any]):
    """A JSON object (or CBOR map) the IUT sent; a missing member is a fail naming it."""

    def __init__(self, items: dict[Any, Any], path: str = "$", whole: str = "") -> None:
        super().__init__(items)
        self._path, self._whole = path, whole

    def __missing__(self, key: Any) -> Any:
        raise MissingMember(
            f"the IUT's answer has no member {key!r} at {self._path} "
            f"(members: {sorted(map(str, self))[:12]}): {self._whole}"
        )


class IutList(list[Any]):
    """A JSON array the IUT sent; an item past its end is a fail naming the index."""

    def __init__(self, items: Iterable[Any], path: str = "$", whole: str = "") -> None:
        super().__init__(items)
        self._path, self._whole = path, whole

    def __getitem__(self, index: Any) -> Any:
        try:
            return super().__getitem__(index)
        except IndexError:
            raise MissingMember(
                f"the IUT's answer has {len(self)} item(s) at {self._path}, "
                f"no item {index}: {self._whole}"
            ) from None


def iut_json(raw: bytes | str, what: str = "the answer") -> Any:
    """``raw`` (an IUT's bytes) as JSON, wrapped; IutAnswerError with the bytes if it is not."""
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise IutAnswerError(f"{what} is not JSON: {excerpt(raw)}") from None
    return _wrap(value, "$", excerpt(raw))


def iut_cbor(raw: bytes, what: str = "the answer") -> Any:
    """``raw`` (an IUT's bytes) as CBOR, wrapped; IutAnswerError with the bytes if it is not."""
    try:
        value = cbor2.loads(raw)
    except (cbor2.CBORDecodeError, ValueError, TypeError, EOFError):
        raise IutAnswerError(f"{what} is not CBOR: {raw[:EXCERPT].hex() or '<empty>'}") from None
    return _wrap(value, "$", raw[:EXCERPT].hex())


def _what(response: httpx.Response) -> str:
    request = response.request
    return f"the answer {response.status_code} to {request.method} {request.url.raw_path.decode()}"


def _response_json(response: httpx.Response) -> Any:
    response.read()
    return iut_json(response.content, _what(response))


def watch_responses(client: httpx.Client) -> httpx.Client:
    """Make ``client``'s ``response.json()`` decode as :func:`iut_json` does (the IUT's fail)."""

    def hook(response: httpx.Response) -> None:
        response.json = lambda **_: _response_json(response)  # type: ignore[method-assign]

    client.event_hooks["response"] = [*client.event_hooks["response"], hook]
    return client


def expect_status(response: httpx.Response, *expected: int) -> None:
    """The answer's status is one of ``expected``; else a fail naming both and the body."""
    if response.status_code in expected:
        return
    wanted = " or ".join(map(str, expected))
    raise AssertionError(
        f"expected {wanted}, got {response.status_code} to {_what(response).split(' to ', 1)[1]}: "
        f"{excerpt(response.content)}"
    )
