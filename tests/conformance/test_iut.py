"""PICS: what the IUT file says holds for the roles it fills; the reference's holds elsewhere."""

from __future__ import annotations

from pathlib import Path

import pytest

from conformance.iut import REFERENCE_PICS, IutError, load_iut


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "iut.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_pics_of_the_iut_apply_to_cases_that_exercise_its_role(tmp_path: Path) -> None:
    iut = load_iut(write(tmp_path, """
roles:
  coap-device: {url: "coap://[::1]:15683"}
pics:
  senml.cbor: false
"""))  # fmt: skip
    assert iut.supports("senml.cbor", ["coap-device"]) is False
    assert iut.supports("senml.cbor", ["coap-device", "gateway"]) is False
    assert iut.supports("senml.cbor") is False
    # A gateway case run entirely on reference parts is judged on the reference's PICS.
    assert iut.supports("senml.cbor", ["mqtt-broker", "gateway"]) is True
    # An item the file does not name takes the reference's value.
    assert iut.supports("coap.block2", ["coap-device"]) is REFERENCE_PICS["coap.block2"]
    assert iut.supports("no.such-item", ["coap-device"]) is False


def test_shipped_examples_load(tmp_path: Path) -> None:
    examples = Path(__file__).resolve().parents[2] / "conformance" / "examples"
    files = sorted(examples.glob("*.yaml"))
    assert len(files) >= 3
    for path in files:
        iut = load_iut(path)
        assert iut.roles, path
        unknown = set(iut.pics) - set(REFERENCE_PICS)
        assert not unknown, f"{path.name}: PICS items the suite does not know: {unknown}"


def test_unknown_field_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(IutError, match="colour"):
        load_iut(write(tmp_path, "colour: blue\n"))


def test_a_misspelt_pics_item_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(IutError, match=r"coap\.etags.*known items: .*coap\.etag"):
        load_iut(write(tmp_path, "pics:\n  coap.etags: false\n"))
