"""The operator's console in a real Chromium against a running center (`siaga up`), with
pjsua2 phones: the desk's buttons act as the feature codes do, and the call card appears
while the operator's phone is still ringing, on that operator's page only, a hostile caller
ID shown as the text the dialplan left of it."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from dispatcher.credentials import ensure_credentials
from pbx.phone.events import CallState
from pbx.phone.phone import Phone
from tests.browser import chromium, settled
from tests.e2e.test_callerid_injection import cleaned
from tests.harness import SiagaProcess, open_push_stream, running_center, wait_for

pytestmark = pytest.mark.asterisk

# The README's picture, rewritten only with SIAGA_UPDATE_SCREENSHOTS=1 (else in tmp_path).
SCREENSHOT = (Path(__file__).resolve().parent.parent.parent / "docs" / "screenshots"
              / "console-card.png")

# The From user of the hostile caller: markup and a script, percent-encoded on the wire.
HOSTILE = '"><img src=x onerror=window.__xss=1>08123'

# Installed before the page's scripts: flags any script the caller ID could run, and keeps
# every siaga:card detail the console dispatches.
WATCH_PAGE = """
window.__xss = 0;
window.__cards = [];
document.addEventListener("siaga:card", (e) => window.__cards.push(e.detail));
"""


@pytest.fixture(scope="module")
def center(tmp_path_factory: pytest.TempPathFactory,
           asterisk_install) -> Iterator[SiagaProcess]:  # noqa: ANN001
    """`siaga up` for this module; callers wait 10 minutes rather than overflow."""
    with running_center(tmp_path_factory.mktemp("console-card"),
                        queue={"overflow_seconds": 600}) as server:
        yield server


class EventStream:
    """Another operator's push stream, read raw: every byte that page would get."""

    def __init__(self, server: SiagaProcess, extension: str, password: str) -> None:
        self.sock = open_push_stream(server.center.http.host, server.center.http.port,
                                     extension, password)
        self.received = b""

    def read(self) -> bytes:
        """Everything received so far."""
        self.sock.setblocking(False)
        try:
            while chunk := self.sock.recv(65536):
                self.received += chunk
        except BlockingIOError:
            pass
        finally:
            self.sock.setblocking(True)
        return self.received

    def close(self) -> None:
        self.sock.close()


def log_in(driver, base: str, extension: str, password: str) -> None:  # noqa: ANN001
    from selenium.webdriver.common.by import By

    driver.get(base + "/console")
    wait_for(lambda: "/login" in driver.current_url, 10, "the login page")
    driver.find_element(By.ID, "extension").send_keys(extension)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "login").click()


def test_given_an_operator_on_the_console_when_a_hostile_citizen_calls_then_the_card_rings_first(
        center: SiagaProcess, phones, tmp_path: Path) -> None:  # noqa: ANN001
    """Operator 201 logs in on the page and on the phone. The desk's buttons pause and
    unpause the queue member as the feature codes do (AMI's QueueMemberPause says so). A
    citizen whose From holds markup calls 112 and presses 1: before 201 answers, 201's page
    shows the card (the cleaned number as text, category police, a wait counting), the
    ``siaga:card`` event carries it and no script ran; 202's push stream never carries
    it. Answered, the card says talking; hung up, ended. The callback then owed, rung with
    "call back now", rings 201's phone first with a callback's card and the number owed."""
    from selenium.webdriver.common.by import By

    conf = center.center
    creds = ensure_credentials(conf)
    base = f"http://{conf.http.host}:{conf.http.port}"
    sip = f"{conf.sip.host}:{conf.sip.port}"
    me, other = conf.operators[0].extension, conf.operators[1].extension
    operator = phones.extension(me, creds.password(me), sip)
    watch = center.ami()
    theirs = EventStream(center, other, creds.console_passwords[other])

    def pumped(check):  # noqa: ANN001, ANN202
        def predicate() -> object:
            phones.stack.pump(20)
            return settled(check)()
        return predicate

    def paused(reason: str | None) -> list[dict[str, str]]:
        fields = {"Paused": "1", "PausedReason": reason} if reason else {"Paused": "0"}
        return watch.matching("QueueMemberPause", Interface=f"PJSIP/{me}", **fields)

    try:
        with chromium() as browser:
            browser.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument",
                                    {"source": WATCH_PAGE})
            log_in(browser, base, me, creds.console_passwords[me])
            wait_for(settled(lambda: browser.current_url.endswith("/console")
                             and browser.find_element(By.TAG_NAME, "body").get_attribute(
                                 "data-loaded")), 15, "the console's snapshot")
            desk = browser.find_element(By.ID, "desk")

            def desk_is(state: str, reason: str = "") -> object:
                return pumped(lambda: desk.get_attribute("data-state") == state
                              and desk.get_attribute("data-reason") == reason)

            def click(button_id: str) -> None:
                wait_for(settled(lambda: browser.find_element(By.ID, button_id).is_enabled()),
                         10, f"{button_id} enabled")
                browser.find_element(By.ID, button_id).click()

            def enabled(*button_ids: str) -> list[bool]:
                return [browser.find_element(By.ID, b).is_enabled() for b in button_ids]

            # Available (a desk starts logged in): "log in" and "resume" would change nothing
            # and are greyed. Logged out: only "log in" is offered.
            wait_for(desk_is("available"), 15, "the desk available at start")
            assert enabled("desk-login", "desk-logout", "desk-pause-meal",
                           "desk-unpause") == [False, True, True, False]
            click("desk-logout")
            wait_for(desk_is("logged out"), 15, "the desk logged out")
            assert enabled("desk-login", "desk-logout", "desk-pause-meal",
                           "desk-unpause") == [True, False, False, False]
            # The desk's login: the queue member unpaused as *45 does (reason logged-in).
            click("desk-login")
            wait_for(lambda: watch.matching("QueueMemberPause", Interface=f"PJSIP/{me}",
                                            Paused="0", PausedReason="logged-in"),
                     15, "the login's QueueMemberPause")
            wait_for(desk_is("available"), 15, "the desk available")

            # The feature code *462 pauses for a meal; the page follows it.
            code = operator.call("*462")
            code.wait_disconnected(15)
            wait_for(lambda: paused("meal"), 15, "*462's pause")
            wait_for(desk_is("paused", "meal"), 15, "the page showing the code's pause")
            assert browser.find_element(By.ID, "desk-reason").text == "makan"
            # Paused for a meal: resume, log out or another reason; not this one again.
            assert enabled("desk-login", "desk-logout", "desk-pause-meal", "desk-pause-break",
                           "desk-unpause") == [False, True, False, True, True]
            # The button resumes it, and pauses with another reason: the same AMI events.
            click("desk-unpause")
            wait_for(lambda: paused(None), 15, "the button's unpause")
            wait_for(desk_is("available"), 15, "the desk available again")
            click("desk-pause-briefing")
            wait_for(lambda: paused("briefing"), 15, "the button's pause for a briefing")
            wait_for(desk_is("paused", "briefing"), 15, "the page showing the pause")
            click("desk-unpause")
            wait_for(lambda: len(paused(None)) >= 2, 15, "the second unpause")
            wait_for(desk_is("available"), 15, "available for the call")

            # The hostile citizen: percent-encoded markup in the From user.
            citizen = phones._keep(Phone(phones.stack, quote(HOSTILE, safe=""), server=sip))
            call = citizen.call(conf.hotline[0])
            call.wait_state(CallState.CONFIRMED, 15)
            call.send_dtmf("1")
            ringing = operator.wait_incoming(40)  # rings; not answered yet
            card = browser.find_element(By.ID, "card")
            wait_for(pumped(lambda: card.get_attribute("data-state") == "ringing"), 15,
                     "the card while the phone rings")
            linkedid = card.get_attribute("data-linkedid")
            assert browser.find_element(By.ID, "card-caller").text == cleaned(HOSTILE)
            category = browser.find_element(By.ID, "card-category")
            assert category.get_attribute("data-value") == "police"
            assert "polisi" in category.text
            assert browser.find_element(By.ID, "card-dialed").text == conf.hotline[0]
            assert browser.find_element(By.ID, "card-origin").get_attribute(
                "data-kind") == "hotline"
            first_wait = browser.find_element(By.ID, "card-wait").text
            assert re.fullmatch(r"\d+:\d\d", first_wait), first_wait
            wait_for(pumped(lambda: browser.find_element(By.ID, "card-wait").text
                            != first_wait), 5, "the wait counting on")
            assert desk.get_attribute("data-state") == "ringing"
            detail = browser.execute_script("return window.siagaCard")
            assert detail["linkedid"] == linkedid and detail["state"] == "ringing"
            assert detail["caller_number"] == cleaned(HOSTILE)
            assert detail["category"] == "police" and detail["dialed"] == conf.hotline[0]
            assert detail["operator_channel"].startswith(f"PJSIP/{me}-")
            assert detail["citizen_channel"] and detail["queued_at"] is not None
            assert detail["origin"] == {"kind": "hotline", "incident_id": None,
                                        "device": None}
            assert browser.execute_script("return window.__cards")[-1] == detail
            # Nothing the caller sent ran or became markup.
            assert browser.execute_script("return window.__xss") == 0
            assert not card.find_elements(By.CSS_SELECTOR, "img, script")
            update = os.environ.get("SIAGA_UPDATE_SCREENSHOTS") == "1"
            browser.save_screenshot(str(SCREENSHOT if update else tmp_path / SCREENSHOT.name))

            ringing.answer()
            ringing.wait_confirmed(10)
            wait_for(pumped(lambda: card.get_attribute("data-state") == "talking"), 15,
                     "the card talking once answered")
            wait_for(desk_is("on call"), 10, "the desk on a call")
            call.hangup()
            wait_for(pumped(lambda: card.get_attribute("data-state") == "ended"), 15,
                     "the card ended")
            states = [c["state"] for c in browser.execute_script("return window.__cards")
                      if c and c["linkedid"] == linkedid]
            assert states[0] == "ringing" and states[-1] == "ended" and "talking" in states
            assert browser.execute_script("return window.__xss") == 0

            # The citizen hung up right after the answer: a callback is owed. "Call back
            # now" rings my phone first (the card says callback), then the citizen's.
            button = wait_for(pumped(lambda: [
                b for b in browser.find_elements(By.CSS_SELECTOR, "#owed button.call-back-now")
                if b.is_enabled()]), 15, "the owed callback's button")[0]
            button.click()
            back = operator.wait_incoming(20)
            wait_for(pumped(lambda: card.get_attribute("data-state") == "ringing"
                            and card.get_attribute("data-linkedid") != linkedid), 15,
                     "the callback's card while my phone rings")
            assert browser.find_element(By.ID, "card-origin").get_attribute(
                "data-kind") == "callback"
            # The number owed the call, before the citizen is even dialled.
            assert browser.find_element(By.ID, "card-caller").text == cleaned(HOSTILE)
            back.answer()
            back.wait_confirmed(10)
            wait_for(pumped(lambda: card.get_attribute("data-state") == "talking"), 15,
                     "the callback's card once I answer")
            back.hangup()
            wait_for(pumped(lambda: card.get_attribute("data-state") == "ended"), 15,
                     "the callback's card ended")

        # Operator 202's stream, open all along, got its own desk and the shared lists
        # (the caller waiting, by number) but never 201's card.
        received = theirs.read()
        assert b'"desk"' in received and f'"extension":"{other}"'.encode() in received
        # As a JSON string: a linkedid is "<epoch>.<n>", and the stream's timestamps (bare
        # numbers, e.g. 1796655390.84) hold it as a substring.
        assert f'"{linkedid}"'.encode() not in received
        assert f"PJSIP/{me}-".encode() not in received
    finally:
        theirs.close()
        watch.close()
