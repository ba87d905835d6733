"""Actions on the operator's own call from the console (``/console/api/call``), against the
whole center (`siaga up`) with real phones: each proven by what the phones hear.

A citizen calls 112 and presses 1, operator 201 answers on the phone, and the operator's
console session (logged in through /login, the page's CSRF token) acts on the call: put
through blind, consult then cancel / hand over / three-way, leave the three-way, hold and
unhold; another operator and hostile values are refused and change nothing.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
from sqlalchemy import select

from dispatcher.calllog.db import make_engine, make_sessionmaker, transaction
from dispatcher.calllog.models import Call as LoggedCall
from dispatcher.credentials import ensure_credentials
from pbx.phone import tones
from pbx.phone.events import CallState
from tests.e2e.hotline_helpers import Answered, answer_as_operator, wait_two_way_audio
from tests.harness import AmiWatch, SiagaProcess, running_center, wait_for
from tests.phones import AGENCY_TONE

pytestmark = pytest.mark.asterisk

# The README's picture, rewritten only with SIAGA_UPDATE_SCREENSHOTS=1 (else in tmp_path).
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "screenshots" / "console-actions.png"


@pytest.fixture(scope="module")
def center_server(tmp_path_factory: pytest.TempPathFactory,
                  asterisk_install) -> Iterator[SiagaProcess]:  # noqa: ANN001
    """The whole center on free ports, shared by this module's tests."""
    with running_center(tmp_path_factory.mktemp("console-actions")) as proc:
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
            if "0 active channels" not in watch.command("core show channels count"):
                watch.command("channel request hangup all")
            wait_for(lambda: "0 active channels" in watch.command("core show channels count"),
                     15, "no channel left")
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


def test_given_a_call_when_held_and_resumed_then_silence_then_both_talk_again(
        console: Console, ami: AmiWatch, phones) -> None:  # noqa: ANN001
    """hold: the citizen no longer hears the operator (music on hold); unhold: they hear
    each other again."""
    answered, linkedid = take_call(phones, ami, "0811000005")
    status, doc = console.act(linkedid, "hold")
    assert status == 200, doc
    wait_for(lambda: console.act(linkedid, "hold")[0] == 409, 10, "the call held")
    assert hears_nothing_of(phones, answered.citizen_call, answered.operator_call)
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


def test_given_the_page_when_police_clicked_and_nobody_answers_then_the_fallback_shows(
        center_server: SiagaProcess, ami: AmiWatch, phones, tmp_path: Path) -> None:  # noqa: ANN001
    """In Chromium (English page): the card's call gets the agency buttons; a click on
    "Police" with no police phone up puts the citizen through; the card shows the group's
    failure and the fallback ringing as it happens, then answered once the fallback phone
    answers; citizen and fallback hear each other."""
    from selenium.webdriver.common.by import By

    from tests.browser import chromium, settled

    center = center_server.center
    creds = ensure_credentials(center)
    base = f"http://{center.http.host}:{center.http.port}"
    operator = center.operators[0].extension
    police = center.agency("police")
    fallback = phones.extension(police.fallback, creds.password(police.fallback))
    with chromium() as driver:
        driver.get(base + "/login?next=/console%3Flang%3Den")
        driver.find_element(By.ID, "extension").send_keys(operator)
        driver.find_element(By.ID, "password").send_keys(creds.console_passwords[operator])
        driver.find_element(By.ID, "login").click()
        wait_for(settled(lambda: driver.find_element(By.ID, "card-actions")
                         .get_attribute("data-loaded")), 15, "the console's actions")
        answered, linkedid = take_call(phones, ami, "0811000007")
        # The card (console.js) announces the operator's call; until it is merged here the
        # test announces it the same way.
        driver.execute_script(
            "const detail = {linkedid: arguments[0], citizen_channel: arguments[1],"
            " operator_channel: arguments[2], state: 'talking'};"
            "window.siagaCard = detail; document.getElementById('card').hidden = false;"
            "document.dispatchEvent(new CustomEvent('siaga:card', {detail}));",
            linkedid, answered.citizen_channel, answered.operator_channel)
        # The server's view of the call reaches the page: what does not fit is greyed out.
        wait_for(settled(lambda: driver.find_elements(
            By.CSS_SELECTOR, "#card-actions[data-state=talking]")), 10, "the call talking")
        bar = {b.get_attribute("data-action"): b.is_enabled() for b in
               driver.find_elements(By.CSS_SELECTOR, "#call-buttons button")}
        assert bar == {"handover": False, "cancel": False, "threeway": False, "leave": False,
                       "hold": True, "unhold": False, "hangup": True}, bar
        button = wait_for(settled(lambda: [b for b in driver.find_elements(
            By.CSS_SELECTOR, "#agency-buttons button[data-action=blind]")
            if b.text == "Police" and b.is_enabled()]), 10, "the Police button")
        button[0].click()  # type: ignore[index]

        def shown(state: str) -> object:
            return settled(lambda: driver.find_elements(
                By.CSS_SELECTOR, f"#handoffs li[data-agency=police][data-state={state}]"))

        wait_for(shown("fallback"), 15, "the group's failure on the card")
        fallback_call = fallback.answer(30)
        wait_for(shown("answered"), 15, "the fallback's answer on the card")
        answered.operator_call.wait_disconnected(10)
        heard = wait_two_way_audio(phones, answered.citizen_call, fallback_call)
        assert heard.both, heard
        text = driver.find_element(By.ID, "handoffs").text
        assert "Police" in text and "answered" in text, text
        update = os.environ.get("SIAGA_UPDATE_SCREENSHOTS") == "1"
        driver.save_screenshot(str(SCREENSHOT if update else tmp_path / SCREENSHOT.name))
