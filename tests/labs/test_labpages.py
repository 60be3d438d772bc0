"""The lab-page convention itself (docs/labs/README.md "For teachers"): parsing and matching."""

from __future__ import annotations

from tests.labs.labpages import commands, unmatched

PAGE = """
Some text.

1. A step:

   ```console
   $ echo one \\
       two
   one two
   $ S=~/x
   ```

```console background
$ testbed up
devices online <n>/<n> | readings/s <rate>
```

```sh
not a console block
```
"""


def test_commands_are_read_with_indent_continuations_and_background() -> None:
    found = commands(PAGE)
    assert [c.line for c in found] == ["echo one \\\n    two", "S=~/x", "testbed up"]
    assert [c.expected for c in found[:2]] == [["one two"], []]
    assert [c.background for c in found] == [False, False, True]


def test_expected_lines_must_appear_in_order() -> None:
    out = "a\nhello world\nthe end\n"
    assert unmatched(["hello world", "the end"], out) is None
    assert unmatched(["the end", "hello world"], out) == "hello world"
    assert unmatched(["goodbye"], out) == "goodbye"


def test_placeholders_ellipses_and_spaces_are_wild_but_the_rest_is_literal() -> None:
    line = "devices online 24/24 | readings/s    9.7 | entities 48"
    assert unmatched(["devices online <n>/<n> | readings/s <rate> | ..."], line) is None
    assert unmatched(["...", "readings/s 9.7"], line) is None
    assert unmatched(["devices online <n>/<n> | entities 49"], line) is not None
    assert unmatched(["a.b"], "axb") == "a.b"  # regex characters are literal
    assert unmatched(["<x>"], "") == "<x>"  # a placeholder needs some text
