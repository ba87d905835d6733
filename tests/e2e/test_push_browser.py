"""The live push channel in a real Chromium against a running center: the wallboard follows
callers without polling, and recovers by itself from a server killed and restarted."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from dispatcher.credentials import ensure_credentials
from pbx.phone.phone import Phone
from tests.browser import chromium, settled
from tests.e2e.test_console_browser import log_in
from tests.harness import SiagaProcess, running_center, wait_for

pytestmark = pytest.mark.asterisk

# The README's picture, rewritten only with SIAGA_UPDATE_SCREENSHOTS=1 (else in tmp_path).
SCREENSHOT = (Path(__file__).resolve().parent.parent.parent / "docs" / "screenshots"
              / "wallboard-push.png")


@pytest.fixture
def center(tmp_path: Path) -> Iterator[SiagaProcess]:
    """`siaga up` of its own (the test kills it); callers stay in the queue for 10 minutes
    rather than overflow while the server restarts."""
    with running_center(tmp_path, queue={"overflow_seconds": 600}) as server:
        yield server


# Installed before any script of each page runs (through the DevTools protocol): records
# every request the page's scripts make, whatever the API.
RECORD_REQUESTS = """
window.__requests = [];
const note = (kind, url) => window.__requests.push(kind + " " + String(url));
const fetch0 = window.fetch;
window.fetch = function (url, init) { note("fetch", url && url.url || url);
                                      return fetch0.apply(this, arguments); };
const open0 = XMLHttpRequest.prototype.open;
XMLHttpRequest.prototype.open = function (method, url) { note("xhr", url);
                                                         return open0.apply(this, arguments); };
const ES = window.EventSource;
window.EventSource = function (url, init) { note("eventsource", url); return new ES(url, init); };
window.EventSource.prototype = ES.prototype;
Object.assign(window.EventSource, {CONNECTING: 0, OPEN: 1, CLOSED: 2});
"""


def requests_made(driver) -> list[str]:  # noqa: ANN001
    """What the page's scripts requested (see RECORD_REQUESTS), then every URL in the
    browser's own resource timing."""
    return driver.execute_script(
        "return (window.__requests || []).concat("
        "performance.getEntriesByType('resource').map(e => 'timing ' + e.name));")


def callers(driver) -> list[str]:  # noqa: ANN001
    """The caller column of the wallboard's waiting list, row by row."""
    from selenium.webdriver.common.by import By

    return [row.find_elements(By.TAG_NAME, "td")[1].text
            for row in driver.find_elements(By.CSS_SELECTOR, "#callers tbody tr")]


def test_given_an_open_wallboard_when_a_citizen_calls_and_the_server_is_killed_then_pushed_and_recovered(  # noqa: E501
        center: SiagaProcess, phones, tmp_path: Path) -> None:  # noqa: ANN001
    """A citizen calling 112 appears on the wallboard through the push channel (the page
    makes no other request); the server is killed (-9) with the page open, a second citizen
    calls while it is down, the server restarts: within 5 s the page has a new snapshot
    showing both callers, each once, and follows the new run's deltas."""
    from selenium.webdriver.common.by import By

    conf = center.center
    creds = ensure_credentials(conf)
    base = f"http://{conf.http.host}:{conf.http.port}"
    supervisor = conf.supervisors[0]
    sip = f"{conf.sip.host}:{conf.sip.port}"

    def pumped(check):  # noqa: ANN001, ANN202
        def predicate() -> object:
            phones.stack.pump(20)
            return settled(check)()
        return predicate

    with chromium() as browser:
        browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument",
                                {"source": RECORD_REQUESTS})
        log_in(browser, base, supervisor, creds.console_passwords[supervisor])
        wait_for(settled(lambda: browser.current_url.endswith("/wallboard")
                         and browser.find_element(By.TAG_NAME, "body").get_attribute(
                             "data-loaded")), 15, "the wallboard's snapshot")
        body = browser.find_element(By.TAG_NAME, "body")
        first_epoch = body.get_attribute("data-epoch")
        assert first_epoch and browser.find_element(By.ID, "waiting").text == "0"
        assert "eventsource /events" in requests_made(browser)

        first = phones._keep(Phone(phones.stack, "081355500001", server=sip))
        first.call(conf.hotline[0])
        wait_for(pumped(lambda: callers(browser) == ["081355500001"]), 30,
                 "the first caller pushed to the wallboard")
        assert browser.find_element(By.ID, "waiting").text == "1"
        # Pushed, not polled: the page's one stream is all it asked for since it loaded.
        made = requests_made(browser)
        assert [r for r in made if not r.startswith("timing ")] == ["eventsource /events"]
        assert not [r for r in made if "wallboard.json" in r], made

        center.signal(signal.SIGKILL)
        center.wait_exit(10)
        wait_for(settled(lambda: browser.find_element(By.ID, "updated").text == "—"), 10,
                 "the page to notice its stream is gone")
        # Asterisk lives on without the server: a second citizen queues meanwhile.
        second = phones._keep(Phone(phones.stack, "081355500002", server=sip))
        second.call(conf.hotline[0])
        wait_for(lambda: (phones.stack.pump(20), "has 2 calls" in center.cli(
            "queue show operators"))[1], 30, "the second caller in Asterisk's queue")
        assert callers(browser) == ["081355500001"]  # the page cannot know yet

        center.start()
        recovered = wait_for(
            pumped(lambda: body.get_attribute("data-epoch") not in ("", first_epoch)
                   and callers(browser) == ["081355500001", "081355500002"]),
            5, "the page to recover from a new snapshot with both callers")
        assert recovered
        recovered_epoch = body.get_attribute("data-epoch")
        assert browser.find_element(By.ID, "waiting").text == "2"
        assert [row.text for row in browser.find_elements(
            By.CSS_SELECTOR, "#operators tbody tr td:first-child")] == [
                op.extension for op in conf.operators]  # each desk once
        # The page is in Bahasa Indonesia: no operator's phone is registered, and the desks'
        # state reads so in its words, not the server's English one.
        assert {cell.text for cell in browser.find_elements(
            By.CSS_SELECTOR, "#operators tbody td.state")} == {"tidak terhubung"}
        update = os.environ.get("SIAGA_UPDATE_SCREENSHOTS") == "1"
        browser.save_screenshot(str(SCREENSHOT if update else tmp_path / SCREENSHOT.name))
        # The new epoch's deltas follow: the first citizen gives up, the board says so.
        first.hangup_all()
        wait_for(pumped(lambda: callers(browser) == ["081355500002"]), 15,
                 "the first caller gone from the wallboard after the restart")
        assert browser.find_element(By.ID, "waiting").text == "1"
        assert body.get_attribute("data-epoch") == recovered_epoch


# Installed before the console's scripts: every card console.js dispatches, with the push
# epoch it came in.
WATCH_CARDS = """
window.__cards = [];
document.addEventListener("siaga:card", (e) => window.__cards.push(
  {card: e.detail, epoch: document.body.dataset.epoch || ""}));
"""


def test_given_an_operators_console_on_a_call_when_the_server_is_killed_and_restarted_then_the_card_comes_back_once(  # noqa: E501
        center: SiagaProcess, phones) -> None:  # noqa: ANN001
    """Operator 201 is talking with a citizen, the card on the console page. The server is
    killed (-9): Asterisk keeps the call up. Restarted, within 5 s the page has a new
    snapshot with the same call's card (talking, the citizen's number: what Asterisk still
    knows of a call older than the server), told to the card's panels once more at most,
    and each panel drawn once."""
    from selenium.webdriver.common.by import By

    from pbx.phone.events import CallState

    conf = center.center
    creds = ensure_credentials(conf)
    base = f"http://{conf.http.host}:{conf.http.port}"
    sip = f"{conf.sip.host}:{conf.sip.port}"
    me = conf.operators[0].extension
    operator = phones.extension(me, creds.password(me), sip)

    def pumped(check):  # noqa: ANN001, ANN202
        def predicate() -> object:
            phones.stack.pump(20)
            return settled(check)()
        return predicate

    with chromium() as browser:
        browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument",
                                {"source": WATCH_CARDS})
        browser.get(base + "/login?next=/console")
        browser.find_element(By.ID, "extension").send_keys(me)
        browser.find_element(By.ID, "password").send_keys(creds.console_passwords[me])
        browser.find_element(By.ID, "login").click()
        wait_for(settled(lambda: browser.current_url.endswith("/console")
                         and browser.find_element(By.TAG_NAME, "body").get_attribute(
                             "data-loaded")), 15, "the console's snapshot")
        body = browser.find_element(By.TAG_NAME, "body")
        card = browser.find_element(By.ID, "card")
        citizen = phones._keep(Phone(phones.stack, "081355500003", server=sip))
        call = citizen.call(conf.hotline[0])
        call.wait_confirmed(15)
        call.send_dtmf("1")
        ringing = operator.wait_incoming(40)
        ringing.answer()
        ringing.wait_confirmed(10)
        wait_for(pumped(lambda: card.get_attribute("data-state") == "talking"), 15,
                 "the card talking")
        linkedid = card.get_attribute("data-linkedid")
        first_epoch = body.get_attribute("data-epoch")

        center.signal(signal.SIGKILL)
        center.wait_exit(10)
        wait_for(pumped(lambda: body.get_attribute("data-offline") == "yes"), 10,
                 "the page to notice its stream is gone")
        center.start()
        wait_for(pumped(lambda: body.get_attribute("data-epoch") not in ("", first_epoch)
                        and card.get_attribute("data-state") == "talking"), 5,
                 "the page to recover from a new snapshot with the card")
        assert call.state == CallState.CONFIRMED  # the call lived on through the restart
        assert card.get_attribute("data-linkedid") == linkedid
        assert browser.find_element(By.ID, "card-caller").text == "081355500003"
        after = [c for c in browser.execute_script("return window.__cards")
                 if c["epoch"] not in ("", first_epoch)]
        assert len(after) <= 1, after  # the same card: told again at most once
        for panel in ("card-history", "card-incident", "card-location"):
            try:
                wait_for(settled(lambda panel=panel: len(browser.find_elements(
                    By.CSS_SELECTOR, f"#{panel} h3")) == 1), 10, f"#{panel} drawn")
            except TimeoutError as exc:
                raise AssertionError(browser.find_element(By.ID, panel).text) from exc
        assert len(browser.find_elements(By.CSS_SELECTOR, "#card-actions h3")) == 1
