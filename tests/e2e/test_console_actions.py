"""Actions on the operator's own call from the console (``/console/api/call``), against the
whole center (`siaga up`) with real phones: each proven by what the phones hear.

A citizen calls 112 and presses 1, operator 201 answers on the phone, and the operator's
console session (logged in through /login, the page's CSRF token) acts on the call: put
through blind, consult then cancel / hand over / three-way, leave the three-way, hold and
unhold; another operator and hostile values are refused and change nothing.

Then the console as one page in a real Chromium (one page for the module, operator 201,
English): the card comes from the server's push while the phone rings, the incident is
opened from the card, "Police" is clicked and the police phone talks with the citizen; the
consultation's and the three-way's buttons are clicked; a group that does not answer shows
its fallback on the card. Nothing on the page is faked: every card is console.js's.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
from sqlalchemy import select

from dispatcher.calllog.db import make_engine, make_sessionmaker, transaction
from dispatcher.calllog.models import Call as LoggedCall
from dispatcher.credentials import ensure_credentials
from ivr.hold import HOLD_TONE_HZ
from pbx.phone import tones
from pbx.phone.events import CallState
from tests.e2e.hotline_helpers import Answered, answer_as_operator, wait_two_way_audio
from tests.e2e.test_console_location import PIDF_CIRCLE, _citizen_call
from tests.harness import AmiWatch, SiagaProcess, free_port, running_center, wait_for
from tests.phones import AGENCY_TONE

pytestmark = pytest.mark.asterisk

# The README's picture, rewritten only with SIAGA_UPDATE_SCREENSHOTS=1 (else in tmp_path).
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
SCREENSHOT = SCREENSHOTS / "console-actions.png"

# Installed before the page's scripts: counts the push streams the page opens.
WATCH_PAGE = """
window.__streams = 0;
window.EventSource = class extends window.EventSource {
  constructor(...args) { super(...args); window.__streams += 1; }
};
"""


@pytest.fixture(scope="module")
def center_server(tmp_path_factory: pytest.TempPathFactory,
                  asterisk_install) -> Iterator[SiagaProcess]:  # noqa: ANN001
    """The whole center on free ports, shared by this module's tests."""
    # The SIP location port: a citizen's PIDF-LO reaches the card (the page's screenshot).
    with running_center(tmp_path_factory.mktemp("console-actions"), console={
            "sip_location_port": free_port(socket.SOCK_DGRAM)}) as proc:
        yield proc


@pytest.fixture(scope="module")
def phone_directory(center_server: SiagaProcess):  # noqa: ANN201 (tests.phones.Directory)
    """Phones register at this module's center (not the session's bare Asterisk)."""
    from tests.phones import Credentials, Directory

    center = center_server.center
    creds = ensure_credentials(center)

    def cred(ext: str) -> Credentials:
        return Credentials(ext, creds.password(ext))

    return Directory(
        server=f"{center.sip.host}:{center.sip.port}", hotline=center.hotline[0],
        operators=[cred(op.extension) for op in center.operators],
        agencies={a.key: [cred(e) for e in a.extensions] for a in center.agencies},
        extensions={ext: cred(ext) for ext in center.extensions()})


@pytest.fixture
def ami(center_server: SiagaProcess) -> Iterator[AmiWatch]:
    """An AMI watch on the center's Asterisk; every channel is hung up after the test."""
    watch = center_server.ami()
    try:
        yield watch
    finally:
        try:
            if watch.channels() != 0:
                watch.command("channel request hangup all")
            try:
                wait_for(lambda: watch.channels() == 0, 15, "no channel left")
            except TimeoutError as exc:
                raise TimeoutError(f"{exc}; still up:\n"
                                   f"{watch.command('core show channels concise')}") from exc
        finally:
            watch.close()


class Console:
    """An operator's console session over HTTP: the cookie from /login, the CSRF token
    from the page's ``<meta name="siaga-csrf">``."""

    def __init__(self, server: SiagaProcess, extension: str) -> None:
        self.host, self.port = server.center.http.host, server.center.http.port
        self.cookie = ""
        password = ensure_credentials(server.center).console_passwords[extension]
        form = urlencode({"extension": extension, "password": password,
                          "next": "/console"}).encode()
        status, _headers, _body = self.request(
            "POST", "/login", form, {"Content-Type": "application/x-www-form-urlencoded"})
        assert status == 302 and self.cookie, status
        _status, _headers, page = self.request("GET", "/console")
        found = re.search(rb'<meta name="siaga-csrf" content="([0-9a-f]+)">', page)
        assert found, page[:300]
        self.csrf = found.group(1).decode()

    def request(self, method: str, path: str, body: bytes = b"",
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=15)
        sent = dict(headers or {})
        if self.cookie:
            sent["Cookie"] = f"siaga_session={self.cookie}"
        conn.request(method, path, body=body, headers=sent)
        response = conn.getresponse()
        data = response.read()
        conn.close()
        for name, value in response.getheaders():
            if name.lower() == "set-cookie" and value.startswith("siaga_session="):
                self.cookie = value.split(";")[0].split("=", 1)[1]
        return response.status, dict(response.getheaders()), data

    def act(self, linkedid: str, action: str, agency: str | None = None,
            body: bytes | None = None) -> tuple[int, dict]:
        """POST an action; (status, JSON answer)."""
        document = {"linkedid": linkedid, "action": action}
        if agency is not None:
            document["agency"] = agency
        status, _headers, data = self.request(
            "POST", "/console/api/call", body if body is not None else json.dumps(document)
            .encode(), {"Content-Type": "application/json", "X-Siaga-CSRF": self.csrf,
                        "Origin": f"http://{self.host}:{self.port}"})
        return status, json.loads(data)

    def views(self) -> dict:
        """The push channel's first snapshot (every view whole), read from /events."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=15)
        conn.request("GET", "/events", headers={"Cookie": f"siaga_session={self.cookie}",
                                                "Accept": "text/event-stream"})
        response = conn.getresponse()
        try:
            assert response.status == 200, response.status
            event = ""
            while True:
                line = response.fp.readline().decode().rstrip("\n")
                if line.startswith("event: "):
                    event = line[len("event: "):]
                elif line.startswith("data: ") and event == "snapshot":
                    return json.loads(line[len("data: "):])["views"]
        finally:
            conn.close()

    def handoffs(self, linkedid: str) -> list[dict]:
        """The call's hand-offs as the push view ``handoffs`` shows them."""
        return self.views().get("handoffs", {}).get(linkedid, [])


@pytest.fixture(scope="module")
def console(center_server: SiagaProcess) -> Console:
    """Operator 201's console session."""
    return Console(center_server, center_server.center.operators[0].extension)


def take_call(phones, ami: AmiWatch, caller: str) -> tuple[Answered, str]:  # noqa: ANN001
    """A citizen calls 112 and presses 1 (police); operator 201 answers; both talk.
    The call's answer and its linkedid."""
    operator = phones.operator(1)
    citizen = phones.citizen(caller_id=caller)
    call = citizen.call(phones.directory.hotline)
    call.wait_confirmed(10)
    call.send_dtmf("1")
    answered = answer_as_operator(ami, citizen, call, operator, timeout=30)
    answered.operator_call.wait_confirmed(10)
    heard = wait_two_way_audio(phones, call, answered.operator_call)
    assert heard.both, heard
    return answered, answered.connect["Linkedid"]


def hears_nothing_of(phones, listener, speaker) -> bool:  # noqa: ANN001
    """``listener`` does not hear ``speaker``'s tone (both calls are up)."""
    speaker.play_tone(AGENCY_TONE)
    path = phones.recording(f"{listener.phone.name}-{listener.id}-not-hearing")
    listener.start_recording(path)
    heard = listener.wait_heard(1.3, 10)
    speaker.stop_audio()
    listener.stop_recording()
    return not tones.hears_tone(heard, AGENCY_TONE, skip_s=0.3)


def hold_tone_fraction(phones, listener) -> float:  # noqa: ANN001
    """The share of 3.5 s (more than one cycle of the hold sound) in which ``listener`` hears
    the hold sound's 425 Hz beep."""
    path = phones.recording(f"{listener.phone.name}-{listener.id}-held")
    listener.start_recording(path)
    heard = listener.wait_heard(3.5, 10)
    listener.stop_recording()
    return tones.tone_fraction(heard, HOLD_TONE_HZ)


def number_calls(server: SiagaProcess, number: str) -> int:
    """How many ended calls from ``number`` the call log holds."""
    engine = make_engine(server.center.database_url)
    try:
        with transaction(make_sessionmaker(engine)) as session:
            return len(session.scalars(select(LoggedCall).where(
                LoggedCall.caller_number == number,
                LoggedCall.ended_at.is_not(None))).all())
    finally:
        engine.dispose()


def agency_legs(server: SiagaProcess, linkedid: str) -> list[str]:
    """The agencies the call log's journey of ``linkedid`` shows the citizen talking to."""
    engine = make_engine(server.center.database_url)
    try:
        with transaction(make_sessionmaker(engine)) as session:
            call = session.scalars(select(LoggedCall).where(
                LoggedCall.linkedid == linkedid)).first()
            if call is None:
                return []
            return [leg.agency.code for leg in call.legs
                    if leg.kind == "agency_talk" and leg.agency is not None]
    finally:
        engine.dispose()


def test_given_an_answered_call_when_put_through_blind_to_police_then_citizen_talks_to_police(
        center_server: SiagaProcess, console: Console, ami: AmiWatch, phones) -> None:  # noqa: ANN001
    """blind police: the police phone rings and answers, the operator's phone is free, the
    citizen and the police hear each other; the hand-off view shows police answered, and
    the call's journey in the log shows the citizen talking with police."""
    police = phones.agency("police")
    answered, linkedid = take_call(phones, ami, "0811000001")
    clicked = time.monotonic()
    status, doc = console.act(linkedid, "blind", "police")
    replied = time.monotonic()
    assert status == 200, doc
    assert doc["action"] == "blind" and doc["agency"] == "police"
    police_call = police.wait_incoming(15)
    rang = time.monotonic()
    police_call.answer()
    police_call.wait_confirmed(10)
    print(f"console blind: answered in {1000 * (replied - clicked):.0f} ms, police's phone "
          f"rang {1000 * (rang - clicked):.0f} ms after the request")
    answered.operator_call.wait_disconnected(10)
    heard = wait_two_way_audio(phones, answered.citizen_call, police_call)
    assert heard.both, heard
    shown = wait_for(lambda: [h for h in console.handoffs(linkedid)
                              if h["state"] == "answered"], 10, "the hand-off answered")
    assert shown[0]["agency"] == "police" and shown[0]["mode"] == "blind"  # type: ignore[index]
    answered.citizen_call.hangup()  # the journey is logged whole once the call ends
    wait_for(lambda: "police" in agency_legs(center_server, linkedid), 15,
             "the journey's talk with police")


def test_given_a_consultation_when_cancelled_then_the_operator_is_back_with_the_citizen(
        console: Console, ami: AmiWatch, phones) -> None:  # noqa: ANN001
    """consult police: the citizen is held (hears neither side), operator and police talk;
    cancel: the police leg is hung up and operator and citizen hear each other again."""
    police = phones.agency("police")
    answered, linkedid = take_call(phones, ami, "0811000002")
    status, doc = console.act(linkedid, "consult", "police")
    assert status == 200, doc
    police_call = police.answer(15)
    talk = wait_two_way_audio(phones, answered.operator_call, police_call)
    assert talk.both, talk
    assert hears_nothing_of(phones, answered.citizen_call, police_call)
    assert answered.citizen_call.state == CallState.CONFIRMED

    status, doc = console.act(linkedid, "cancel")
    assert status == 200, doc
    police_call.wait_disconnected(10)
    back = wait_two_way_audio(phones, answered.citizen_call, answered.operator_call)
    assert back.both, back
    assert [h["state"] for h in console.handoffs(linkedid)] == ["cancelled"]
    # Talking again, as the console sees it too: it may consult again.
    status, doc = console.act(linkedid, "consult", "fire")
    assert status == 200, doc


def test_given_a_consultation_when_handed_over_then_citizen_talks_to_police_and_operator_is_free(
        console: Console, ami: AmiWatch, phones) -> None:  # noqa: ANN001
    """consult police, police answers, hand over: the operator's phone call ends, the
    citizen and the police hear each other."""
    police = phones.agency("police")
    answered, linkedid = take_call(phones, ami, "0811000003")
    assert console.act(linkedid, "handover")[0] == 409  # nothing to hand over yet
    status, doc = console.act(linkedid, "consult", "police")
    assert status == 200, doc
    police_call = police.answer(15)
    wait_for(lambda: console.act(linkedid, "handover")[0] == 200, 10, "the hand-over")
    answered.operator_call.wait_disconnected(10)
    heard = wait_two_way_audio(phones, answered.citizen_call, police_call)
    assert heard.both, heard
    assert [h["state"] for h in console.handoffs(linkedid)] == ["handed_over"]


def test_given_a_consultation_when_made_three_way_and_the_operator_leaves_then_the_others_talk(
        console: Console, ami: AmiWatch, phones) -> None:  # noqa: ANN001
    """consult police, three-way: citizen, operator and police in one conference (the
    citizen hears police); leave: the operator's phone is free, citizen and police still
    hear each other."""
    police = phones.agency("police")
    answered, linkedid = take_call(phones, ami, "0811000004")
    assert console.act(linkedid, "consult", "police")[0] == 200
    police_call = police.answer(15)
    wait_for(lambda: console.act(linkedid, "threeway")[0] == 200, 10, "the three-way call")
    wait_for(lambda: ami.matching("ConfbridgeJoin", Conference=linkedid), 10,
             "the conference")
    three = wait_two_way_audio(phones, answered.citizen_call, police_call)
    assert three.both, three

    wait_for(lambda: console.act(linkedid, "leave")[0] == 200, 10, "leaving")
    answered.operator_call.wait_disconnected(10)
    assert police_call.state == CallState.CONFIRMED
    heard = wait_two_way_audio(phones, answered.citizen_call, police_call)
    assert heard.both, heard


def test_given_a_call_when_three_way_at_once_then_police_joins_and_the_card_says_so(
        console: Console, ami: AmiWatch, phones) -> None:  # noqa: ANN001
    """threeway police straight from the call: police's phone rings and answers into the
    call's conference; citizen and police hear each other; the hand-off shows as a
    three-way answered; the operator leaves and the two stay."""
    police = phones.agency("police")
    answered, linkedid = take_call(phones, ami, "0811000009")
    status, doc = console.act(linkedid, "threeway", "police")
    assert status == 200, doc
    police_call = police.answer(15)
    heard = wait_two_way_audio(phones, answered.citizen_call, police_call)
    assert heard.both, heard
    shown = wait_for(lambda: [h for h in console.handoffs(linkedid)
                              if h["state"] == "answered"], 10, "the three-way answered")
    assert shown[0]["mode"] == "threeway"  # type: ignore[index]
    wait_for(lambda: console.act(linkedid, "leave")[0] == 200, 10, "leaving")
    answered.operator_call.wait_disconnected(10)
    still = wait_two_way_audio(phones, answered.citizen_call, police_call)
    assert still.both, still


def test_given_a_call_when_held_and_resumed_then_the_hold_tone_then_both_talk_again(
        console: Console, ami: AmiWatch, phones) -> None:  # noqa: ANN001
    """hold: the citizen no longer hears the operator but hears the hold sound's beep (never
    silence, which a caller takes for a dropped line); unhold: they hear each other again,
    and the beep is gone."""
    answered, linkedid = take_call(phones, ami, "0811000005")
    assert hold_tone_fraction(phones, answered.citizen_call) == 0  # talking: no beep
    status, doc = console.act(linkedid, "hold")
    assert status == 200, doc
    wait_for(lambda: console.act(linkedid, "hold")[0] == 409, 10, "the call held")
    assert hears_nothing_of(phones, answered.citizen_call, answered.operator_call)
    # The beep is 0.4 s of every 3 s: in 3.5 s at least one whole beep, about 11 % of it.
    assert hold_tone_fraction(phones, answered.citizen_call) >= 0.06
    # The operator's leg waits on while the citizen is held (its loop went round twice).
    wait_for(lambda: len([e for e in ami.matching("Newexten", Context="siaga-console",
                                                  Exten="holding", Application="Wait")
                          if e.get("Channel") == answered.operator_channel]) >= 3, 15,
             "the operator's leg waiting on")
    assert answered.operator_call.state == CallState.CONFIRMED
    status, doc = console.act(linkedid, "unhold")
    assert status == 200, doc
    back = wait_two_way_audio(phones, answered.citizen_call, answered.operator_call)
    assert back.both, back
    assert hold_tone_fraction(phones, answered.citizen_call) == 0
    # Talking again, as the console sees it too: it may hold again; hang up ends it.
    assert console.act(linkedid, "hold")[0] == 200
    wait_for(lambda: console.act(linkedid, "hold")[0] == 409, 10, "the call held again")
    assert console.act(linkedid, "unhold")[0] == 200
    wait_for(lambda: console.act(linkedid, "hangup")[0] == 200, 10, "the hang-up")
    answered.citizen_call.wait_disconnected(10)
    answered.operator_call.wait_disconnected(10)


def test_given_a_held_citizen_when_the_operators_phone_hangs_up_then_the_citizen_is_queued_again(
        console: Console, ami: AmiWatch, phones) -> None:  # noqa: ANN001
    """hold, then the operator's phone hangs up (a slip, a crash): the citizen is not left
    with music for ever but goes back to the queue, and an operator answers them again."""
    answered, linkedid = take_call(phones, ami, "0811000008")
    assert console.act(linkedid, "hold")[0] == 200
    wait_for(lambda: console.act(linkedid, "hold")[0] == 409, 10, "the call held")
    answered.operator_call.hangup()
    answered.operator_call.wait_disconnected(10)
    again = answered.operator.answer(30)
    again.wait_confirmed(10)
    heard = wait_two_way_audio(phones, answered.citizen_call, again)
    assert heard.both, heard


def test_given_another_desk_or_hostile_values_when_acting_then_refused_and_nothing_changes(
        center_server: SiagaProcess, console: Console, ami: AmiWatch, phones) -> None:  # noqa: ANN001
    """Operator 202 asks to hang up 201's call: 403, not_your_call. 201 sends an agency with
    CR/LF, an unknown agency, an unknown action, a linkedid with CR/LF: each a 4xx with a
    reason. The call's channels are still up, no AMI Hangup/Redirect/Bridge was seen, and
    citizen and operator still hear each other."""
    answered, linkedid = take_call(phones, ami, "0811000006")
    other = Console(center_server, center_server.center.operators[1].extension)
    status, doc = other.act(linkedid, "hangup")
    assert (status, doc["error"]) == (403, "not_your_call"), doc
    refusals = [
        console.act(linkedid, "blind", "police\r\nAction: Hangup\r\nChannel: PJSIP/201"),
        console.act(linkedid, "blind", "navy"),
        console.act(linkedid, "explode"),
        console.act(f"{linkedid}\r\nAction: Hangup", "hangup"),
        console.act(linkedid, "blind", body=b'{"linkedid": 1, "action": ["blind"]}'),
    ]
    codes = [(status, doc.get("error")) for status, doc in refusals]
    assert codes == [(422, "unknown_agency"), (422, "unknown_agency"), (400, "unknown_action"),
                     (422, "invalid_field"), (422, "invalid_field")], codes
    assert all(doc.get("reason") for _status, doc in refusals)
    mine = {answered.citizen_channel, answered.operator_channel}
    assert not [e for e in ami.events if e["Event"] in ("Hangup", "BridgeLeave")
                and e.get("Channel") in mine]
    assert answered.citizen_call.state == CallState.CONFIRMED
    still = wait_two_way_audio(phones, answered.citizen_call, answered.operator_call)
    assert still.both, still


@pytest.fixture(scope="module")
def page(center_server: SiagaProcess) -> Iterator[object]:
    """Operator 201's console in Chromium (English), logged in through /login, loaded, with
    the card's actions ready; shared by this module's browser tests."""
    from selenium.webdriver.common.by import By

    from tests.browser import chromium, settled

    center = center_server.center
    operator = center.operators[0].extension
    password = ensure_credentials(center).console_passwords[operator]
    with chromium() as driver:
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": WATCH_PAGE})
        driver.get(f"http://{center.http.host}:{center.http.port}/login?next=/console%3Flang%3Den")
        driver.find_element(By.ID, "extension").send_keys(operator)
        driver.find_element(By.ID, "password").send_keys(password)
        driver.find_element(By.ID, "login").click()
        wait_for(settled(lambda: driver.find_element(By.TAG_NAME, "body").get_attribute(
            "data-loaded") and driver.find_element(By.ID, "card-actions")
            .get_attribute("data-loaded")), 15, "the console loaded")
        yield driver


def pumped(phones, check):  # noqa: ANN001, ANN201
    """``check`` on the page (settled), the phones' SIP stack kept running meanwhile."""
    from tests.browser import settled

    def predicate() -> object:
        phones.stack.pump(20)
        return settled(check)()
    return predicate


def card_rings(driver, phones, before: str | None) -> str:  # noqa: ANN001
    """Wait until the page's card (console.js, from the push) is a new call ringing; its
    linkedid."""
    from selenium.webdriver.common.by import By

    card = driver.find_element(By.ID, "card")
    wait_for(pumped(phones, lambda: card.get_attribute("data-state") == "ringing"
                    and card.get_attribute("data-linkedid") != before), 20,
             "the card while the phone rings")
    return card.get_attribute("data-linkedid")


def card_state(driver, phones, state: str) -> None:  # noqa: ANN001
    from selenium.webdriver.common.by import By

    card = driver.find_element(By.ID, "card")
    wait_for(pumped(phones, lambda: card.get_attribute("data-state") == state), 15,
             f"the card {state}")


def click(driver, phones, selector: str, text: str | None = None) -> None:  # noqa: ANN001
    """Click the enabled button ``selector`` (with that text, if given) on the page."""
    from selenium.webdriver.common.by import By

    found = wait_for(pumped(phones, lambda: [
        b for b in driver.find_elements(By.CSS_SELECTOR, selector)
        if b.is_enabled() and (text is None or b.text == text)]), 15, f"{selector} enabled")
    found[0].click()  # type: ignore[index]


def handoff_shown(driver, phones, agency: str, state: str) -> None:  # noqa: ANN001
    from selenium.webdriver.common.by import By

    wait_for(pumped(phones, lambda: driver.find_elements(
        By.CSS_SELECTOR, f"#handoffs li[data-agency={agency}][data-state={state}]")), 15,
        f"the hand-off to {agency} {state} on the card")


def whole_page(driver, path: Path) -> None:  # noqa: ANN001
    """A screenshot of the whole page (the window as tall as the page, then back)."""
    size = driver.get_window_size()
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(size["width"], max(size["height"], height + 140))
    try:
        driver.save_screenshot(str(path))
    finally:
        driver.set_window_size(size["width"], size["height"])


def test_given_an_operator_on_the_console_when_a_citizen_calls_and_police_is_clicked_then_police_talks_with_the_citizen(  # noqa: E501
        center_server: SiagaProcess, console: Console, page, ami: AmiWatch, phones,  # noqa: ANN001
        tmp_path: Path) -> None:
    """The issue's first test, in Chromium, nothing faked. Operator 201's page holds one push
    stream. A citizen (who called once before, and whose phone sends its GPS fix in the
    INVITE) calls 112 and presses 1: while 201's phone rings, the page's card shows the
    number, category police and the wait counting. 201 answers on the phone; the card's
    location, history and incident panels fill; 201 opens the call's incident from the card
    and writes a note (the screenshot of the whole console), then clicks "Police": the police
    phone rings and answers, the operator's phone is free, citizen and police hear each
    other; the card shows the hand-off answered and the incident, handed_to_agency."""
    from selenium.webdriver.common.by import By

    driver = page
    number = "081355507777"  # PIDF_CIRCLE's caller
    police = phones.agency("police")
    operator = phones.operator(1)
    assert driver.execute_script("return window.__streams") == 1  # console.js's, shared
    before = driver.find_element(By.ID, "card").get_attribute("data-linkedid")

    # An earlier call from the number (answered by the menu, hung up): the card's history.
    first = _citizen_call(center_server, phones, number, PIDF_CIRCLE)
    first.wait_confirmed(15)
    first.hangup()
    first.wait_disconnected(10)
    wait_for(lambda: number_calls(center_server, number) >= 1, 20, "the earlier call logged")

    call = _citizen_call(center_server, phones, number, PIDF_CIRCLE)
    call.wait_confirmed(15)
    call.send_dtmf("1")
    ringing = operator.wait_incoming(30)
    linkedid = card_rings(driver, phones, before)
    assert driver.find_element(By.ID, "card-caller").text == number
    category = driver.find_element(By.ID, "card-category")
    assert category.get_attribute("data-value") == "police" and "police" in category.text
    wait = driver.find_element(By.ID, "card-wait").text
    assert re.fullmatch(r"\d+:\d\d", wait), wait
    wait_for(pumped(phones, lambda: driver.find_element(By.ID, "card-wait").text != wait), 5,
             "the wait counting on")
    assert ringing.state != CallState.CONFIRMED  # all of it before the answer

    ringing.answer()
    ringing.wait_confirmed(10)
    card_state(driver, phones, "talking")
    # The location the INVITE carried, the earlier call, the case form: all on the card.
    wait_for(pumped(phones, lambda: driver.execute_script(
        "const v = window.siagaCardMap; return v && v.marker && v.marker.getLatLng().lat")
        == -6.175392), 15, "the INVITE's location on the card's map")
    wait_for(pumped(phones, lambda: driver.find_elements(
        By.CSS_SELECTOR, "#card-history .history-calls li")), 15, "the earlier call")
    wait_for(pumped(phones, lambda: driver.find_element(
        By.CSS_SELECTOR, "#card-incident button[name=open]")), 15, "the case form")
    driver.find_element(By.CSS_SELECTOR, "#card-incident select[name=category] "
                                         "option[value=police]").click()
    driver.find_element(By.CSS_SELECTOR, "#card-incident input[name=address]").send_keys(
        "Jl. Medan Merdeka 1")
    driver.find_element(By.CSS_SELECTOR, "#card-incident button[name=open]").click()
    wait_for(pumped(phones, lambda: driver.find_element(
        By.CSS_SELECTOR, "#card-incident .incident-head")), 15, "the incident opened")
    driver.find_element(By.CSS_SELECTOR, "#card-incident textarea[name=note]").send_keys(
        "Theft at the monument's gate, suspect on foot")
    driver.find_element(By.CSS_SELECTOR, "#card-incident button[name=add-note]").click()
    wait_for(pumped(phones, lambda: driver.find_elements(
        By.CSS_SELECTOR, "#card-incident .note-text")), 15, "the note")
    update = os.environ.get("SIAGA_UPDATE_SCREENSHOTS") == "1"
    whole_page(driver, SCREENSHOTS / "console.png" if update else tmp_path / "console.png")

    click(driver, phones, "#agency-buttons button[data-action=blind][data-agency=police]",
          "Police")
    police_call = police.answer(15)
    police_call.wait_confirmed(10)
    ringing.wait_disconnected(10)
    heard = wait_two_way_audio(phones, call, police_call)
    assert heard.both, heard
    handoff_shown(driver, phones, "police", "answered")
    text = driver.find_element(By.ID, "handoffs").text
    assert "Police" in text and "answered" in text, text

    def handed() -> bool:
        status, _headers, data = console.request(
            "GET", f"/console/api/incident?linkedid={linkedid}")
        return status == 200 and json.loads(data)["incident"]["state"] == "handed_to_agency"

    wait_for(handed, 20, "the incident handed to the police")
    driver.execute_script("window.siagaIncident.reload()")
    wait_for(pumped(phones, lambda: driver.find_element(
        By.CSS_SELECTOR, "#card-incident .incident-head").get_attribute("data-state")
        == "handed_to_agency"), 15, "the card's incident handed to the police")
    incident_id = driver.find_element(By.CSS_SELECTOR, "#card-incident .incident-head"
                                      ).get_attribute("data-incident")
    # The open incidents' list (the push's console view) follows: handed to the police.
    wait_for(pumped(phones, lambda: driver.find_element(
        By.CSS_SELECTOR, f"#incidents tr[data-id='{incident_id}']").text.split()[2:4]
        == ["handed", "to"] and "police" in driver.find_element(
            By.CSS_SELECTOR, f"#incidents tr[data-id='{incident_id}']").text), 15,
        "the open incidents' list showing the hand-off")
    assert driver.execute_script("return window.__streams") == 1


def test_given_the_page_when_consult_then_cancel_then_three_way_then_leave_clicked_then_the_phones_hear_it(  # noqa: E501
        page, ami: AmiWatch, phones) -> None:  # noqa: ANN001
    """Clicks on the card, checked by what the phones hear: "Consult first" (police row)
    holds the citizen while operator and police talk; "Cancel" hangs up the police leg and
    operator and citizen talk again; "Three-way call" (police row) brings the police into
    the call's conference (citizen and police hear each other); "Leave" frees the
    operator's phone and the two talk on."""
    from selenium.webdriver.common.by import By

    driver = page
    police = phones.agency("police")
    before = driver.find_element(By.ID, "card").get_attribute("data-linkedid")
    operator = phones.operator(1)
    citizen = phones.citizen(caller_id="0811000011")
    call = citizen.call(phones.directory.hotline)
    call.wait_confirmed(10)
    call.send_dtmf("1")
    ringing = operator.wait_incoming(30)
    card_rings(driver, phones, before)
    ringing.answer()
    ringing.wait_confirmed(10)
    card_state(driver, phones, "talking")

    click(driver, phones, "#agency-buttons button[data-action=consult][data-agency=police]")
    consult = police.answer(15)
    talk = wait_two_way_audio(phones, ringing, consult)
    assert talk.both, talk
    assert hears_nothing_of(phones, call, consult)
    handoff_shown(driver, phones, "police", "answered")
    click(driver, phones, "#call-buttons button[data-action=cancel]")
    consult.wait_disconnected(10)
    back = wait_two_way_audio(phones, call, ringing)
    assert back.both, back
    handoff_shown(driver, phones, "police", "cancelled")

    click(driver, phones, "#agency-buttons button[data-action=threeway][data-agency=police]")
    joined = police.answer(15)
    three = wait_two_way_audio(phones, call, joined)
    assert three.both, three
    click(driver, phones, "#call-buttons button[data-action=leave]")
    ringing.wait_disconnected(10)
    assert joined.state == CallState.CONFIRMED
    still = wait_two_way_audio(phones, call, joined)
    assert still.both, still


def test_given_the_page_when_police_clicked_and_nobody_answers_then_the_fallback_shows(
        center_server: SiagaProcess, page, ami: AmiWatch, phones, tmp_path: Path) -> None:  # noqa: ANN001
    """In Chromium (English page): the card of the call ringing 201's phone (console.js,
    from the push) gets the agency buttons once answered; a click on "Police" with no police
    phone up puts the citizen through; the card shows the group's failure and the fallback
    ringing as it happens, then answered once the fallback phone answers; citizen and
    fallback hear each other."""
    from selenium.webdriver.common.by import By

    from tests.browser import settled

    driver = page
    center = center_server.center
    creds = ensure_credentials(center)
    police = center.agency("police")
    fallback = phones.extension(police.fallback, creds.password(police.fallback))
    before = driver.find_element(By.ID, "card").get_attribute("data-linkedid")
    answered, linkedid = take_call(phones, ami, "0811000007")
    card_state(driver, phones, "talking")
    assert driver.find_element(By.ID, "card").get_attribute("data-linkedid") == linkedid != before
    # The server's view of the call reaches the page: what does not fit is greyed out.
    wait_for(settled(lambda: driver.find_elements(
        By.CSS_SELECTOR, "#card-actions[data-state=talking]")), 10, "the call talking")
    bar = {b.get_attribute("data-action"): b.is_enabled() for b in
           driver.find_elements(By.CSS_SELECTOR, "#call-buttons button")}
    assert bar == {"handover": False, "cancel": False, "threeway": False, "leave": False,
                   "hold": True, "unhold": False, "hangup": True}, bar
    click(driver, phones, "#agency-buttons button[data-action=blind]", "Police")
    handoff_shown(driver, phones, "police", "fallback")
    fallback_call = fallback.answer(30)
    handoff_shown(driver, phones, "police", "answered")
    answered.operator_call.wait_disconnected(10)
    heard = wait_two_way_audio(phones, answered.citizen_call, fallback_call)
    assert heard.both, heard
    text = driver.find_element(By.ID, "handoffs").text
    assert "Police" in text and "answered" in text, text
    # Nothing on the card turned into an error when the call left the operator's phone.
    assert not driver.find_elements(By.CSS_SELECTOR, "#card .error"), [
        e.text for e in driver.find_elements(By.CSS_SELECTOR, "#card .error")]
    driver.execute_script("document.getElementById('card').scrollIntoView()")
    update = os.environ.get("SIAGA_UPDATE_SCREENSHOTS") == "1"
    driver.save_screenshot(str(SCREENSHOT if update else tmp_path / SCREENSHOT.name))
