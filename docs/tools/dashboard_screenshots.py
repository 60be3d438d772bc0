"""Screenshots of the dashboard for docs/: dashboard-map.png, -devices.png, -reports.png.

Run against a running city (``testbed up``), once, from the repository::

    .venv/bin/python docs/tools/dashboard_screenshots.py http://[::1]:8090 \\
        --token-file ~/.local/share/r197-testbed/city/security/tokens/admin.jwt

It logs in with the token (as a user would paste it), selects a streetlight and a sensor,
and writes the three PNG files into docs/ (or --out).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from testbed.browser import launch, sync_playwright

DOCS = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", help="the dashboard, e.g. http://[::1]:8090")
    parser.add_argument("--token-file", type=Path, help="a platform token (a secure city)")
    parser.add_argument("--out", type=Path, default=DOCS)
    parser.add_argument("--select", default="NoiseLevelObserved", help="entity type to select")
    args = parser.parse_args()
    with sync_playwright() as pw:
        browser = launch(pw)
        page = browser.new_page(viewport={"width": 1400, "height": 860})
        page.goto(args.url)
        if args.token_file is not None:
            page.fill("#token", args.token_file.read_text().strip())
            page.click("#login-button")
        page.wait_for_selector("path.device-marker")
        page.wait_for_selector("#live.on")
        page.locator(f"path.type-{args.select}").first.click()
        page.wait_for_selector("#chart canvas")
        page.wait_for_timeout(4000)  # a few live updates and points in the chart
        page.screenshot(path=str(args.out / "dashboard-map.png"))
        page.click("nav button[data-tab=devices]")
        page.wait_for_selector("#devices-table tbody tr")
        page.wait_for_timeout(1500)
        page.screenshot(path=str(args.out / "dashboard-devices.png"))
        page.click("nav button[data-tab=reports]")
        page.wait_for_timeout(1500)
        page.screenshot(path=str(args.out / "dashboard-reports.png"))
        browser.close()
    print(f"wrote {args.out}/dashboard-{{map,devices,reports}}.png")


if __name__ == "__main__":
    main()
