"""A real headless Chromium driven by Selenium, for tests of the console's pages."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@contextmanager
def chromium(*flags: str) -> Iterator[object]:
    """A Chromium WebDriver with a fresh profile; quit when the block ends.

    ``flags`` are extra command-line switches (e.g. ``--ignore-certificate-errors`` for a
    center whose certificate a test CA signed).
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    # Selenium must not try to download a browser or driver: this machine has Debian's.
    os.environ.setdefault("SE_OFFLINE", "true")
    profile = tempfile.mkdtemp(prefix="siaga-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                 f"--user-data-dir={profile}", *flags):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def settled(check: Callable[[], object]) -> Callable[[], object]:
    """``check`` as a wait predicate that is merely false while the page is being replaced
    (an element not there yet, or one from the page just left)."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    def predicate() -> object:
        try:
            return check()
        except (NoSuchElementException, StaleElementReferenceException):
            return False
    return predicate


def replaced(element: object) -> Callable[[], bool]:
    """A wait predicate: true once ``element``'s page has been replaced by the next one (a
    form's answer has loaded), so nothing is read from the page being left."""
    from selenium.common.exceptions import StaleElementReferenceException

    def predicate() -> bool:
        try:
            element.is_enabled()  # type: ignore[attr-defined]
        except StaleElementReferenceException:
            return True
        return False
    return predicate


def screenshot_path(name: str) -> Path:
    """Where a test saves its page's picture: the README's ``docs/screenshots/<name>`` only
    with ``SIAGA_UPDATE_SCREENSHOTS=1``; otherwise a scratch file, so a test run never
    rewrites the documentation."""
    if os.environ.get("SIAGA_UPDATE_SCREENSHOTS") == "1":
        path = Path(__file__).resolve().parents[1] / "docs" / "screenshots" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path
    return Path(tempfile.mkdtemp(prefix="siaga-shot-")) / name
