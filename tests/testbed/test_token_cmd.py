"""``testbed token`` and the key-file errors of ``testbed platform --auth-key``."""

from __future__ import annotations

import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from city_platform.auth import verify
from testbed.token_cmd import KeyFileError, default_key_file, read_key
from tests.conftest import ROOT


def run_testbed(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "testbed", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_token_prints_a_token_the_key_verifies(tmp_path: Path) -> None:
    """The printed token carries the asked scopes, tenants, subject and an expiry."""
    key = secrets.token_urlsafe(32).encode()
    (tmp_path / "k").write_bytes(key + b"\n")
    out = run_testbed(
        "token", "--key", str(tmp_path / "k"), "--scope", "read", "--scope", "write",
        "--tenant", "a", "--tenant", "", "--subject", "dashboard", "--ttl", "120",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    principal = verify(key, out.stdout.strip())
    assert principal.subject == "dashboard"
    assert principal.scopes == {"read", "write"}
    assert principal.tenants == {"a", ""}
    assert principal.expires is not None


def test_token_defaults_are_read_on_the_default_tenant(tmp_path: Path) -> None:
    key = secrets.token_urlsafe(32).encode()
    (tmp_path / "k").write_bytes(key)
    out = run_testbed("token", "--key", str(tmp_path / "k"))
    assert out.returncode == 0, out.stderr
    principal = verify(key, out.stdout.strip())
    assert principal.scopes == {"read"}
    assert principal.tenants == {""}
    assert principal.expires is None


@pytest.mark.parametrize(("content", "words"), [(None, "cannot read"), (b"\n", "is empty"),
                                                (b"short", "at least 32")])  # fmt: skip
def test_unusable_key_file_is_a_readable_error(
    tmp_path: Path, content: bytes | None, words: str
) -> None:
    """Missing, empty or short key: exit 2 with one line naming the file, no traceback; the
    platform refuses to start with it alike."""
    path = tmp_path / "api-jwt.key"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(KeyFileError, match=words):
        read_key(path)
    for args in (("token", "--key", str(path)), ("platform", "--auth-key", str(path))):
        out = run_testbed(*args)
        assert out.returncode == 2, out
        assert words in out.stderr
        assert str(path) in out.stderr
        assert "Traceback" not in out.stderr


def test_platform_takes_the_key_file_and_allow_list_from_settings(tmp_path: Path) -> None:
    """[platform] auth_key_file and allow_endpoints in the settings file reach the platform."""
    cfg = tmp_path / "city.toml"
    cfg.write_text(f'[platform]\nauth_key_file = "{tmp_path / "none.key"}"\n')
    out = run_testbed("--config", str(cfg), "platform")
    assert out.returncode == 2
    assert "none.key" in out.stderr
    cfg.write_text('[platform]\nallow_endpoints = ["gopher://x"]\n')
    out = run_testbed("--config", str(cfg), "platform", "--db", ":memory:")
    assert out.returncode == 2
    assert "--allow-endpoint 'gopher://x'" in out.stderr


def test_default_key_file_is_where_testbed_up_keeps_it() -> None:
    """<user data dir>/city/security/api-jwt.key, CityCredentials' jwt_key_file under up's dir."""
    assert default_key_file().parts[-3:] == ("city", "security", "api-jwt.key")


def test_token_help_explains_scopes_and_tenants() -> None:
    out = run_testbed("token", "--help")
    assert out.returncode == 0
    for words in ("admin implies write", "'*' is every tenant", "--ttl"):
        assert words in out.stdout
