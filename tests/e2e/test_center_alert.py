"""A panic alert through the whole center (`siaga up`): API on the console's HTTP port,
operator first, then the citizen, talking with two-way audio."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from dispatcher.api.service import ensure_operator_token
from dispatcher.credentials import ensure_credentials
from dispatcher.hotline import codes
from tests.e2e.hotline_helpers import operator_then_citizen, send_code, wait_two_way_audio
from tests.harness import SiagaProcess, wait_for

pytestmark = pytest.mark.asterisk

CITIZEN_EXT = "339"  # the disaster agency's duty phone stands in for the citizen's mobile




def post(server: SiagaProcess, path: str, body: dict[str, Any] | None,
         token: str | None = None, raw: bytes | None = None) -> tuple[int, dict[str, Any]]:
    """An HTTP request to the center's API; (status, JSON body)."""
    http = server.center.http
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(f"http://{http.host}:{http.port}/api/v1{path}", data=data,
                                 method="POST" if data is not None else "GET")
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def enrol(server: SiagaProcess, device_id: str, number: str = CITIZEN_EXT) -> str:
    """`siaga device add` on the center's config and state; the device's token."""
    out = subprocess.run(
        [str(Path(sys.executable).parent / "siaga"), "device", "add", device_id,
         "--config", str(server.config), "--state-dir", str(server.state_dir),
         "--callback-number", number, "--json"],
        check=True, capture_output=True, text=True)
    return json.loads(out.stdout)["token"]


def test_given_an_enrolled_app_when_it_posts_an_alert_then_operator_and_citizen_talk(
        center_server: SiagaProcess, phones, tmp_path: Path) -> None:  # noqa: ANN001
    """POST → 201 from siaga up; operator 201 rings first and answers; then the citizen's
    phone rings and answers; each hears the other's tone. Bad input changes nothing."""
    center = center_server.center
    creds = ensure_credentials(center)
    sip = f"{center.sip.host}:{center.sip.port}"
    op_ext = center.operators[0].extension
    operator = phones.extension(op_ext, creds.password(op_ext), sip)
    citizen = phones.extension(CITIZEN_EXT, creds.password(CITIZEN_EXT), sip)
    token = enrol(center_server, "bitung-app-1")

    status, refused = post(center_server, "/alerts", None, token, raw=b'{"alert_id": "x"')
    assert status == 400 and refused["reason"]
    alert = {"alert_id": str(uuid.uuid4()), "device_id": "bitung-app-1", "type": "medical",
             "location": {"lat": 1.4456, "lon": 125.1824, "accuracy_m": 12},
             "callback_number": CITIZEN_EXT, "note": "Ibu pingsan di pasar"}
    status, refused = post(center_server, "/alerts", alert, "wrong-token")
    assert status == 401 and refused["reason"]
    status, receipt = post(center_server, "/alerts", alert, token)
    assert status == 201, receipt

    taken, ringing = operator_then_citizen(operator, citizen)
    heard = phones.two_way_audio(ringing, taken)
    assert heard.both, heard

    status, again = post(center_server, "/alerts", alert, token)
    assert status == 200 and again["incident_id"] == receipt["incident_id"]
    taken.hangup()
    ringing.wait_disconnected(15)


def test_given_an_alert_callback_when_the_operator_sends_it_to_police_then_handed_to_agency(
        center_server: SiagaProcess, phones, tmp_path: Path) -> None:  # noqa: ANN001
    """The operator takes the callback, talks with the citizen, keys *1 (police, blind):
    police's phone rings and answers, police and citizen hear each other, and the incident
    moves on by itself to ``handed_to_agency`` with the police as its agency."""
    center = center_server.center
    creds = ensure_credentials(center)
    sip = f"{center.sip.host}:{center.sip.port}"
    op_ext = center.operators[1].extension
    # Nobody of the center: a button's endpoint stands in for the citizen's mobile.
    mobile = center.buttons[1].extension
    police_agency = next(a for a in center.agencies if a.key == "police")
    police_ext = police_agency.extensions[0]
    operator = phones.extension(op_ext, creds.password(op_ext), sip)
    citizen = phones.extension(mobile, creds.password(mobile), sip)
    police = phones.extension(police_ext, creds.password(police_ext), sip)
    token = enrol(center_server, "bitung-app-2", mobile)
    status, receipt = post(center_server, "/alerts", {
        "alert_id": str(uuid.uuid4()), "device_id": "bitung-app-2", "type": "fire",
        "location": {"lat": 1.4401, "lon": 125.1901, "accuracy_m": 10},
        "callback_number": mobile, "note": "Asap dari gudang"}, token)
    assert status == 201, receipt
    incident_id = receipt["incident_id"]

    taken, ringing = operator_then_citizen(operator, citizen)
    assert phones.two_way_audio(ringing, taken).both

    operator_token = ensure_operator_token(center.state_dir)

    def state() -> str:
        status, doc = post(center_server, f"/incidents/{incident_id}", None, operator_token)
        assert status == 200, doc
        return doc["state"]

    wait_for(lambda: state() == "talking", 15, "the incident to be talking")
    send_code(taken, codes.AgencyCodes("police", police_agency.digit).blind)
    police_call = police.wait_incoming(30)
    police_call.answer()
    police_call.wait_confirmed()
    taken.wait_disconnected(15)
    heard = wait_two_way_audio(phones, ringing, police_call)
    assert heard.both, heard
    wait_for(lambda: state() == "handed_to_agency", 15, "the incident to be handed to police")
    status, doc = post(center_server, f"/incidents/{incident_id}", None, operator_token)
    assert doc["agency"] == "police", doc
    ringing.hangup()
    police_call.wait_disconnected(15)
