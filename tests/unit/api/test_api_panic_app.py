"""The panic app's API: the one-time enrolment code and a device's view of its own alert.

Through a real Twisted Site and a real SQLite call log, as an attacker would try them: a
code spent twice, an expired one, a guessed one, another device's alert, no credentials.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from dispatcher.alerts import enrolment
from dispatcher.calllog import db, store_incidents
from dispatcher.calllog.models import Device, EnrolmentCode
from dispatcher.cli import main
from tests.unit.alerts.alerts_support import NOW, TOKEN, Http, counts, make_service

CODE = "one-time-code-of-the-link-0123"


@pytest.fixture
def app(tmp_path: Path) -> Any:
    """The service with ``phone1`` enrolled by link (no credential yet) and its code."""
    service, sessions, clock = make_service(tmp_path)
    now = dt.datetime.fromtimestamp(NOW, dt.UTC)
    with db.transaction(sessions) as session:
        store_incidents.add_device(session, "phone1", callback_number="0811223344",
                                   label="Ibu Sari", now=now)
        enrolment.issue_code(session, "phone1", CODE, now, dt.timedelta(hours=1))

    class App:
        pass

    a = App()
    a.service, a.sessions, a.clock, a.http = service, sessions, clock, Http(service, clock)

    def call(method: str, path: str, doc: Any = None, headers: dict[str, str] | None = None
             ) -> tuple[int, dict[str, Any]]:
        body = b"" if doc is None else json.dumps(doc).encode()
        h = {"Content-Type": "application/json"} if doc is not None else {}
        h.update(headers or {})
        status, _, out = a.http.request(method, path, body, h)
        return status, json.loads(out)

    a.call = call
    return a


def alert_body(alert_id: str, device_id: str = "phone1") -> dict[str, Any]:
    """A valid alert from ``device_id``."""
    return {"alert_id": alert_id, "device_id": device_id, "type": "medical",
            "location": {"lat": 1.4456, "lon": 125.1824, "accuracy_m": 15}}


def test_given_a_link_code_when_exchanged_then_token_works_and_only_its_hash_is_kept(
        app: Any) -> None:
    """The code gives the device a token once: alerts with it are taken, the database
    keeps the token's hash and the code's hash only."""
    status, doc = app.call("POST", "/api/v1/enrol", {"code": CODE})
    assert status == 200, doc
    assert doc["device_id"] == "phone1" and doc["callback_number"] == "0811223344"
    token = doc["token"]
    with app.sessions() as session:
        device = session.query(Device).filter_by(device_id="phone1").one()
        assert device.token_hash == store_incidents.hash_token(token)
        row = session.query(EnrolmentCode).one()
        assert row.code_hash == enrolment.hash_code(CODE) and row.used_at is not None
    status, receipt = app.call("POST", "/api/v1/alerts", alert_body("a-1"),
                               {"Authorization": f"Bearer {token}"})
    assert status == 201, receipt


def test_given_a_spent_code_when_exchanged_again_then_410_and_the_first_token_stays(
        app: Any) -> None:
    """Someone who copied the link after the citizen used it gets a clear JSON error and
    no token; the citizen's token is not replaced."""
    _, first = app.call("POST", "/api/v1/enrol", {"code": CODE})
    status, doc = app.call("POST", "/api/v1/enrol", {"code": CODE})
    assert (status, doc["error"]) == (410, "code_used") and doc["reason"]
    assert "token" not in doc
    with app.sessions() as session:
        device = session.query(Device).filter_by(device_id="phone1").one()
        assert device.token_hash == store_incidents.hash_token(first["token"])


def test_given_wrong_expired_or_malformed_codes_then_json_errors_and_nothing_changes(
        app: Any) -> None:
    """A guessed code (403), a malformed one or extra fields (422), a wrong content type
    (415), an expired code (410): each answers JSON with a reason; the device stays without
    a credential."""
    cases = [
        ({"code": "guessed-code-guessed-code-000"}, 403, "invalid_code"),
        ({"code": "short"}, 422, "invalid_field"),
        ({"code": "x" * 20 + "\r\n"}, 422, "invalid_field"),
        ({"code": CODE, "device_id": "phone1"}, 422, "unknown_field"),
        ({"code": 12345678901234567890}, 422, "invalid_field"),
    ]
    for doc, want_status, want_error in cases:
        status, out = app.call("POST", "/api/v1/enrol", doc)
        assert (status, out["error"]) == (want_status, want_error), (doc, out)
        assert out["reason"]
    status, _, body = app.http.request("POST", "/api/v1/enrol", b"code=x",
                                       {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 415 and json.loads(body)["error"] == "unsupported_media_type"
    app.clock.advance(3601)
    status, out = app.call("POST", "/api/v1/enrol", {"code": CODE})
    assert (status, out["error"]) == (410, "code_expired")
    with app.sessions() as session:
        assert session.query(Device).filter_by(device_id="phone1").one().token_hash is None


def test_given_a_revoked_device_when_its_code_is_exchanged_then_refused(app: Any) -> None:
    """A device revoked before its citizen opened the link gets no token."""
    with db.transaction(app.sessions) as session:
        store_incidents.revoke_device(session, "phone1")
    status, out = app.call("POST", "/api/v1/enrol", {"code": CODE})
    assert (status, out["error"]) == (403, "invalid_code")


def test_given_a_source_guessing_codes_when_it_keeps_on_then_429_before_the_database(
        app: Any) -> None:
    """Guesses count as failed attempts of the address: past the burst, 429 with
    Retry-After, even for the right code (the address must wait)."""
    for i in range(20):
        status, _ = app.call("POST", "/api/v1/enrol", {"code": f"guess-{i:03d}-guess-guess"})
        assert status == 403
    status, out = app.call("POST", "/api/v1/enrol", {"code": CODE})
    assert (status, out["error"]) == (429, "rate_limited")
    app.clock.advance(5)
    status, out = app.call("POST", "/api/v1/enrol", {"code": CODE})
    assert status == 200, out


def test_given_an_app_when_it_reads_its_alert_then_it_sees_its_state_and_nothing_else(
        app: Any) -> None:
    """GET /alerts/{id} with the device's token: its incident's state, no location, note,
    number or operator."""
    _, enrolled = app.call("POST", "/api/v1/enrol", {"code": CODE})
    auth = {"Authorization": f"Bearer {enrolled['token']}", "X-Siaga-Device": "phone1"}
    app.call("POST", "/api/v1/alerts", alert_body("a-1"), auth)
    status, doc = app.call("GET", "/api/v1/alerts/a-1", headers=auth)
    assert status == 200, doc
    assert doc["state"] == "new" and doc["alert_id"] == "a-1" and doc["type"] == "medical"
    assert not {"location", "note", "callback_number", "operator", "device"} & set(doc)
    assert doc["callback"] == {"state": "pending", "attempts": 0}


def test_given_another_devices_alert_id_when_asked_then_404_as_for_an_unknown_one(
        app: Any) -> None:
    """app1's alert is invisible to phone1: the same 404 as an id nobody used."""
    status, _ = app.call("POST", "/api/v1/alerts", alert_body("theirs", "app1"),
                         {"Authorization": f"Bearer {TOKEN}"})
    assert status == 201
    _, enrolled = app.call("POST", "/api/v1/enrol", {"code": CODE})
    auth = {"Authorization": f"Bearer {enrolled['token']}", "X-Siaga-Device": "phone1"}
    for alert_id in ("theirs", "nobody-used-this"):
        status, doc = app.call("GET", f"/api/v1/alerts/{alert_id}", headers=auth)
        assert (status, doc["error"]) == (404, "not_found"), doc


def test_given_wrong_or_missing_credentials_when_status_asked_then_401_json(app: Any) -> None:
    """No token, a wrong token, a token of another device, no device header: 401/422."""
    status, _ = app.call("POST", "/api/v1/alerts", alert_body("theirs", "app1"),
                         {"Authorization": f"Bearer {TOKEN}"})
    cases = [
        ({"X-Siaga-Device": "app1"}, 401, "missing_credentials"),
        ({"X-Siaga-Device": "app1", "Authorization": "Bearer wrong-token-0123456789"}, 401,
         "invalid_credentials"),
        ({"X-Siaga-Device": "phone1", "Authorization": f"Bearer {TOKEN}"}, 401,
         "invalid_credentials"),
        ({"Authorization": f"Bearer {TOKEN}"}, 422, "invalid_field"),
    ]
    for headers, want_status, want_error in cases:
        status, doc = app.call("GET", "/api/v1/alerts/theirs", headers=headers)
        assert (status, doc["error"]) == (want_status, want_error), (headers, doc)


def test_given_the_cli_when_adding_by_link_then_code_stored_hashed_and_link_has_it_in_fragment(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``siaga device add --link`` stores the device without credential and a hashed code;
    the link carries the code after ``#`` (never sent to a server); an SVG QR code is
    written; ``device link`` issues a new code and spends the old one."""
    url = f"sqlite:///{tmp_path / 'siaga.db'}"
    svg = tmp_path / "qr.svg"
    assert main(["device", "add", "--db", url, "phone9", "--link", "--base-url",
                 "https://siaga.example.id", "--json", "--qr-svg", str(svg)]) == 0
    out = json.loads(capsys.readouterr().out)
    prefix = "https://siaga.example.id/panic/#code="
    assert out["link"].startswith(prefix)
    code = out["link"][len(prefix):]
    assert svg.read_text().lstrip().startswith(("<?xml", "<svg"))
    sessions = db.make_sessionmaker(db.make_engine(url))
    with sessions() as session:
        device = session.query(Device).filter_by(device_id="phone9").one()
        assert device.token_hash is None and device.hmac_key is None
        row = session.query(EnrolmentCode).one()
        assert row.code_hash == enrolment.hash_code(code) and code not in row.code_hash
    assert main(["device", "list", "--db", url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["auth"] == "link"
    assert main(["device", "link", "--db", url, "phone9", "--base-url",
                 "https://siaga.example.id", "--json"]) == 0
    second = json.loads(capsys.readouterr().out)["link"][len(prefix):]
    with db.transaction(sessions) as session:
        with pytest.raises(enrolment.EnrolmentRefused, match="used"):
            enrolment.exchange_code(session, code, dt.datetime.now(dt.UTC))
        assert enrolment.exchange_code(session, second, dt.datetime.now(dt.UTC)).token
    assert main(["device", "add", "--db", url, "phone10", "--link"]) == 2
    assert "--base-url" in capsys.readouterr().err


def test_given_no_alert_when_a_link_is_exchanged_then_no_incident_is_made(app: Any) -> None:
    """Enrolment writes the device's credential only."""
    before = counts(app.sessions)
    app.call("POST", "/api/v1/enrol", {"code": CODE})
    assert counts(app.sessions) == before


def test_given_a_center_with_tls_when_a_link_is_made_then_it_is_https(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The link names the center as its config serves it: https when ``tls:`` is set (a
    phone keeps the app offline only in a secure context), http otherwise."""
    from tests.certs import make_certificates
    from tests.harness import EXAMPLE_CONFIG

    certs = make_certificates(tmp_path / "certs")
    plain = tmp_path / "plain.yaml"
    plain.write_text(EXAMPLE_CONFIG.read_text())
    secure = tmp_path / "secure.yaml"
    secure.write_text(EXAMPLE_CONFIG.read_text() + f"\ntls:\n  certificate: {certs.certificate}"
                      f"\n  key: {certs.key}\n")
    links = {}
    for name, config in (("plain", plain), ("secure", secure)):
        (tmp_path / name).mkdir()
        assert main(["device", "add", f"phone-{name}", "--link", "--config", str(config),
                     "--state-dir", str(tmp_path / name), "--json"]) == 0
        links[name] = json.loads(capsys.readouterr().out)["link"]
    assert links["secure"].startswith("https://127.0.0.1:8080/panic/#code=")
    assert links["plain"].startswith("http://127.0.0.1:8080/panic/#code=")


def test_given_an_operator_calling_when_the_app_reads_its_alert_then_the_step_says_so(
        app: Any) -> None:
    """The server rang an operator, who answered and is now dialling the citizen: the
    state stays ``operator_ringing`` and ``step`` says ``operator_answered`` (the app's
    "an operator is calling you"); then the citizen answers: ``talking``."""
    from dispatcher.alerts import storage
    from dispatcher.alerts.incident import IncidentInput

    _, enrolled = app.call("POST", "/api/v1/enrol", {"code": CODE})
    auth = {"Authorization": f"Bearer {enrolled['token']}", "X-Siaga-Device": "phone1"}
    _, receipt = app.call("POST", "/api/v1/alerts", alert_body("a-1"), auth)
    now = dt.datetime.fromtimestamp(NOW, dt.UTC)
    seen = []
    for event in (IncidentInput.DIAL_OPERATOR, IncidentInput.OPERATOR_ANSWERED,
                  IncidentInput.CITIZEN_ANSWERED):
        with db.transaction(app.sessions) as session:
            storage.transition(session, receipt["incident_id"], event, now, "by Rina")
        _, doc = app.call("GET", "/api/v1/alerts/a-1", headers=auth)
        seen.append((doc["state"], doc["step"]))
    assert seen == [("operator_ringing", "dial_operator"),
                    ("operator_ringing", "operator_answered"),
                    ("talking", "citizen_answered")]
    assert "Rina" not in json.dumps(doc)  # the detail is for operators, not the app
