"""Alerts end to end: real Asterisk, the API server in a child process, SQLite, pjsua2 phones.

The API runs as ``python -m dispatcher.api.standalone`` (HTTP + call log writer + AMI client)
against the session's Asterisk, so a test can SIGKILL it right after a 201 and start it again.
The citizen's phone is a pjsua2 phone registered as extension 339; the server dials it with
the dial string template ``PJSIP/{number}`` (a center dials ``PJSIP/{number}@trunk``).
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.e2e.api_process import StandaloneApi
from tests.e2e.hotline_helpers import operator_then_citizen
from tests.harness import wait_for, write_test_config

if TYPE_CHECKING:
    from tests.harness import RunningAsterisk
    from tests.phones import PhoneFactory

pytestmark = pytest.mark.asterisk

CITIZEN_EXT = "339"  # the disaster agency's duty phone stands in for a citizen's mobile
REPO = Path(__file__).resolve().parents[2]


class AlertServer(StandaloneApi):
    """The API server as a child process on the session's Asterisk."""

    def __init__(self, asterisk: RunningAsterisk, workdir: Path) -> None:
        self.db_path = workdir / "alerts.db"
        config = write_test_config(workdir / "siaga.yaml", sip_port=asterisk.center.sip.port,
                                   ami_port=asterisk.center.ami.port)
        # The session's state dir: its secrets.yaml holds the AMI secret.
        super().__init__(workdir, config, asterisk.center.state_dir, f"sqlite:///{self.db_path}",
                         ["--ami", "--citizen-dial", "PJSIP/{number}",
                          "--citizen-ring-seconds", "15", "--retry-interval", "2"])

    def enrol(self, device_id: str, callback_number: str) -> str:
        """``siaga device add`` on the server's database; the token it printed."""
        siaga = Path(sys.executable).parent / "siaga"
        out = subprocess.run(
            [str(siaga), "device", "add", "--db", self.db, device_id, "--callback-number",
             callback_number, "--json"], check=True, capture_output=True, text=True, cwd=REPO)
        return json.loads(out.stdout)["token"]

    def request(self, method: str, path: str, body: dict[str, Any] | None = None,
                token: str | None = None) -> tuple[int, dict[str, Any]]:
        """One HTTP request to the API; status and JSON body (errors included)."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/api/v1{path}", data=data,
                                     method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def incident(self, incident_id: int) -> dict[str, Any]:
        """The incident as operators see it."""
        status, doc = self.request("GET", f"/incidents/{incident_id}")
        assert status == 200, doc
        return doc


@pytest.fixture
def server(asterisk: RunningAsterisk, tmp_path: Path) -> Any:
    """An API server for this test (stopped at its end)."""
    s = AlertServer(asterisk, tmp_path)
    yield s
    s.stop()


def alert(alert_id: str, number: str = CITIZEN_EXT) -> dict[str, Any]:
    """An alert from the test's app with a location and a note."""
    return {"alert_id": alert_id, "device_id": "e2e-app", "type": "panic",
            "location": {"lat": 1.4400, "lon": 125.1900, "accuracy_m": 8},
            "callback_number": number, "note": "Kebakaran di gudang"}


def test_given_alert_when_posted_then_operator_then_citizen_talk_with_two_way_audio(
        server: AlertServer, phones: PhoneFactory, asterisk: RunningAsterisk) -> None:
    """POST → 201; operator 201's phone rings and answers; then the citizen's phone rings and
    answers; each hears the other's tone; the incident is ``talking`` with operator 201; a
    retry of the alert id answers 200 with the same incident."""
    operator = phones.operator(1)
    citizen = phones.extension(CITIZEN_EXT, asterisk.password(CITIZEN_EXT))
    server.start()
    token = server.enrol("e2e-app", CITIZEN_EXT)
    alert_id = str(uuid.uuid4())
    status, receipt = server.request("POST", "/alerts", alert(alert_id), token)
    assert status == 201, receipt
    incident_id = receipt["incident_id"]

    taken = operator.wait_incoming(30)
    assert citizen.incoming_waiting == 0  # operator first: the citizen is not rung yet
    taken.answer()
    taken.wait_confirmed()
    ringing = citizen.wait_incoming(20)
    ringing.answer()
    ringing.wait_confirmed()

    heard = phones.two_way_audio(ringing, taken)
    assert heard.both, heard
    wait_for(lambda: server.incident(incident_id)["state"] == "talking", 10,
             "the incident to be talking")
    doc = server.incident(incident_id)
    assert doc["operator"] == "201" and doc["callback"]["state"] == "done"
    assert doc["note"] == "Kebakaran di gudang" and doc["location"]["lat"] == 1.44

    status, again = server.request("POST", "/alerts", alert(alert_id), token)
    assert status == 200 and again["incident_id"] == incident_id and not again["created"]
    status, refused = server.request("POST", "/alerts", alert("x2", number="339\r\n"), token)
    assert status == 422 and refused["error"] == "invalid_field"
    taken.hangup()
    ringing.wait_disconnected(10)


def test_given_server_killed_right_after_201_then_alert_kept_and_callback_happens(
        server: AlertServer, phones: PhoneFactory, asterisk: RunningAsterisk) -> None:
    """SIGKILL right after the 201: the alert is in the database; the restarted server
    calls back (following the call the dead one had started, or starting it): the operator
    answers, the citizen answers, and the incident reaches ``talking``."""
    citizen = phones.extension(CITIZEN_EXT, asterisk.password(CITIZEN_EXT))
    server.start()
    token = server.enrol("e2e-app", CITIZEN_EXT)
    status, receipt = server.request("POST", "/alerts", alert(str(uuid.uuid4())), token)
    assert status == 201, receipt
    server.kill()
    with sqlite3.connect(server.db_path) as con:
        rows = con.execute("select incident_id, callback_number from alerts").fetchall()
    assert rows == [(receipt["incident_id"], CITIZEN_EXT)]

    server.start()
    operator = phones.operator(1)  # registers only now: the callback waits in the queue
    taken, ringing = operator_then_citizen(operator, citizen, 40, 20)
    wait_for(lambda: server.incident(receipt["incident_id"])["state"] == "talking", 10,
             "the recovered callback to reach talking")
    assert len(operator.active_calls) == 1  # one callback, not one per process
    taken.hangup()


def test_given_button_calls_panic_number_then_incident_with_its_place(
        server: AlertServer, phones: PhoneFactory, asterisk: RunningAsterisk) -> None:
    """Button 901 dials the panic number: the operator's phone rings (the dialplan queues it
    first) and the server opens an incident for button-901 at its configured place, which
    becomes ``talking`` with operator 201 when answered."""
    operator = phones.operator(1)
    button = phones.extension("901", asterisk.password("901"))
    server.start()
    call = button.call(asterisk.center.panic_number)
    taken = operator.wait_incoming(40)
    taken.answer()
    taken.wait_confirmed()

    def incident() -> dict[str, Any] | None:
        status, feed = server.request("GET", "/incidents/feed?after=0")
        opened = [e for e in feed["events"] if e["event"] == "button_pressed"]
        return server.incident(opened[0]["incident_id"]) if opened else None

    doc = wait_for(lambda: (d := incident()) and d["state"] == "talking" and d, 15,
                   "the button's incident to be talking")
    assert doc["device"]["device_id"] == "button-901"  # type: ignore[index]
    assert (doc["location"]["lat"], doc["location"]["lon"]) == (1.4756, 125.1736)  # type: ignore[index]
    assert doc["operator"] == "201"  # type: ignore[index]
    call.hangup()


def test_given_button_call_answered_before_server_starts_then_incident_talking(
        server: AlertServer, phones: PhoneFactory, asterisk: RunningAsterisk) -> None:
    """The server (re)starts while a button's call is already with an operator (it saw none
    of its events): after its AMI login it finds the call among Asterisk's channels, opens
    the incident for button-901 and records it ``talking`` with operator 201."""
    operator = phones.operator(1)
    button = phones.extension("901", asterisk.password("901"))
    call = button.call(asterisk.center.panic_number)
    taken = operator.wait_incoming(40)
    taken.answer()
    taken.wait_confirmed()
    server.start()

    doc = wait_for(lambda: button_incident(server, "talking"), 15,
                   "the incident of the call found at login to be talking")
    assert doc["device"]["device_id"] == "button-901"  # type: ignore[index]
    assert doc["operator"] == "201"  # type: ignore[index]
    call.hangup()


def test_given_button_call_queued_before_server_starts_then_followed_to_talking(
        server: AlertServer, phones: PhoneFactory, asterisk: RunningAsterisk) -> None:
    """The server starts while a button's call waits in the queue (no operator registered
    yet): it opens the incident (``operator_ringing``) from the channel list, then follows
    the live queue events: operator 201 registers, answers, and the incident is ``talking``."""
    button = phones.extension("901", asterisk.password("901"))
    watch = asterisk.ami()
    try:
        call = button.call(asterisk.center.panic_number)
        wait_for(lambda: [e for e in watch.matching("QueueCallerJoin", Queue="operators")
                          if e.get("Channel", "").startswith("PJSIP/901-")], 15,
                 "the button's call to wait in the operators' queue")
    finally:
        watch.close()
        asterisk.watches.remove(watch)
    server.start()

    doc = wait_for(lambda: button_incident(server, "operator_ringing"), 15,
                   "the queued call found at login to open an incident")
    operator = phones.operator(1)
    taken = operator.wait_incoming(40)
    taken.answer()
    taken.wait_confirmed()
    incident_id = doc["id"]  # type: ignore[index]
    wait_for(lambda: server.incident(incident_id)["state"] == "talking", 15,
             "the incident to follow the live AgentConnect to talking")
    assert server.incident(incident_id)["operator"] == "201"
    call.hangup()


def button_incident(server: AlertServer, state: str) -> dict[str, Any] | None:
    """The incident of the first button press in the server's feed once it is in ``state``,
    else None."""
    _, feed = server.request("GET", "/incidents/feed?after=0")
    opened = [e for e in feed["events"] if e["event"] == "button_pressed"]
    if not opened:
        return None
    doc = server.incident(opened[0]["incident_id"])
    return doc if doc["state"] == state else None


def test_given_operator_ringing_when_asterisk_restarts_then_the_callback_is_rung_again(
        tmp_path: Path, asterisk_install: Any, phones: PhoneFactory) -> None:
    """The callback rings operator 201 when Asterisk dies (SIGKILL: no OriginateResponse,
    no Hangup, nothing more on AMI) and is started again. After its AMI login the server
    finds the callback's call missing and rings the operator again; the citizen is then
    called as usual. (A graceful ``core restart`` reports the originate as failed first,
    which the dialer has always handled.)

    On an Asterisk of its own: killing it must not disturb the session's other tests."""
    from tests.harness import start_asterisk

    own = start_asterisk(tmp_path / "center", asterisk_install)
    try:
        server = AlertServer(own, tmp_path)
        sip = own.sip_address
        operator = phones.extension("201", own.password("201"), sip)
        citizen = phones.extension(CITIZEN_EXT, own.password(CITIZEN_EXT), sip)
        server.start()
        try:
            token = server.enrol("e2e-app", CITIZEN_EXT)
            status, receipt = server.request("POST", "/alerts", alert(str(uuid.uuid4())),
                                             token)
            assert status == 201, receipt
            incident_id = receipt["incident_id"]
            first = operator.wait_incoming(30)

            assert own.proc is not None
            os.killpg(own.proc.pid, signal.SIGKILL)
            own.proc.wait(10)
            own.start()
            # Asterisk forgot the first call: that INVITE will never be cancelled.
            first.hangup()
            second, ringing = operator_then_citizen(operator, citizen, 60, 30)
            wait_for(lambda: server.incident(incident_id)["state"] == "talking", 15,
                     "the callback rung again to reach talking")
            details = [t.get("detail", "") for t in server.incident(incident_id)["transitions"]]
            assert any("while AMI was away" in d for d in details), details
            second.hangup()
            ringing.wait_disconnected(15)
        finally:
            server.stop()
            phones.close_all()  # unregister while this Asterisk still answers
    finally:
        own.stop()
