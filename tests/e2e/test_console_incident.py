"""The call card's history and case work against the whole center (``siaga up``): real calls
from pjsua2 phones through the real Asterisk, the call log in the server's database, the
console page in a real Chromium.

One center for the module; one test walks a citizen's afternoon: three short calls, a fourth
that reaches operator 201, who sees the repeat-caller flag, writes notes (two of them
attacks on the page) and marks the call; then the server restarts and everything is still
there. The three first calls are real calls (each answered by the IVR and hung up), not rows
seeded in the database: the flag must count what the call log really records.
"""

from __future__ import annotations

import http.client
import json
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
from sqlalchemy import select

from dispatcher.calllog.db import make_engine, make_sessionmaker, transaction
from dispatcher.calllog.models import Call
from dispatcher.credentials import ensure_credentials
from pbx.phone.phone import Phone
from tests.browser import chromium, screenshot_path, settled
from tests.e2e.hotline_helpers import send_code
from tests.harness import SiagaProcess, running_center, wait_for

pytestmark = pytest.mark.asterisk

NUMBER = "081355507777"
SCRIPT_NOTE = "<script>window.__siagaXss = 'script'</script>"
IMG_NOTE = '"><img src=x onerror="window.__siagaXss = \'img\'">'


@pytest.fixture(scope="module")
def center_server(tmp_path_factory: pytest.TempPathFactory,
                  asterisk_install) -> Iterator[SiagaProcess]:  # noqa: ANN001
    """The whole center on free ports (the example's console thresholds: the 4th call within
    one hour is flagged), for this module."""
    with running_center(tmp_path_factory.mktemp("incident")) as proc:
        assert proc.center.console.repeat_calls == 3
        yield proc


class Staff:
    """One member of the staff over HTTP, with the session cookie and the page's CSRF token."""

    def __init__(self, server: SiagaProcess, extension: str) -> None:
        self.server = server
        self.cookie = ""
        self.csrf = ""
        password = ensure_credentials(server.center).console_passwords[extension]
        answer = self.request("POST", "/login", urlencode(
            {"extension": extension, "password": password, "next": "/console"}).encode(),
            {"Content-Type": "application/x-www-form-urlencoded"})
        assert answer[0] == 302 and self.cookie, answer
        page = self.request("GET", "/console")[1].decode()
        self.csrf = re.search(r'name="siaga-csrf" content="([0-9a-f]+)"', page).group(1)

    def request(self, method: str, path: str, body: bytes = b"",
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        center = self.server.center
        conn = http.client.HTTPConnection(center.http.host, center.http.port, timeout=15)
        hdrs = dict(headers or {})
        if self.cookie:
            hdrs["Cookie"] = f"siaga_session={self.cookie}"
        conn.request(method, path, body=body, headers=hdrs)
        response = conn.getresponse()
        data = response.read()
        for name, value in response.getheaders():
            if name.lower() == "set-cookie" and value.startswith("siaga_session="):
                self.cookie = value.split(";")[0].split("=", 1)[1]
        conn.close()
        return response.status, data

    def get(self, name: str, linkedid: str | None = None) -> tuple[int, dict]:
        path = f"/console/api/{name}" + (f"?linkedid={linkedid}" if linkedid else "")
        status, data = self.request("GET", path)
        return status, json.loads(data)

    def post(self, name: str, body: dict) -> tuple[int, dict]:
        status, data = self.request("POST", f"/console/api/{name}", json.dumps(body).encode(),
                                    {"Content-Type": "application/json",
                                     "X-Siaga-CSRF": self.csrf})
        return status, json.loads(data)


def calls_of(server: SiagaProcess, number: str) -> list[Call]:
    """The number's calls in the server's call log, oldest first."""
    engine = make_engine(server.center.database_url)
    try:
        with transaction(make_sessionmaker(engine)) as session:
            return list(session.scalars(select(Call).where(Call.caller_number == number)
                                        .order_by(Call.started_at, Call.id)))
    finally:
        engine.dispose()


def ended_calls(server: SiagaProcess, number: str, count: int) -> list[Call] | None:
    calls = [c for c in calls_of(server, number) if c.ended_at is not None]
    return calls if len(calls) >= count else None


def test_given_a_fourth_call_within_the_hour_when_the_operator_works_it_then_flag_notes_and_disposition_survive_a_restart(  # noqa: E501
        center_server: SiagaProcess, phones, tmp_path: Path) -> None:  # noqa: ANN001
    """Three short calls from one number (answered by the IVR, hung up): the third's card
    is not flagged. The fourth rings operator 201: before the answer its history (not another
    operator's to read) flags a repeat caller; answered, the card flags it and lists
    the three earlier calls; in Chromium (the card from the server's push, as the operator's
    page gets it) the operator opens an incident and writes notes,
    two of them holding markup, which show as text with no script run and no element made;
    the operator marks the call a prank and puts the citizen through to the police (the
    incident follows to handed_to_agency). After a restart of the server, the notes, the
    disposition and the flag are read back, the operator closes the incident (wrap-up after
    the call), and the supervisors' list flags the number for repeat and prank."""
    from selenium.webdriver.common.by import By

    center = center_server.center
    sip = f"{center.sip.host}:{center.sip.port}"
    operator_ext = center.operators[0].extension
    operator = phones.extension(operator_ext, ensure_credentials(center).password(operator_ext),
                                sip)
    citizen = phones._keep(Phone(phones.stack, NUMBER, server=sip))
    supervisor = Staff(center_server, center.supervisors[0])
    desk = Staff(center_server, operator_ext)
    other_desk = Staff(center_server, center.operators[1].extension)

    # Three real calls: each answered by the IVR, then hung up in the menu.
    for n in range(1, 4):
        call = citizen.call(center.hotline[0])
        call.wait_confirmed(15)
        call.hangup()
        call.wait_disconnected(10)
        earlier = wait_for(lambda n=n: ended_calls(center_server, NUMBER, n), 20,
                           f"call {n} in the call log")
    third = earlier[-1].linkedid  # type: ignore[index]
    status, card3 = supervisor.get("history", third)
    assert status == 200, card3
    assert card3["flag"]["calls_in_window"] == 3 and card3["flag"]["flagged"] is False

    # The fourth call reaches the operators' queue and operator 201's phone.
    watch = center_server.ami()
    try:
        call4 = citizen.call(center.hotline[0])
        call4.wait_confirmed(15)
        call4.send_dtmf("0")
        joined = watch.wait_event("QueueCallerJoin", 20, CallerIDNum=NUMBER)
    finally:
        watch.close()
    linkedid = joined["Linkedid"]
    ringing = operator.wait_incoming(40)
    # While the phone rings (before any answer) the history is the operator's to read, and
    # not another operator's.
    status, ringing_card = desk.get("history", linkedid)
    assert status == 200 and ringing_card["flag"]["reasons"] == ["repeat"], ringing_card
    status, refused = other_desk.get("history", linkedid)
    assert (status, refused["error"]) == (403, "not_your_call")
    answered = ringing.answer().wait_confirmed(10)

    with chromium() as browser:
        base = f"http://{center.http.host}:{center.http.port}"
        browser.get(base + "/console")
        wait_for(lambda: "/login" in browser.current_url, 10, "the login page")
        browser.find_element(By.ID, "extension").send_keys(operator_ext)
        browser.find_element(By.ID, "password").send_keys(
            ensure_credentials(center).console_passwords[operator_ext])
        browser.find_element(By.ID, "login").click()
        wait_for(settled(lambda: browser.current_url.endswith("/console")
                         and browser.find_element(By.ID, "card-history")), 15, "the console")
        # The card comes from the server's push (console.js): the call on 201's phone.
        card = browser.find_element(By.ID, "card")

        def my_call() -> bool:
            phones.stack.pump(20)
            return settled(lambda: card.get_attribute("data-linkedid") == linkedid
                           and card.get_attribute("data-state") == "talking")()

        wait_for(my_call, 15, "the answered call's card")
        assert browser.find_element(By.ID, "card-caller").text == NUMBER
        flag = wait_for(settled(lambda: browser.find_element(
            By.CSS_SELECTOR, "#card-history .caller-flag")), 15, "the repeat-caller flag")
        assert flag.get_attribute("data-flag") == "repeat"  # type: ignore[union-attr]
        listed = browser.find_elements(By.CSS_SELECTOR, "#card-history .history-calls li")
        assert len(listed) == 3

        def add_note(text: str) -> None:
            before = len(browser.find_elements(By.CSS_SELECTOR, "#card-incident .note-text"))
            box = browser.find_element(By.CSS_SELECTOR, "#card-incident textarea[name=note]")
            box.send_keys(text)
            browser.find_element(By.CSS_SELECTOR, "#card-incident button[name=add-note]").click()
            wait_for(settled(lambda: len(browser.find_elements(
                By.CSS_SELECTOR, "#card-incident .note-text")) == before + 1), 15, "the note")

        # Open the call's incident: the notes that follow belong to it.
        wait_for(settled(lambda: browser.find_element(
            By.CSS_SELECTOR, "#card-incident button[name=open]")), 15, "the case form")
        browser.find_element(By.CSS_SELECTOR, "#card-incident select[name=category] "
                                              "option[value=police]").click()
        browser.find_element(By.CSS_SELECTOR, "#card-incident input[name=address]").send_keys(
            "Jl. Diponegoro 12")
        browser.find_element(By.CSS_SELECTOR, "#card-incident button[name=open]").click()
        head = wait_for(settled(lambda: browser.find_element(
            By.CSS_SELECTOR, "#card-incident .incident-head")), 15, "the incident")
        assert head.get_attribute("data-state") == "talking"  # type: ignore[union-attr]
        for text in ("Caller laughs, no emergency heard", SCRIPT_NOTE, IMG_NOTE):
            add_note(text)
        shown = [e.get_attribute("textContent") for e in
                 browser.find_elements(By.CSS_SELECTOR, "#card-incident .note-text")]
        assert shown == ["Caller laughs, no emergency heard", SCRIPT_NOTE, IMG_NOTE]
        # As text: no element was made from a note, and nothing in them ran.
        assert browser.find_elements(By.CSS_SELECTOR, "#card img, #card script") == []
        assert browser.execute_script("return window.__siagaXss === undefined")

        choice = browser.find_element(By.CSS_SELECTOR, "#card-incident select[name=disposition]")
        choice.find_element(By.CSS_SELECTOR, "option[value=prank]").click()
        browser.find_element(By.CSS_SELECTOR, "#card-incident button[name=mark]").click()
        wait_for(settled(lambda: browser.find_element(
            By.CSS_SELECTOR, "#card-incident .disposition").get_attribute("data-disposition")
            == "prank"), 15, "the disposition")
        browser.execute_script("document.getElementById('card-history').scrollIntoView()")
        browser.save_screenshot(str(screenshot_path("console-incident.png")))
        assert browser.execute_script("return window.__siagaXss === undefined")

    # The operator puts the citizen through to the police (the softphone's code): once the
    # police phone answers, the incident opened from the call is handed to the agency.
    police_ext = center.agency("police").extensions[0]
    police = phones.extension(police_ext, ensure_credentials(center).password(police_ext), sip)
    send_code(answered, "*1")
    police_call = police.answer(30)
    police_call.wait_confirmed(10)

    def incident_state() -> str | None:
        state = supervisor.get("incident", linkedid)[1]["incident"]["state"]
        return state if state == "handed_to_agency" else None

    wait_for(incident_state, 20, "the incident to be handed to the police")
    call4.hangup()
    police_call.wait_disconnected(10)
    wait_for(lambda: ended_calls(center_server, NUMBER, 4), 20, "the 4th call in the log")

    center_server.stop()
    center_server.start()

    # The operator's session survives the restart; the call is over, and the operator who
    # answered it may still read its case (wrap-up).
    status, case = Staff(center_server, operator_ext).get("incident", linkedid)
    assert status == 200, case
    assert [n["text"] for n in case["notes"]] == [
        "Caller laughs, no emergency heard", SCRIPT_NOTE, IMG_NOTE]
    assert {n["by"] for n in case["notes"]} == {operator_ext}
    assert case["disposition"]["disposition"] == "prank"
    incident = case["incident"]
    assert (incident["state"], incident["category"], incident["address"]) == (
        "handed_to_agency", "police", "Jl. Diponegoro 12")
    assert {n["incident_id"] for n in case["notes"]} == {incident["id"]}
    status, closed = Staff(center_server, operator_ext).post(
        "incident-close", {"linkedid": linkedid, "outcome": "prank, no unit sent"})
    assert status == 200 and closed["incident"]["state"] == "closed", closed
    supervisor = Staff(center_server, center.supervisors[0])
    status, card = supervisor.get("history", linkedid)
    assert status == 200 and card["flag"]["reasons"] == ["repeat"], card
    status, flagged = supervisor.get("flagged")
    mine = [n for n in flagged["numbers"] if n["number"] == NUMBER]
    assert mine and mine[0]["calls_total"] == 4, flagged
    assert mine[0]["flag"]["reasons"] == ["repeat", "prank"]
    assert mine[0]["calls"][0]["disposition"] == "prank"
    status, page = supervisor.request("GET", "/console/flagged")
    assert status == 200 and NUMBER.encode() in page
