"""POST /api/v1/alerts through a real Twisted Site and a real SQLite call log.

Every refusal is checked for its status, its JSON error code, and that the database holds
nothing new afterwards.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dispatcher.alerts.auth import sign
from dispatcher.alerts.settings import AlertSettings
from tests.unit.alerts.alerts_support import HMAC_KEY, NOW, TOKEN, Http, counts, make_service

EMPTY = {"alerts": 0, "incidents": 0, "incident_transitions": 0, "callbacks": 0}


def alert(**overrides: Any) -> dict[str, Any]:
    """A valid alert from app1, with fields replaced or removed (value None)."""
    doc: dict[str, Any] = {
        "alert_id": "0f8e6c1a-5b7d-4e7a-9a51-2f6a3c9d1e01",
        "device_id": "app1",
        "type": "panic",
        "location": {"lat": 1.4756, "lon": 125.1736, "accuracy_m": 12.5,
                     "fix_time": "2026-11-27T12:39:00Z"},
        "callback_number": "081234567890",
        "note": "Dua orang mencurigakan di depan rumah",
    }
    for key, value in overrides.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    return doc


@pytest.fixture
def api(tmp_path: Path) -> Any:
    """The service, its database, its clock and an HTTP client on it."""
    service, sessions, clock = make_service(tmp_path)

    class Api:
        pass

    a = Api()
    a.service, a.sessions, a.clock, a.http = service, sessions, clock, Http(service, clock)

    def post(doc: Any, headers: dict[str, str] | None = None, raw: bytes | None = None
             ) -> tuple[int, dict[str, str], dict[str, Any]]:
        body = raw if raw is not None else json.dumps(doc).encode()
        h = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
        h.update(headers or {})
        h = {k: v for k, v in h.items() if v is not None}
        status, got_headers, out = a.http.request("POST", "/api/v1/alerts", body, h)
        return status, got_headers, json.loads(out)

    a.post = post
    return a


def test_given_valid_alert_when_posted_then_201_after_commit_with_incident(api: Any) -> None:
    """201 with the incident id; the alert, incident, first transition and owed callback are
    in the database when the answer is written (the runner commits before it fires)."""
    status, headers, doc = api.post(alert())
    assert status == 201, doc
    assert doc["created"] is True and doc["state"] == "new"
    assert headers["location"] == f"/api/v1/incidents/{doc['incident_id']}"
    assert counts(api.sessions) == {"alerts": 1, "incidents": 1, "incident_transitions": 1,
                                    "callbacks": 1}


def test_given_same_alert_id_when_retried_then_200_same_incident_nothing_new(api: Any) -> None:
    """A retry (even with other content) answers 200 with the first incident; no duplicate."""
    _, _, first = api.post(alert())
    status, _, again = api.post(alert(type="fire", note="retry"))
    assert status == 200
    assert again["incident_id"] == first["incident_id"] and again["created"] is False
    assert counts(api.sessions)["incidents"] == 1 and counts(api.sessions)["alerts"] == 1


def test_given_alert_when_operator_gets_incident_then_location_and_note_shown(api: Any) -> None:
    """GET /api/v1/incidents/{id} (from loopback) shows location, note, number and history."""
    _, _, created = api.post(alert())
    status, _, body = api.http.request("GET", f"/api/v1/incidents/{created['incident_id']}")
    doc = json.loads(body)
    assert status == 200
    assert doc["location"] == {"lat": 1.4756, "lon": 125.1736, "accuracy_m": 12.5,
                               "fix_time": "2026-11-27T12:39:00Z"}
    assert doc["note"] == "Dua orang mencurigakan di depan rumah"
    assert doc["callback_number"] == "081234567890"
    assert doc["device"]["device_id"] == "app1"
    assert [t["to"] for t in doc["transitions"]] == ["new"]


def test_given_aml_field_names_when_posted_then_accepted_as_location(api: Any) -> None:
    """AML names (lt, lg, rd, top) are read as lat, lon, accuracy and fix time."""
    status, _, doc = api.post(alert(location={"lt": -6.2, "lg": 106.8, "rd": 30,
                                              "top": "20261127123900"}))
    assert status == 201, doc
    _, _, body = api.http.request("GET", f"/api/v1/incidents/{doc['incident_id']}")
    location = json.loads(body)["location"]
    assert location == {"lat": -6.2, "lon": 106.8, "accuracy_m": 30.0,
                        "fix_time": "2026-11-27T12:39:00Z"}


REFUSALS = [
    ("wrong token", {}, {"Authorization": "Bearer wrong-token-wrong-token-0000"}, 401,
     "invalid_credentials"),
    ("no credentials", {}, {"Authorization": None}, 401, "missing_credentials"),
    ("unknown device", {"device_id": "nobody"}, {}, 401, "invalid_credentials"),
    ("lat out of range", {"location": {"lat": 91, "lon": 0}}, {}, 422, "out_of_range"),
    ("lon out of range", {"location": {"lat": 0, "lon": -180.5}}, {}, 422, "out_of_range"),
    ("lat is a boolean", {"location": {"lat": True, "lon": 0}}, {}, 422, "invalid_field"),
    ("negative accuracy", {"location": {"lat": 0, "lon": 0, "accuracy_m": -1}}, {}, 422,
     "out_of_range"),
    ("fix in the future", {"location": {"lat": 0, "lon": 0,
                                        "fix_time": "2027-01-01T00:00:00Z"}}, {}, 422,
     "out_of_range"),
    ("fix without zone", {"location": {"lat": 0, "lon": 0,
                                       "fix_time": "2026-11-27T12:00:00"}}, {}, 422,
     "invalid_field"),
    ("two names for lat", {"location": {"lat": 0, "lt": 0, "lon": 0}}, {}, 422,
     "invalid_field"),
    ("unknown type", {"type": "alien"}, {}, 422, "invalid_field"),
    ("unknown field", {"extra": 1}, {}, 422, "unknown_field"),
    ("missing alert id", {"alert_id": None}, {}, 422, "missing_field"),
    ("alert id too long", {"alert_id": "a" * 129}, {}, 422, "invalid_field"),
    ("note too long", {"note": "x" * 1001}, {}, 422, "too_long"),
    ("CR/LF in the note", {"note": "help\r\nAction: Originate"}, {}, 422, "invalid_field"),
    ("LF in the alert id", {"alert_id": "a1\nAction: Hangup"}, {}, 422, "invalid_field"),
    ("CR/LF in the number", {"callback_number": "0812\r\nChannel: x"}, {}, 422,
     "invalid_field"),
    ("letters in the number", {"callback_number": "0812PJSIP"}, {}, 422, "invalid_field"),
    ("CR/LF in the device id", {"device_id": "app1\r\n"}, {}, 422, "invalid_field"),
    ("wrong content type", {}, {"Content-Type": "text/plain"}, 415, "unsupported_media_type"),
]


@pytest.mark.parametrize(("why", "change", "headers", "status", "code"), REFUSALS,
                         ids=[r[0] for r in REFUSALS])
def test_given_bad_input_when_posted_then_json_error_and_nothing_stored(
        api: Any, why: str, change: dict[str, Any], headers: dict[str, str], status: int,
        code: str) -> None:
    """Each bad input gets its status and error code with a reason, and creates nothing."""
    got, got_headers, doc = api.post(alert(**change), headers)
    assert (got, doc["error"]) == (status, code), doc
    assert doc["reason"]
    assert got_headers["content-type"].startswith("application/json")
    assert counts(api.sessions) == EMPTY


@pytest.mark.parametrize("raw", [b"{bad", b"[1, 2]", b"\xff\xfe", b'{"a": NaN}',
                                 b'{"alert_id": "a", "alert_id": "b"}', b""],
                         ids=["truncated", "array", "not utf-8", "NaN", "duplicate key",
                              "empty"])
def test_given_malformed_json_when_posted_then_400_and_nothing_stored(api: Any, raw: bytes
                                                                       ) -> None:
    """Malformed bodies answer 400 malformed_json."""
    status, _, doc = api.post(None, raw=raw)
    assert (status, doc["error"]) == (400, "malformed_json")
    assert counts(api.sessions) == EMPTY


def test_given_1mb_body_when_posted_then_413_and_body_not_kept(api: Any) -> None:
    """A 1 MB body answers 413 too_large; the request never holds more than the limit."""
    big = b'{"note": "' + b"a" * (1024 * 1024) + b'"}'
    status, headers, doc = api.post(None, raw=big)
    assert (status, doc["error"]) == (413, "too_large")
    assert headers.get("connection") == "close"
    assert counts(api.sessions) == EMPTY


def test_given_chunked_body_over_limit_when_posted_then_413(api: Any) -> None:
    """A chunked body (no Content-Length) is cut off at the limit too."""
    chunk = b"a" * 8000
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(5)) + b"0\r\n\r\n"
    head = (b"POST /api/v1/alerts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")
    status, _, out = api.http.raw(head + body)
    assert status == 413 and json.loads(out)["error"] == "too_large"


def signed_headers(body: bytes, timestamp: float, key: str = HMAC_KEY) -> dict[str, str]:
    """Headers of an HMAC-signed request (no token)."""
    ts = str(int(timestamp))
    return {"Authorization": None, "X-Siaga-Timestamp": ts,
            "X-Siaga-Signature": sign(key, ts, body)}


def test_given_signed_alert_when_posted_then_201(api: Any) -> None:
    """A device enrolled with an HMAC key is accepted with a valid signature."""
    body = json.dumps(alert(device_id="app2")).encode()
    status, _, doc = api.post(None, signed_headers(body, NOW), raw=body)
    assert status == 201, doc


def test_given_replayed_signature_when_posted_again_then_401_replayed(api: Any) -> None:
    """The same signed request sent twice: the second is refused as a replay."""
    body = json.dumps(alert(device_id="app2")).encode()
    headers = signed_headers(body, NOW)
    assert api.post(None, headers, raw=body)[0] == 201
    status, _, doc = api.post(None, headers, raw=body)
    assert (status, doc["error"]) == (401, "replayed_request")


@pytest.mark.parametrize("offset", [-301, 301], ids=["too old", "too far ahead"])
def test_given_timestamp_outside_window_when_posted_then_401_bad_timestamp(
        api: Any, offset: int) -> None:
    """A timestamp more than 300 s from the server's clock is refused; nothing stored."""
    body = json.dumps(alert(device_id="app2")).encode()
    status, _, doc = api.post(None, signed_headers(body, NOW + offset), raw=body)
    assert (status, doc["error"]) == (401, "bad_timestamp")
    assert counts(api.sessions) == EMPTY


def test_given_signature_of_other_body_when_posted_then_401(api: Any) -> None:
    """A signature made for another body (tampered in flight) is refused."""
    body = json.dumps(alert(device_id="app2")).encode()
    tampered = json.dumps(alert(device_id="app2", note="changed")).encode()
    status, _, doc = api.post(None, signed_headers(body, NOW), raw=tampered)
    assert (status, doc["error"]) == (401, "invalid_signature")
    assert counts(api.sessions) == EMPTY


def test_given_device_needing_both_when_token_only_then_401(api: Any) -> None:
    """app3 is enrolled with token and key: the token alone is not enough; both pass."""
    body = json.dumps(alert(device_id="app3")).encode()
    status, _, doc = api.post(None, {}, raw=body)
    assert (status, doc["error"]) == (401, "invalid_signature")
    both = signed_headers(body, NOW)
    both["Authorization"] = f"Bearer {TOKEN}"
    assert api.post(None, both, raw=body)[0] == 201


def test_given_burst_used_when_more_alerts_then_429_until_refilled(tmp_path: Path) -> None:
    """With a burst of 2 and 1 alert/10 s, the third alert is refused with Retry-After; after
    10 s of the injected clock one more is accepted."""
    service, sessions, clock = make_service(tmp_path, settings=AlertSettings(
        rate_burst=2, rate_per_second=0.1))
    http = Http(service, clock)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}

    def post(n: int) -> tuple[int, dict[str, str], dict[str, Any]]:
        body = json.dumps(alert(alert_id=f"a{n}")).encode()
        status, h, out = http.request("POST", "/api/v1/alerts", body, headers)
        return status, h, json.loads(out)

    assert [post(1)[0], post(2)[0]] == [201, 201]
    status, h, doc = post(3)
    assert (status, doc["error"]) == (429, "rate_limited") and h["retry-after"] == "10"
    assert counts(sessions)["alerts"] == 2
    clock.advance(10)
    assert post(4)[0] == 201


def test_given_revoked_device_when_cached_then_refused_at_commit(api: Any) -> None:
    """A device revoked after its credentials were cached is refused when committing."""
    from dispatcher.calllog import db, store_incidents

    assert api.post(alert(alert_id="first"))[0] == 201
    with db.transaction(api.sessions) as session:
        store_incidents.revoke_device(session, "app1")
    status, _, doc = api.post(alert(alert_id="second"))
    assert (status, doc["error"]) == (401, "invalid_credentials")
    assert counts(api.sessions)["alerts"] == 1


def test_given_unknown_path_or_method_then_json_404_and_405(api: Any) -> None:
    """Misses are JSON too: 404 for a path, 405 with Allow for a method."""
    status, _, body = api.http.request("GET", "/api/v1/nothing")
    assert (status, json.loads(body)["error"]) == (404, "not_found")
    status, headers, body = api.http.request("DELETE", "/api/v1/alerts")
    assert (status, json.loads(body)["error"]) == (405, "method_not_allowed")
    assert headers["allow"] == "GET, HEAD, POST"


def test_given_remote_peer_when_incident_asked_then_403(tmp_path: Path) -> None:
    """Operator endpoints answer loopback only."""
    service, _, clock = make_service(tmp_path)
    status, _, body = Http(service, clock, peer="192.0.2.7").request(
        "GET", "/api/v1/incidents/1")
    assert (status, json.loads(body)["error"]) == (403, "forbidden")


def test_given_operator_token_when_missing_then_401_and_with_it_200(api: Any) -> None:
    """With an operator token configured, GET needs it."""
    api.post(alert())
    http = Http(api.service, api.clock, operator_token="op-secret-token")
    assert http.request("GET", "/api/v1/incidents/1")[0] == 401
    status, _, _ = http.request("GET", "/api/v1/incidents/1",
                                headers={"Authorization": "Bearer op-secret-token"})
    assert status == 200


def test_given_unknown_incident_then_404(api: Any) -> None:
    """An incident that does not exist is a JSON 404."""
    status, _, body = api.http.request("GET", "/api/v1/incidents/999")
    assert (status, json.loads(body)["error"]) == (404, "not_found")


def test_given_new_alert_then_feed_notifies_operators(api: Any) -> None:
    """The operators' feed lists the new incident with its place."""
    _, _, created = api.post(alert())
    status, _, body = api.http.request("GET", "/api/v1/incidents/feed?after=0")
    events = json.loads(body)["events"]
    assert status == 200
    assert [(e["incident_id"], e["event"], e["lat"]) for e in events] == [
        (created["incident_id"], "alert_received", 1.4756)]


def test_given_talking_incident_when_operator_closes_then_closed(api: Any) -> None:
    """An operator's input through the API moves the incident; a refused pair is 409."""
    from dispatcher.alerts.incident import IncidentInput

    _, _, created = api.post(alert())
    incident = created["incident_id"]
    path = f"/api/v1/incidents/{incident}/events"
    h = {"Content-Type": "application/json"}
    status, _, body = api.http.request("POST", path, b'{"input": "close"}', h)
    assert (status, json.loads(body)["error"]) == (409, "invalid_transition")
    api.service.report(incident, IncidentInput.DIAL_OPERATOR)
    api.service.report(incident, IncidentInput.CITIZEN_ANSWERED)
    status, _, body = api.http.request(
        "POST", path, b'{"input": "hand_to_agency", "agency": "police"}', h)
    assert status == 200 and json.loads(body)["state"] == "handed_to_agency"
    status, _, body = api.http.request("POST", path, b'{"input": "close"}', h)
    assert json.loads(body)["state"] == "closed"
    _, _, body = api.http.request("GET", f"/api/v1/incidents/{incident}")
    doc = json.loads(body)
    assert doc["agency"] == "police" and doc["closed_at"] is not None


def test_openapi_document_is_served_and_lists_the_alert_endpoint(api: Any) -> None:
    """The OpenAPI document is served as JSON and describes POST /alerts."""
    status, _, body = api.http.request("GET", "/api/v1/openapi.json")
    spec = json.loads(body)
    assert status == 200 and spec["openapi"].startswith("3.")
    assert "post" in spec["paths"]["/alerts"]
