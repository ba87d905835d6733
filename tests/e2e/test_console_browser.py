"""The console in a real browser against a running center: login, wallboard, reports."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from dispatcher.credentials import ensure_credentials
from pbx.phone.phone import Phone
from tests.browser import chromium, settled
from tests.harness import SiagaProcess, wait_for, write_test_config

pytestmark = pytest.mark.asterisk


@pytest.fixture(scope="module")
def center_server(tmp_path_factory: pytest.TempPathFactory,
                  asterisk_install) -> Iterator[SiagaProcess]:  # noqa: ANN001
    """The whole center (`siaga up`) on free ports, for this module."""
    tmp = tmp_path_factory.mktemp("console")
    proc = SiagaProcess(write_test_config(tmp / "center.yaml"), tmp / "state")
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture
def browser() -> Iterator[object]:
    """A headless Chromium for one test."""
    with chromium() as driver:
        yield driver


def log_in(driver, base: str, extension: str, password: str) -> None:  # noqa: ANN001
    from selenium.webdriver.common.by import By

    driver.get(base + "/wallboard")
    wait_for(lambda: "/login" in driver.current_url, 10, "the login page")
    driver.find_element(By.ID, "extension").send_keys(extension)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "login").click()


def test_given_a_supervisor_when_logging_in_then_the_wallboard_follows_a_waiting_caller(
        center_server: SiagaProcess, browser, phones, tmp_path: Path) -> None:  # noqa: ANN001
    """Login in the browser; a citizen calling 112 appears as waiting, then gives up and is
    listed among the callbacks owed."""
    from selenium.webdriver.common.by import By

    center = center_server.center
    creds = ensure_credentials(center)
    base = f"http://{center.http.host}:{center.http.port}"
    supervisor = center.supervisors[0]
    log_in(browser, base, supervisor, creds.console_passwords[supervisor])
    wait_for(settled(lambda: browser.current_url.endswith("/wallboard")
                     and browser.find_element(By.TAG_NAME, "body").get_attribute("data-loaded")),
             15, "the wallboard to load its data")
    assert browser.find_element(By.ID, "waiting").text == "0"
    operators = browser.find_element(By.ID, "operators").text
    assert all(op.extension in operators for op in center.operators)

    citizen = phones._keep(Phone(phones.stack, "081355501234",
                                 server=f"{center.sip.host}:{center.sip.port}"))
    call = citizen.call(center.hotline[0])

    def waiting_count() -> str:
        phones.stack.pump(50)
        return browser.find_element(By.ID, "waiting").text

    wait_for(settled(lambda: waiting_count() == "1"), 30, "the caller on the wallboard")
    assert "081355501234" in browser.find_element(By.ID, "callers").text
    call.hangup()
    wait_for(settled(lambda: waiting_count() == "0"), 15, "the caller to leave the wallboard")
    # Gave up in the queue: now owed a callback, on the board for everyone to see.
    wait_for(settled(lambda: "081355501234" in browser.find_element(By.ID, "callbacks").text),
             15, "the missed call among the callbacks")
    assert int(browser.find_element(By.ID, "owed").text) >= 1


def test_given_wrong_password_when_logging_in_then_stays_on_login_with_reason(
        center_server: SiagaProcess, browser) -> None:  # noqa: ANN001
    """A wrong password shows the reason on the login page and opens nothing."""
    from selenium.webdriver.common.by import By

    center = center_server.center
    base = f"http://{center.http.host}:{center.http.port}"
    log_in(browser, base, center.operators[0].extension, "wrong")
    error = wait_for(settled(lambda: [e.text for e in
                                      browser.find_elements(By.CLASS_NAME, "error")]),
                     10, "an error")
    assert error[0]  # type: ignore[index]
    assert "/login" in browser.current_url
    browser.get(base + "/wallboard.json")
    assert "login_required" in browser.page_source


def test_given_a_supervisor_when_opening_reports_then_the_report_renders(
        center_server: SiagaProcess, browser) -> None:  # noqa: ANN001
    """The supervisors' report page renders from the database, in Bahasa Indonesia."""
    from selenium.webdriver.common.by import By

    center = center_server.center
    creds = ensure_credentials(center)
    base = f"http://{center.http.host}:{center.http.port}"
    supervisor = center.supervisors[0]
    log_in(browser, base, supervisor, creds.console_passwords[supervisor])
    # The wallboard itself, not the login page: its URL (/login?next=/wallboard) also ends
    # with "/wallboard", and a report asked for while the login's POST was still on its way
    # was overtaken by the login's redirect to the wallboard (a CI run read that page).
    wait_for(lambda: urlsplit(browser.current_url).path == "/wallboard", 10, "login")
    browser.get(base + "/reports?from=2026-01-01&to=2026-12-31")
    # The report's own document: the wallboard's navigation says "Laporan" too, so the text
    # alone does not tell which page is shown.
    wait_for(lambda: "/reports" in browser.current_url
             and browser.find_elements(By.ID, "hourly-chart"), 30,
             "the report page with its hourly chart (the page now: "
             f"{browser.current_url})")
    body = browser.find_element(By.TAG_NAME, "body").text
    assert re.search(r"Laporan|Panggilan", body), body[:300]
    assert browser.find_elements(By.TAG_NAME, "svg"), "the hourly chart"
