"""Debian's Chromium driven by Playwright, for the dashboard's browser test and screenshots.

``playwright install`` downloads a browser build of its own, which an offline machine cannot:
the system's ``/usr/bin/chromium`` (Debian package ``chromium``, .ci/setup installs it) runs
instead, headless, with every feature that would reach the network switched off.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",  # a container's small /dev/shm crashes tabs otherwise
)  # fmt: skip


class BrowserMissing(RuntimeError):
    """Playwright or Chromium is not installed; the message says how to install it."""


def chromium_path() -> Path:
    found = CHROMIUM if CHROMIUM.exists() else None
    if found is None and (which := shutil.which("chromium")):
        found = Path(which)
    if found is None:
        raise BrowserMissing(
            "Chromium is missing: apt-get install -y --no-install-recommends chromium "
            "(.ci/setup installs it)"
        )
    return found


def launch(playwright: Any) -> Any:
    """A headless Chromium browser from a started ``sync_playwright()``."""
    return playwright.chromium.launch(
        executable_path=str(chromium_path()), headless=True, args=list(CHROMIUM_ARGS)
    )


def sync_playwright() -> Any:
    """``playwright.sync_api.sync_playwright()``, or BrowserMissing with the install line."""
    try:
        from playwright.sync_api import sync_playwright as start  # noqa: PLC0415
    except ImportError as exc:
        raise BrowserMissing(
            f"Playwright is missing ({exc}): pip install playwright (the dev extra has it)"
        ) from None
    return start()
