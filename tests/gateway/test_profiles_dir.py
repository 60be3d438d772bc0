"""Profiles from a directory (testbed gateway --profiles, lab 09): a wrong file is one precise
line naming the file and the field, never a traceback or a silently missing kind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.profiles import ProfileError, Profiles
from tests.conftest import ROOT

GOOD = 'kind = "crowd"\nentity_type = "CrowdFlowObserved"\n[[measurement]]\nsenml = "n"\nattribute = "peopleCount"\n'  # noqa: E501


def test_a_directory_adds_a_kind_beside_the_shipped_ones(tmp_path: Path) -> None:
    (tmp_path / "crowd.toml").write_text(GOOD)
    profiles = Profiles(tmp_path)
    assert profiles.for_device("crowd-7").entity_type == "CrowdFlowObserved"
    assert profiles.for_device("soil-1").entity_type == "AgriParcelRecord"
    assert "crowd" not in Profiles().kinds()


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("kind = ", "not valid TOML"),
        ('entity_type = "X"\n', "'kind' is missing"),
        (
            'kind = "crowd"\nentity_type = "X"\n[[measurement]]\nsenml = "n"\n',
            "'attribute' is missing",
        ),
        (GOOD + 'min = "low"\n', "could not convert string to float"),
        ('kind = "Crowd-1"\nentity_type = "X"\n', "not lower-case letters and digits"),
        ('kind = "crowd"\nentity_type = "X"\nmeasurement = 3\n', "[[measurement]] tables"),
    ],
)
def test_a_bad_profile_names_its_file_and_what_is_wrong(
    tmp_path: Path, text: str, fragment: str
) -> None:
    (tmp_path / "crowd.toml").write_text(text)
    with pytest.raises(ProfileError) as info:
        Profiles(tmp_path)
    assert str(tmp_path / "crowd.toml") in str(info.value)
    assert fragment in str(info.value)


def test_the_gateway_refuses_a_missing_directory_in_one_line(tmp_path: Path) -> None:
    """A mistyped --profiles path stops the gateway with status 2 before it connects to anything
    (else every reading of the kind would be rejected as unknown-device, quietly)."""
    missing = tmp_path / "profils"
    done = subprocess.run(
        [sys.executable, "-m", "testbed", "gateway", "--profiles", str(missing), "--broker", "off",
         "--rd", "off", "--queue", str(tmp_path / "q.db")],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert f"testbed gateway: no profiles directory {missing}" in done.stderr
    assert "Traceback" not in done.stderr


def test_unprofiled_names_the_kinds_without_a_profile(tmp_path: Path) -> None:
    from gateway.profiles import unprofiled  # noqa: PLC0415

    assert unprofiled({"soil", "indoor", "weather"}) is None
    problem = unprofiled({"crowd", "soil", "flow"})
    assert problem is not None
    assert "kind(s) crowd, flow: " in problem
    assert "--profiles DIR" in problem
    (tmp_path / "crowd.toml").write_text(GOOD)
    assert unprofiled({"crowd"}, tmp_path) is None
    assert "no profiles directory" in str(unprofiled({"crowd"}, tmp_path / "x"))
