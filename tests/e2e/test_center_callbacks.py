"""Calls for help that must not be lost, through the whole center (`siaga up`): a citizen who
gives up in the queue is owed a callback, which an operator takes through the API (operator
first, then the citizen); the list survives a restart; a citizen who gives up, or a panic
button pressed, while the server is down is found in Asterisk's CEL when it starts."""

from __future__ import annotations

import json
import signal
import urllib.error
import urllib.request
from typing import Any

import pytest

from dispatcher.api.service import ensure_operator_token
from dispatcher.credentials import ensure_credentials
from pbx.phone.phone import Phone
from tests.harness import SiagaProcess, wait_for

pytestmark = pytest.mark.asterisk


def api(server: SiagaProcess, method: str, path: str,
        body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    """An operator's request to the center's API (loopback, operator token)."""
    http = server.center.http
    req = urllib.request.Request(
        f"http://{http.host}:{http.port}/api/v1{path}", method=method,
        data=json.dumps(body).encode() if body is not None else None)
    req.add_header("Authorization", f"Bearer {ensure_operator_token(server.state_dir)}")
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def owed(server: SiagaProcess, number: str) -> dict[str, Any] | None:
    """The open callback for ``number``, if the list has one."""
    status, doc = api(server, "GET", "/callbacks")
    assert status == 200, doc
    return next((c for c in doc["callbacks"] if c["number"] == number), None)


def give_up_in_queue(phones, server: SiagaProcess, number: str) -> Phone:  # noqa: ANN001
    """A citizen calls 112 with no operator at a desk, waits in the queue, hangs up."""
    center = server.center
    citizen = phones._keep(Phone(phones.stack, number,
                                 server=f"{center.sip.host}:{center.sip.port}"))
    watch = server.ami()
    try:
        call = citizen.call(center.hotline[0])
        call.wait_confirmed(10)
        call.send_dtmf("0")  # straight to the operators' queue
        watch.wait_event("QueueCallerJoin", 20, CallerIDNum=number)
    finally:
        watch.close()
    call.hangup()
    call.wait_disconnected(10)
    return citizen


def test_given_a_citizen_gave_up_when_an_operator_takes_the_callback_then_both_talk(
        center_server: SiagaProcess, phones) -> None:  # noqa: ANN001
    """GET /callbacks lists the abandoned call; POST /callbacks/{id}/call rings operator 201,
    who answers; then the citizen's phone rings and answers; each hears the other; the
    callback is done and leaves the list."""
    citizen = give_up_in_queue(phones, center_server, "5559876")
    entry = wait_for(lambda: owed(center_server, "5559876"), 15, "the callback to be listed")
    assert entry["reason"] == "abandoned" and entry["state"] == "pending"  # type: ignore[index]

    creds = ensure_credentials(center_server.center)
    sip = f"{center_server.center.sip.host}:{center_server.center.sip.port}"
    operator = phones.extension("201", creds.password("201"), sip)
    status, doc = api(center_server, "POST", f"/callbacks/{entry['id']}/call",  # type: ignore[index]
                      {"operator": "201"})
    assert status == 202, doc
    op_call = operator.answer(20)
    citizen_call = citizen.answer(20)
    heard = phones.two_way_audio(op_call, citizen_call)
    assert heard.both, heard
    op_call.hangup()
    citizen_call.wait_disconnected(10)
    wait_for(lambda: owed(center_server, "5559876") is None, 15, "the callback to be done")


def test_given_a_callback_owed_when_the_server_restarts_then_it_is_still_listed(
        center_server: SiagaProcess, phones) -> None:  # noqa: ANN001
    """The list is kept in the call log: after SIGTERM and a new start the callback is there."""
    give_up_in_queue(phones, center_server, "5559877")
    before = wait_for(lambda: owed(center_server, "5559877"), 15, "the callback to be listed")
    center_server.signal(signal.SIGTERM)
    assert center_server.wait_exit(30) == 0
    center_server.start()
    after = owed(center_server, "5559877")
    assert after is not None, "the owed callback was lost in the restart"
    assert (after["reason"], after["state"], after["calls"]) == (
        "abandoned", "pending", before["calls"])  # type: ignore[index]


def test_given_a_citizen_gave_up_while_the_server_was_down_then_owed_after_its_start(
        center_server: SiagaProcess, phones) -> None:  # noqa: ANN001
    """SIGKILL the server (Asterisk goes on: the hotline fails open); a citizen waits in the
    queue and hangs up; the server starts again, finds the call in Asterisk's CEL and owes
    the citizen a callback as if it had seen it live."""
    center_server.signal(signal.SIGKILL)
    center_server.wait_exit(10)
    try:
        give_up_in_queue(phones, center_server, "5559878")
    finally:
        center_server.start()
    entry = wait_for(lambda: owed(center_server, "5559878"), 20,
                     "the callback of the call made while the server was down")
    assert (entry["reason"], entry["state"]) == ("abandoned", "pending")  # type: ignore[index]


def test_given_a_button_pressed_while_the_server_was_down_then_its_incident_after_start(
        center_server: SiagaProcess, phones) -> None:  # noqa: ANN001
    """SIGKILL the server; button 902 calls the panic number, nobody answers, the caller
    hangs up; the server starts, finds the call in CEL and opens the button's incident, as
    ``unreachable`` (no operator took it): a press is never lost."""
    center = center_server.center
    button = center.buttons[1].extension
    creds = ensure_credentials(center)
    center_server.signal(signal.SIGKILL)
    center_server.wait_exit(10)
    try:
        phone = phones.extension(button, creds.password(button),
                                 f"{center.sip.host}:{center.sip.port}")
        watch = center_server.ami()
        try:
            call = phone.call(center.panic_number)
            watch.wait_event("QueueCallerJoin", 20, CallerIDNum=button)
        finally:
            watch.close()
        call.hangup()
        call.wait_disconnected(10)
    finally:
        center_server.start()

    def feed() -> list[dict[str, Any]]:
        status, doc = api(center_server, "GET", "/incidents/feed?after=0")
        assert status == 200, doc
        return doc["events"]

    def opened() -> list[dict[str, Any]]:
        return [e for e in feed() if e["event"] == "button_pressed"
                and e.get("device_id", "").endswith(button)]

    event = wait_for(opened, 20, "the button's incident")[0]  # type: ignore[index]
    # The incident is opened (``new``, published as button_pressed) and then told how the
    # call ended: two writes, the second published as an event of its own. Read the state
    # once that second event is out, not between the two.
    wait_for(lambda: [e for e in feed() if e["incident_id"] == event["incident_id"]
                      and e["event"] != "button_pressed"],
             20, "the button call's outcome to be recorded on its incident")
    status, incident = api(center_server, "GET", f"/incidents/{event['incident_id']}")
    assert status == 200, incident
    assert incident["state"] == "unreachable", incident
