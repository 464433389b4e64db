"""Headless Chromium through Selenium for the report page: the browser tests, the page benchmark and the README
screenshot share this start-up.

Only Debian's ``chromium`` + ``chromium-driver`` packages are used (``scripts/install_browser.sh``); both paths are
passed to Selenium explicitly, so Selenium Manager never looks for (or downloads) a browser. The flags switch off
everything that would reach the network (component updates, sync, background networking, QUIC) and the profile
is a fresh temporary folder; WebDriver itself talks to chromedriver on the loopback interface only.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

CHROMIUM_FLAGS: tuple[str, ...] = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--disable-dev-shm-usage", "--hide-scrollbars",
    "--force-device-scale-factor=1",
)
BINARY_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
DRIVER_CANDIDATES = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")


def find_chromium() -> tuple[str, str] | None:
    """(browser binary, chromedriver) of the distribution's packages, or None when either is missing."""
    binary = next((p for p in BINARY_CANDIDATES if Path(p).is_file()), None) or shutil.which("chromium")
    driver = next((p for p in DRIVER_CANDIDATES if Path(p).is_file()), None) or shutil.which("chromedriver")
    return (binary, driver) if binary and driver else None


def start_chromium(width: int = 1400, height: int = 1000) -> Any:
    """A headless Chromium WebDriver with a fresh profile (``driver.quit()`` when done).

    Raises:
        RuntimeError: chromium or chromedriver is not installed (run ``bash scripts/install_browser.sh``).
        ImportError: selenium is not installed (``pip install -e .[dev]``).
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    found = find_chromium()
    if found is None:
        raise RuntimeError("chromium/chromedriver not found: run bash scripts/install_browser.sh")
    binary, driver_path = found
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (*CHROMIUM_FLAGS, f"--window-size={width},{height}",
                 f"--user-data-dir={tempfile.mkdtemp(prefix='frontalize-chromium-')}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=driver_path), options=options)


def wait_ready(driver: Any, timeout: float = 30.0) -> None:
    """Wait until the report page says it is interactive (``body[data-ready="1"]``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if driver.execute_script("return document.body && document.body.getAttribute('data-ready') === '1'"):
            return
        time.sleep(0.02)
    raise TimeoutError(f"report page not ready after {timeout:.0f} s")


def wait_images(driver: Any, timeout: float = 30.0) -> None:
    """Wait until every thumbnail on screen has finished loading or failed (those below are loaded lazily)."""
    deadline = time.monotonic() + timeout
    script = ("return Array.from(document.querySelectorAll('#rows-body img'))"
              ".every(i => i.complete || i.getBoundingClientRect().top > window.innerHeight)")
    while time.monotonic() < deadline:
        if driver.execute_script(script):
            return
        time.sleep(0.05)
    raise TimeoutError("thumbnails still loading")
