"""``/api/v1/callbacks``: the hotline's callback list for operators, through the real Twisted
HTTP channel, with the hotline service on a fake AMI that records what the wire would carry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dispatcher.config.loader import load_center
from dispatcher.hotline import CallbackList, HotlineService
from dispatcher.hotline.callbacks import ABANDONED, DROPPED, MissedCall
from pbx.ami.errors import AMINotConnected
from tests.harness import EXAMPLE_CONFIG
from tests.unit.alerts.alerts_support import Http, make_service
from tests.unit.hotline.test_hotline_service import FakeAmi

OPERATOR_TOKEN = "op-secret"
AUTH = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}


def missed(number: str, reason: str = ABANDONED, linkedid: str = "1.1") -> MissedCall:
    """A call from 'number' that came through an app straight to the SIP port."""
    return MissedCall(reason, number, linkedid, "PJSIP/anonymous-1", "anonymous",
                      "127.0.0.1:40000", "fire", 9.0, None)


@pytest.fixture
def api(tmp_path: Path) -> Any:
    """The API with the hotline's service on a fake AMI; two callbacks owed."""
    service, _, clock = make_service(tmp_path)
    ami = FakeAmi()
    hotline = HotlineService(ami, load_center(EXAMPLE_CONFIG, state_dir=tmp_path),
                             CallbackList())
    hotline.callbacks.add(missed("0811111"), now=1795748400.0)
    hotline.callbacks.add(missed("0822222", DROPPED, "2.1"), now=1795748460.0)

    class Api:
        pass

    a = Api()
    a.ami, a.hotline = ami, hotline
    a.http = Http(service, clock, operator_token=OPERATOR_TOKEN, hotline=hotline)
    return a


def request(api: Any, method: str, path: str, body: Any = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    """One request; status and JSON body."""
    raw = json.dumps(body).encode() if body is not None else b""
    hdrs = {**AUTH, "Content-Type": "application/json"} if headers is None else headers
    status, _, data = api.http.request(method, path, raw, hdrs)
    return status, json.loads(data)


def test_given_missed_calls_when_listed_then_open_callbacks_strongest_evidence_first(
        api: Any) -> None:
    """Both numbers, with reason, category and the missed call's id; times in UTC; the
    dropped call (an operator heard a person) ranks above the one that waited as long."""
    status, doc = request(api, "GET", "/api/v1/callbacks")
    assert status == 200
    assert [(c["number"], c["reason"], c["state"]) for c in doc["callbacks"]] == [
        ("0822222", "dropped", "pending"), ("0811111", "abandoned", "pending")]
    assert (doc["total"], doc["offset"], doc["next_offset"]) == (2, 0, None)
    second = doc["callbacks"][1]
    assert second["calls"] == ["1.1"] and second["category"] == "fire"
    assert second["created_at"] == "2026-11-27T03:00:00Z"
    assert doc["callbacks"][0]["strength"] > second["strength"]


def test_given_a_callback_when_an_operator_takes_it_then_the_operator_is_rung(
        api: Any) -> None:
    """POST .../call: Originate to the operator's phone; 202 with the entry ringing; a
    second POST while it rings is refused 409 and sends nothing more."""
    entry_id = api.hotline.callbacks.pending()[0].id
    status, doc = request(api, "POST", f"/api/v1/callbacks/{entry_id}/call",
                          {"operator": "202"})
    assert status == 202, doc
    assert doc["state"] == "ringing" and doc["attempts"] == 1
    name, headers = api.ami.sent[-1]
    assert name == "Originate" and dict(headers)["Channel"] == "PJSIP/202"
    status, doc = request(api, "POST", f"/api/v1/callbacks/{entry_id}/call",
                          {"operator": "202"})
    assert status == 409 and doc["error"] == "already_ringing"
    assert len(api.ami.sent) == 1


@pytest.mark.parametrize(("body", "status", "error"), [
    ({"operator": "202\r\nAction: Hangup"}, 422, "invalid_field"),
    ({"operator": "999"}, 422, "invalid_field"),  # not a staff extension
    ({"operator": "202", "ring_seconds": 1000}, 422, "invalid_field"),
    ({"operator": "202", "extra": 1}, 422, "unknown_field"),
    ({}, 422, "invalid_field"),
], ids=["crlf", "not staff", "ring", "unknown field", "no operator"])
def test_given_bad_input_when_calling_back_then_refused_and_nothing_sent(
        api: Any, body: dict[str, Any], status: int, error: str) -> None:
    """Every refusal is JSON with a reason; no AMI action is sent; the entry stays pending."""
    entry = api.hotline.callbacks.pending()[0]
    got, doc = request(api, "POST", f"/api/v1/callbacks/{entry.id}/call", body)
    assert (got, doc["error"]) == (status, error) and doc["reason"]
    assert api.ami.sent == []
    assert entry.state == "pending"


def test_given_no_token_or_unknown_id_then_refused(api: Any) -> None:
    """401 without the operator token; 404 for an unknown callback; 405 for wrong methods."""
    status, doc = request(api, "GET", "/api/v1/callbacks", headers={})
    assert status == 401 and doc["error"] == "invalid_credentials"
    status, doc = request(api, "POST", "/api/v1/callbacks/999/call", {"operator": "202"})
    assert status == 404
    status, _ = request(api, "POST", "/api/v1/callbacks", {"operator": "202"})
    assert status == 405
    assert api.ami.sent == []


def test_given_ami_down_when_calling_back_then_503_and_still_pending(api: Any) -> None:
    """The PBX connection is away: 503 with a reason; the callback stays owed."""
    from twisted.internet import defer

    entry = api.hotline.callbacks.pending()[0]
    api.ami.send_action = lambda *a, **k: defer.fail(AMINotConnected("not connected"))
    status, doc = request(api, "POST", f"/api/v1/callbacks/{entry.id}/call",
                          {"operator": "202"})
    assert status == 503 and doc["error"] == "pbx_unavailable"
    assert entry.state == "pending" and entry.attempts == 0


def test_given_the_operator_never_answers_when_the_originate_fails_then_pending_again(
        api: Any) -> None:
    """Asterisk's OriginateResponse Failure (the operator's phone rang out): the callback is
    owed again and can be taken by another operator; a late Success changes nothing."""
    from twisted.internet import defer

    from dispatcher.hotline import MissedCallWatcher
    from pbx.ami.protocol import Message

    entry = api.hotline.callbacks.pending()[0]
    api.ami.send_action = lambda *a, **k: defer.succeed(
        Message("response", "Success", {"Response": "Success", "ActionID": "cb-7"}))
    status, doc = request(api, "POST", f"/api/v1/callbacks/{entry.id}/call",
                          {"operator": "202"})
    assert status == 202 and entry.state == "ringing"

    class Events:
        def subscribe_all(self, callback: Any) -> Any:
            self.callback = callback
            return lambda: None

    events = Events()
    MissedCallWatcher(events, type("Clock", (), {"seconds": lambda self: 0.0})(),
                      api.hotline.callbacks, service=api.hotline).start()
    events.callback(Message("event", "OriginateResponse",
                            {"ActionID": "cb-7", "Response": "Failure", "Reason": "3"}))
    assert entry.state == "pending"
    status, doc = request(api, "POST", f"/api/v1/callbacks/{entry.id}/call",
                          {"operator": "203"})
    assert status == 202 and doc["attempts"] == 2
