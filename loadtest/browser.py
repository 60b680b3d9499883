"""Headless Chromium for the dashboard: the browser tests, the screenshots and the load test's
open dashboard all launch it here.

It is the system's Chromium (Debian's ``chromium`` package; ``RECSYS_CHROMIUM`` or ``PATH``
otherwise), driven by Playwright through ``executable_path``: ``playwright install`` downloads a
browser build of its own, which machines without internet access (and CI here) cannot do.
The flags keep it quiet on such machines: no sandbox (it runs as root in containers, where the
sandbox cannot start), no GPU, and none of the background connections (component updates,
sync, safe browsing lists) that a refusing network turns into errors and delays. Each launch
gets a fresh profile (Playwright's default: a temporary user-data directory).
"""

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Playwright

CHROMIUM_ENV: Final = "RECSYS_CHROMIUM"
CHROMIUM_ARGS: Final = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--no-first-run",
    "--no-default-browser-check",
)


class NoBrowserError(RuntimeError):
    """No Chromium on this machine."""


def chromium_path() -> Path:
    """The Chromium to drive: ``$RECSYS_CHROMIUM``, else ``chromium`` on PATH."""
    given = os.environ.get(CHROMIUM_ENV)
    found = given or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        raise NoBrowserError(
            "no chromium found: install Debian's chromium package (apt-get install -y chromium) "
            f"or set {CHROMIUM_ENV} to a Chromium binary"
        )
    return Path(found)


def launch(playwright: "Playwright") -> "Browser":
    return playwright.chromium.launch(
        executable_path=str(chromium_path()), args=list(CHROMIUM_ARGS), headless=True
    )
