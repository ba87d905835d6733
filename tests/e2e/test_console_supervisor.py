"""The supervisor's view against the whole center (``siaga up``): listen and whisper into an
operator's call from the supervisor's own phone (proven by tones), refused to an operator,
a call's recording played with range requests, and the page in a real Chromium."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from dispatcher.calllog.db import make_engine
from dispatcher.credentials import ensure_credentials
from dispatcher.web.console_api import csrf_token
from pbx.phone import tones
from pbx.phone.phone import Phone
from tests.browser import chromium, screenshot_path, settled
from tests.harness import SiagaProcess, running_center, wait_for

pytestmark = pytest.mark.asterisk

CITIZEN_TONE = tones.CALLER_TONE_HZ  # 697 Hz
OPERATOR_TONE = tones.CALLEE_TONE_HZ  # 1209 Hz
SUPERVISOR_TONE = 1477.0  # DTMF column 3: neither of the others nor a harmonic of them
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "screenshots" / "supervisor.png"


@pytest.fixture(scope="module")
def center(tmp_path_factory: pytest.TempPathFactory,
           asterisk_install) -> Iterator[SiagaProcess]:  # noqa: ANN001
    """The whole center on free ports, shared by this module's tests."""
    with running_center(tmp_path_factory.mktemp("supervisor")) as proc:
        yield proc


class Session:
    """A console login over plain HTTP: the session cookie and the page's CSRF token."""

    def __init__(self, server: SiagaProcess, extension: str) -> None:
        self.host, self.port = server.center.http.host, server.center.http.port
        password = ensure_credentials(server.center).console_passwords[extension]
        answer = self.request("POST", "/login", urlencode(
            {"extension": extension, "password": password, "next": "/console"}).encode(),
            {"Content-Type": "application/x-www-form-urlencoded"}, cookie=False)
        assert answer.status == 302, answer.body  # type: ignore[attr-defined]
        cookie = next(v for k, v in answer.getheaders() if k.lower() == "set-cookie")
        self.cookie = cookie.split(";")[0].split("=", 1)[1]

    def request(self, method: str, path: str, body: bytes = b"",
                headers: dict[str, str] | None = None, cookie: bool = True
                ) -> http.client.HTTPResponse:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        sent = dict(headers or {})
        if cookie:
            sent["Cookie"] = f"siaga_session={self.cookie}"
        conn.request(method, path, body=body, headers=sent)
        answer = conn.getresponse()
        answer.body = answer.read()  # type: ignore[attr-defined]
        conn.close()
        return answer

    def spy(self, extension: str, mode: str) -> tuple[int, dict[str, Any]]:
        """POST /console/api/spy as the page does (JSON, the session's CSRF token)."""
        answer = self.request("POST", "/console/api/spy",
                              json.dumps({"extension": extension, "mode": mode}).encode(),
                              {"Content-Type": "application/json",
                               "X-Siaga-CSRF": csrf_token(self.cookie)})
        return answer.status, json.loads(answer.body)  # type: ignore[attr-defined]

    def get(self, path: str, **headers: str) -> http.client.HTTPResponse:
        return self.request("GET", path, headers=headers)


def _phone(phones, server: SiagaProcess, user: str, password: str | None = None):  # noqa: ANN001, ANN202
    center = server.center
    sip = f"{center.sip.host}:{center.sip.port}"
    if password is None:  # a citizen: registers nowhere
        return phones._keep(Phone(phones.stack, user, server=sip))
    return phones.extension(user, password, sip)


def _hotline_call(phones, server: SiagaProcess, number: str, operator):  # noqa: ANN001, ANN202
    """A citizen calls the hotline, goes straight to the queue; the operator answers."""
    citizen = _phone(phones, server, number)
    citizen_call = citizen.call(server.center.hotline[0])
    citizen_call.wait_confirmed(10)
    citizen_call.send_dtmf("0")
    operator_call = operator.answer(30)
    return citizen_call, operator_call


def _listen_all(phones, calls: dict[str, Any], tones_of: dict[str, float],  # noqa: ANN001
                seconds: float = 1.5) -> dict[str, Path]:
    """Every call plays its tone and records what it hears; the recordings by role."""
    for role, call in calls.items():
        call.play_tone(tones_of[role])
    paths = {role: call.start_recording(phones.workdir / f"{role}-{id(call)}-hears.wav")
             for role, call in calls.items()}
    for call in calls.values():
        call.wait_heard(seconds + 0.5, 15)
    for call in calls.values():
        call.stop_audio()
        call.stop_recording()
    return paths


def _until_heard(phones, calls: dict[str, Any], tones_of: dict[str, float],  # noqa: ANN001
                 heard: Any, what: str) -> dict[str, Path]:  # noqa: ANN401
    """Tones and recordings again until ``heard(recordings)`` (media may take a moment to
    flow through a new spy); the last recordings."""
    last: dict[str, Path] = {}

    def attempt() -> bool:
        last.update(_listen_all(phones, calls, tones_of))
        return bool(heard(last))

    wait_for(attempt, 30, what)
    return last


def _share(path: Path, freq: float) -> float:
    """The share of a recording's frames (after set-up) that carry a good part of ``freq``:
    about 1 for a tone heard alone or in a mix of two, about 0 for one not heard."""
    return tones.tone_fraction(tones.read_wav(path).slice(0.5), freq, min_ratio=0.2)


def _calls(server: SiagaProcess) -> list[tuple[str, str, int]]:
    engine = make_engine(server.center.database_url)
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql("SELECT linkedid, outcome, test FROM calls ORDER BY id")
            return [tuple(r) for r in rows]  # type: ignore[misc]
    finally:
        engine.dispose()


def _supervisions(server: SiagaProcess) -> list[tuple[str, str, str, str]]:
    engine = make_engine(server.center.database_url)
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT supervisor, operator, mode, result FROM supervisions ORDER BY id")
            return [tuple(r) for r in rows]  # type: ignore[misc]
    finally:
        engine.dispose()


def test_given_a_recorded_call_when_a_supervisor_plays_it_then_ranges_and_nothing_else(
        center: SiagaProcess, phones) -> None:  # noqa: ANN001
    """A hotline call is recorded. The supervisor's list names it; a Range request gets 206
    with exactly those bytes of the file, a range past the end 416; an operator gets 403;
    a path in the request gets nothing but a JSON refusal."""
    creds = ensure_credentials(center.center)
    operator = _phone(phones, center, "201", creds.password("201"))
    citizen_call, operator_call = _hotline_call(phones, center, "081234560002", operator)
    operator_call.play_tone(OPERATOR_TONE)
    citizen_call.play_tone(CITIZEN_TONE)
    citizen_call.start_recording(phones.workdir / "citizen-hears.wav")
    citizen_call.wait_heard(1.0, 15)  # a second of talk to record
    citizen_call.stop_recording()
    citizen_call.hangup()
    operator_call.wait_disconnected(10)

    boss = Session(center, "290")

    def listed() -> dict[str, Any] | None:
        answer = boss.get("/console/api/recordings")
        assert answer.status == 200, answer.body  # type: ignore[attr-defined]
        calls = json.loads(answer.body)["calls"]  # type: ignore[attr-defined]
        return next((c for c in calls if c["caller"] == "081234560002"
                     and c["outcome"] != "in_progress" and c["recording"]), None)

    call = wait_for(listed, 20, "the recorded call in the supervisor's list")
    on_disk = center.center.recordings_dir / f"{call['linkedid']}.wav"  # type: ignore[index]
    data = on_disk.read_bytes()
    assert len(data) > 1000

    answer = boss.get(f"/console/api/recording?call={call['id']}",  # type: ignore[index]
                      Range="bytes=100-1099")
    assert answer.status == 206
    assert answer.getheader("Content-Range") == f"bytes 100-1099/{len(data)}"
    assert answer.getheader("Content-Type") == "audio/wav"
    assert answer.body == data[100:1100]  # type: ignore[attr-defined]
    whole = boss.get(f"/console/api/recording?call={call['id']}")  # type: ignore[index]
    assert (whole.status, whole.body) == (200, data)  # type: ignore[attr-defined]
    past = boss.get(f"/console/api/recording?call={call['id']}",  # type: ignore[index]
                    Range=f"bytes={len(data)}-")
    assert past.status == 416
    assert past.getheader("Content-Range") == f"bytes */{len(data)}"

    operator_session = Session(center, "201")
    refused = operator_session.get(f"/console/api/recording?call={call['id']}")  # type: ignore[index]
    assert refused.status == 403
    assert json.loads(refused.body)["error"] == "forbidden"  # type: ignore[attr-defined]

    _page_plays(center, call["id"])  # type: ignore[index]

    for path in ("/console/api/recording?call=../../../../etc/passwd",
                 f"/console/api/recording?call={call['id']}&path=/etc/passwd",  # type: ignore[index]
                 "/console/api/recording?file=/etc/passwd",
                 "/console/api/recording/..%2f..%2f..%2fetc%2fpasswd",
                 "/console/api/recording?call=999999"):
        answer = boss.get(path)
        assert answer.status in (400, 404), (path, answer.status)
        assert answer.getheader("Content-Type", "").startswith("application/json"), path
        assert b"root:" not in answer.body, path  # type: ignore[attr-defined]


def test_given_an_operators_call_when_a_supervisor_listens_whispers_barges_then_heard_as_meant(
        center: SiagaProcess, phones, tmp_path: Path) -> None:  # noqa: ANN001
    """Operator 201 talks with a citizen. An operator's session asking to listen gets 403
    and nothing rings. Supervisor 290 listens: hears the citizen's and the operator's tones,
    and neither of them hears the supervisor's. Then whispers: the operator hears the
    supervisor, the citizen does not. Then barges in: both hear the supervisor. Each use is
    in the call log (the spy calls kept as the center's own, out of the reports) and the
    server's log; the supervisor's page shows the desk's call, in Chromium."""
    creds = ensure_credentials(center.center)
    earlier = {linkedid for linkedid, _, _ in _calls(center)}
    operator = _phone(phones, center, "201", creds.password("201"))
    supervisor = _phone(phones, center, "290", creds.password("290"))
    watch = center.ami()
    try:
        citizen_call, operator_call = _hotline_call(phones, center, "081234560001", operator)

        # An operator may not: refused before anything reaches the PBX.
        intruder = Session(center, "202")
        status, doc = intruder.spy("201", "listen")
        assert (status, doc["error"]) == (403, "forbidden"), doc

        boss = Session(center, "290")
        status, doc = boss.spy("201", "listen")
        assert status == 200, doc
        assert doc["channel"].startswith("PJSIP/201-") and doc["mode"] == "listen"
        citizens_call = doc["linkedid"]
        listening = supervisor.answer(30)
        # The supervisor's phone rang once, for this request: the operator's made no call
        # (it would have come first: the server sends every action on one AMI connection).
        def rung() -> list[dict[str, str]]:
            return [e for e in watch.matching("Newchannel")
                    if e.get("Channel", "").startswith("PJSIP/290-")]

        wait_for(rung, 10, "the supervisor's channel on AMI")
        assert len(rung()) == 1, rung()
        tones_of = {"citizen": CITIZEN_TONE, "operator": OPERATOR_TONE,
                    "supervisor": SUPERVISOR_TONE}
        parties = {"citizen": citizen_call, "operator": operator_call, "supervisor": listening}
        heard = _until_heard(phones, parties, tones_of, lambda p: (
            _share(p["supervisor"], CITIZEN_TONE) > 0.5
            and _share(p["supervisor"], OPERATOR_TONE) > 0.5), "the supervisor to hear both")
        assert _share(heard["citizen"], OPERATOR_TONE) > 0.5  # the call itself still works
        assert _share(heard["operator"], CITIZEN_TONE) > 0.5
        assert _share(heard["citizen"], SUPERVISOR_TONE) < 0.05, "the citizen heard the spy"
        assert _share(heard["operator"], SUPERVISOR_TONE) < 0.05, "the operator heard the spy"
        listening.hangup()
        listening.wait_disconnected(10)

        status, doc = boss.spy("201", "whisper")
        assert status == 200, doc
        whispering = supervisor.answer(30)
        parties["supervisor"] = whispering
        heard = _until_heard(phones, parties, tones_of,
                             lambda p: _share(p["operator"], SUPERVISOR_TONE) > 0.5,
                             "the operator to hear the supervisor's whisper")
        assert _share(heard["citizen"], SUPERVISOR_TONE) < 0.05, "the citizen heard a whisper"
        assert _share(heard["citizen"], OPERATOR_TONE) > 0.5

        whispering.hangup()
        whispering.wait_disconnected(10)

        status, doc = boss.spy("201", "barge")
        assert status == 200, doc
        parties["supervisor"] = supervisor.answer(30)
        _until_heard(phones, parties, tones_of, lambda p: (
            _share(p["operator"], SUPERVISOR_TONE) > 0.5
            and _share(p["citizen"], SUPERVISOR_TONE) > 0.5), "both to hear the barge")
        _page_shows_the_call(center, "081234560001", supervisor)
        parties["supervisor"].hangup()
        parties["supervisor"].wait_disconnected(10)
    finally:
        watch.close()
    assert _supervisions(center) == [("290", "201", "listen", "originated"),
                                     ("290", "201", "whisper", "originated"),
                                     ("290", "201", "barge", "originated"),
                                     ("290", "201", "listen", "originated")]
    assert "supervisor 290 whisper on desk 201" in center.output()
    # The spy calls are the center's own in the call log: kept, never a citizen's call.
    seen: list[list[tuple[str, str, int]]] = [[]]

    def spy_calls_ended() -> bool:
        seen[0] = [row for row in _calls(center)
                   if row[0] != citizens_call and row[0] not in earlier]
        return len(seen[0]) == 4 and all(outcome != "in_progress" for _, outcome, _ in seen[0])

    try:
        wait_for(spy_calls_ended, 20, "the spy calls logged")
    except TimeoutError as exc:
        raise AssertionError(f"spy calls in the log: {seen[0]}") from exc
    assert [test for _, _, test in seen[0]] == [1, 1, 1, 1], seen[0]


def _log_in(browser, center: SiagaProcess) -> str:  # noqa: ANN001
    """Supervisor 290 logs in on /supervisor; the site's base URL."""
    from selenium.webdriver.common.by import By

    base = f"http://{center.center.http.host}:{center.center.http.port}"
    password = ensure_credentials(center.center).console_passwords["290"]
    browser.get(base + "/supervisor")
    wait_for(lambda: "/login" in browser.current_url, 10, "the login page")
    browser.find_element(By.ID, "extension").send_keys("290")
    browser.find_element(By.ID, "password").send_keys(password)
    browser.find_element(By.ID, "login").click()
    wait_for(settled(lambda: browser.current_url.startswith(base + "/supervisor")
                     and browser.find_element(By.TAG_NAME, "body")
                     .get_attribute("data-loaded")), 15, "the supervisor's page")
    return base


def _page_plays(center: SiagaProcess, call_id: int) -> None:
    """In Chromium, the call's Play button loads its recording into the page's <audio>
    (the browser's own range requests): it knows the recording's length."""
    from selenium.webdriver.common.by import By

    with chromium("--autoplay-policy=no-user-gesture-required") as browser:
        _log_in(browser, center)
        button = f'#recent-calls tr[data-call="{call_id}"] button.play'
        wait_for(settled(lambda: browser.find_element(By.CSS_SELECTOR, button)), 15,
                 "the call's Play button")
        browser.find_element(By.CSS_SELECTOR, button).click()
        duration = wait_for(lambda: browser.execute_script(
            "const p = document.getElementById('player');"
            "return p.readyState >= 1 && p.duration > 0 ? p.duration : 0;"), 15,
            "the recording to load in the page")
        assert 0.5 < duration < 60, duration  # type: ignore[operator]


def _page_shows_the_call(center: SiagaProcess, number: str, phone) -> None:  # noqa: ANN001
    """The supervisor's page in Chromium: desk 201 on a call with the citizen's number, its
    duration counting, the three buttons; "Listen" rings the supervisor's ``phone`` (which
    declines); the page's final state saved as the screenshot."""
    from selenium.webdriver.common.by import By

    with chromium() as browser:
        _log_in(browser, center)
        row = '#desks tr[data-extension="201"]'
        wait_for(settled(lambda: browser.find_element(By.CSS_SELECTOR, row + " .caller").text
                         == number), 15, "desk 201's call on the page")
        wait_for(settled(lambda: browser.find_element(By.CSS_SELECTOR, row + " .duration")
                         .text not in ("", "0:00")), 15, "the call's duration")
        buttons = browser.find_elements(By.CSS_SELECTOR, row + " button.spy")
        assert [b.get_attribute("data-mode") for b in buttons] == ["listen", "whisper", "barge"]
        assert browser.find_element(By.ID, "nav-supervisor").text == "Pengawas"
        buttons[0].click()
        ringing = phone.wait_incoming(15)
        wait_for(settled(lambda: "201" in browser.find_element(By.ID, "spy-status").text),
                 10, "the page to say the supervisor's phone rings")
        ringing.hangup()
        ringing.wait_disconnected(10)
        browser.save_screenshot(str(screenshot_path(SCREENSHOT.name)))
