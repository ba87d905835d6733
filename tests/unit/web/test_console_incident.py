"""The call card's history and case endpoints over a real SQLite call log: ownership,
refusals as JSON with a reason, and nothing written when refused."""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from twisted.internet.defer import Deferred, fail, succeed
from twisted.web.test.requesthelper import DummyRequest

from dispatcher.calllog import db
from dispatcher.calllog.models import Call, CallDisposition, CallNote, Incident
from dispatcher.calllog.store_journeys import ensure_operator
from dispatcher.config.loader import load_center
from dispatcher.web.console_api import csrf_token
from dispatcher.web.console_incident import CaseParts, incident_endpoints
from dispatcher.web.sessions import Staff
from pbx.ami.entities import Channel
from pbx.ami.model import LiveModel
from tests.harness import EXAMPLE_CONFIG

NOW = 1_796_000_000.0
LINKEDID = "1796000000.11"
CITIZEN = "081299900011"


class _Console:
    def __init__(self) -> None:
        self.who: Staff | None = None

    def staff(self, request):  # noqa: ANN001, ANN201
        return self.who

    def token(self, request):  # noqa: ANN001, ANN201
        return "session-token"

    def same_origin(self, request):  # noqa: ANN001, ANN201
        return True


def _in_transaction(sessions: sessionmaker[Session]) -> Callable[..., Deferred[Any]]:
    """The reader/writer, synchronously: ``fn(session, *args)`` in one transaction."""
    def run(fn: Callable[..., Any], *args: Any) -> Deferred[Any]:
        try:
            with db.transaction(sessions) as session:
                return succeed(fn(session, *args))
        except Exception as exc:  # noqa: BLE001 -- handed to the Deferred, as the writer does
            return fail(exc)
    return run


class Desk:
    """The endpoints on a fresh call log, a live model holding one call on operator 201's
    phone, and a console whose logged-in member the test picks."""

    def __init__(self, tmp_path: Path) -> None:
        self.center = load_center(EXAMPLE_CONFIG, state_dir=tmp_path)
        self.engine = db.make_engine(f"sqlite:///{tmp_path / 'log.db'}")
        db.upgrade(self.engine)
        self.sessions = db.make_sessionmaker(self.engine)
        self.model = LiveModel(lambda: NOW)
        self.model.channels["1796000000.11"] = Channel(
            "1796000000.11", "PJSIP/citizen-00000001", LINKEDID, caller_num=CITIZEN)
        self.model.channels["1796000000.12"] = Channel(
            "1796000000.12", "PJSIP/201-00000002", LINKEDID, caller_num="201")
        run = _in_transaction(self.sessions)
        self.console = _Console()
        self.published: list[tuple[int, str, str]] = []
        self.live: dict[str, SimpleNamespace] = {}  # the live journeys' facts, by linkedid
        self.endpoints = incident_endpoints(self.console, CaseParts(
            self.model, lambda: self.center, run, run, lambda: NOW,
            publish=lambda incident_id, state, event, **_: self.published.append(
                (incident_id, state, event)), facts=self.live.get))

    def ask(self, who: Staff, method: bytes, name: str, body: object = None,
            linkedid: str = LINKEDID) -> tuple[int, dict]:
        self.console.who = who
        request = DummyRequest([b""])
        request.method = method
        request.path = f"/console/api/{name}".encode()
        request.args = {b"linkedid": [linkedid.encode()]}
        request.requestHeaders.setRawHeaders(b"content-type", [b"application/json"])
        request.requestHeaders.setRawHeaders(b"x-siaga-csrf",
                                             [csrf_token("session-token").encode()])
        request.content = io.BytesIO(json.dumps(body).encode() if body is not None else b"")
        out = self.endpoints[name].render(request)
        raw = out if isinstance(out, bytes) else b"".join(request.written)
        return request.responseCode or 200, json.loads(raw)

    def count(self, table: type) -> int:
        with db.transaction(self.sessions) as session:
            return session.scalar(select(func.count()).select_from(table)) or 0


OPERATOR = Staff("201", "operator")
OTHER = Staff("202", "operator")
SUPERVISOR = Staff("301", "supervisor")


@pytest.fixture
def desk(tmp_path: Path) -> Iterator[Desk]:
    d = Desk(tmp_path)
    yield d
    d.engine.dispose()


@pytest.mark.parametrize("value", ["spam", "PRANK", "", None, 3, ["prank"], "prank "])
def test_given_an_unknown_disposition_when_posted_then_422_with_reason_and_nothing_written(
        desk: Desk, value: object) -> None:
    """Only the six dispositions are taken; anything else is a JSON 422 naming the field."""
    status, doc = desk.ask(OPERATOR, b"POST", "incident-disposition",
                           {"linkedid": LINKEDID, "disposition": value})
    assert (status, doc["error"]) == (422, "invalid_field")
    assert doc["reason"].startswith("disposition: must be one of emergency, information, prank")
    assert desk.count(CallDisposition) == 0


def test_given_my_call_when_marked_then_the_disposition_is_the_calls_and_kept(
        desk: Desk) -> None:
    """The operator whose phone holds the call marks it; the caller's number comes from the
    live call, not from the page."""
    status, doc = desk.ask(OPERATOR, b"POST", "incident-disposition",
                           {"linkedid": LINKEDID, "disposition": "prank",
                            "caller_number": "0000"})
    assert status == 200 and doc["disposition"] == "prank"
    with db.transaction(desk.sessions) as session:
        row = session.scalars(select(CallDisposition)).one()
    assert (row.caller_number, row.author) == (CITIZEN, "201")
    status, case = desk.ask(OPERATOR, b"GET", "incident")
    assert case["disposition"]["disposition"] == "prank"


def test_given_another_operators_call_when_acting_then_403_and_nothing_written(
        desk: Desk) -> None:
    """Operator 202 may not read or write the case of a call on 201's phone."""
    for method, name, body in [
            (b"GET", "history", None), (b"GET", "incident", None),
            (b"POST", "incident-note", {"linkedid": LINKEDID, "text": "x"}),
            (b"POST", "incident-disposition", {"linkedid": LINKEDID, "disposition": "test"}),
            (b"POST", "incident-open", {"linkedid": LINKEDID, "category": "police"})]:
        status, doc = desk.ask(OTHER, method, name, body)
        assert (status, doc["error"]) == (403, "not_your_call"), name
    assert desk.count(CallNote) == desk.count(CallDisposition) == desk.count(Incident) == 0


def test_given_a_call_the_operator_answered_when_it_ended_then_they_may_finish_the_notes(
        desk: Desk) -> None:
    """Wrap-up: once the call left the phone, the operator the log says answered it may
    still add a note; another may not."""
    with db.transaction(desk.sessions) as session:
        session.add(Call(linkedid="old.1", caller_number=CITIZEN, dialed="112",
                         started_at=dt.datetime.fromtimestamp(NOW - 600, dt.UTC),
                         outcome="answered", answered_by=ensure_operator(session, "201")))
    status, _ = desk.ask(OPERATOR, b"POST", "incident-note",
                         {"linkedid": "old.1", "text": "caller safe"}, linkedid="old.1")
    assert status == 201
    status, doc = desk.ask(OTHER, b"POST", "incident-note",
                           {"linkedid": "old.1", "text": "x"}, linkedid="old.1")
    assert (status, doc["error"]) == (403, "not_your_call")
    assert desk.count(CallNote) == 1


def test_given_a_call_the_operator_handed_to_an_agency_when_still_going_then_they_work_its_case(
        desk: Desk) -> None:
    """The operator answered, then put the citizen through: the call is off their phone and
    not yet in the log (it goes on between citizen and agency), but the live journey says who
    answered it: that operator may read its case and add a note; another may not."""
    for uid in ("1796000000.12",):
        del desk.model.channels[uid]  # the operator's leg is gone; the citizen's talks on
    desk.live[LINKEDID] = SimpleNamespace(answered_by="201")
    status, case = desk.ask(OPERATOR, b"GET", "incident")
    assert status == 200, case
    status, _ = desk.ask(OPERATOR, b"POST", "incident-note",
                         {"linkedid": LINKEDID, "text": "handed to police"})
    assert status == 201
    status, doc = desk.ask(OTHER, b"GET", "history")
    assert (status, doc["error"]) == (403, "not_your_call")
    assert desk.count(CallNote) == 1


@pytest.mark.parametrize(("body", "field"), [
    ({"text": ""}, "text"), ({"text": "   "}, "text"), ({"text": 5}, "text"),
    ({"text": "a" * 2001}, "text"), ({"text": "bell\x07"}, "text"),
    ({"text": "ok", "linkedid": "x" * 65}, "linkedid"), ({"text": "ok", "linkedid": 7}, "linkedid"),
])
def test_given_a_bad_note_when_posted_then_422_and_nothing_written(
        desk: Desk, body: dict, field: str) -> None:
    """Empty, too long, not text, control characters, a bogus linkedid: refused."""
    status, doc = desk.ask(OPERATOR, b"POST", "incident-note", {"linkedid": LINKEDID, **body})
    assert (status, doc["error"]) == (422, "invalid_field")
    assert doc["reason"].startswith(field + ":")
    assert desk.count(CallNote) == 0


def test_given_notes_when_edit_or_delete_is_tried_then_405_and_the_note_stays(
        desk: Desk) -> None:
    """Notes are append-only over HTTP too: no method changes or removes one."""
    desk.ask(OPERATOR, b"POST", "incident-note", {"linkedid": LINKEDID, "text": "first"})
    for method in (b"PUT", b"PATCH", b"DELETE"):
        status, doc = desk.ask(OPERATOR, method, "incident-note",
                               {"linkedid": LINKEDID, "text": "changed"})
        assert (status, doc["error"]) == (405, "method_not_allowed")
    _, case = desk.ask(OPERATOR, b"GET", "incident")
    assert [n["text"] for n in case["notes"]] == ["first"]


def test_given_my_call_when_opening_noting_and_closing_then_the_case_follows(
        desk: Desk) -> None:
    """Open with a category, address and first note; add a note; close with an outcome."""
    status, doc = desk.ask(OPERATOR, b"POST", "incident-open", {
        "linkedid": LINKEDID, "category": "fire", "address": "Jl. Sudirman 5",
        "note": "smoke from the kitchen"})
    assert status == 201 and doc["incident"]["state"] == "talking"
    assert doc["incident"]["category"] == "fire" and doc["incident"]["type"] == "fire"
    status, doc = desk.ask(OPERATOR, b"POST", "incident-open",
                           {"linkedid": LINKEDID, "category": "fire"})
    assert (status, doc["error"]) == (409, "incident_conflict")
    desk.ask(OPERATOR, b"POST", "incident-note", {"linkedid": LINKEDID, "text": "unit sent"})
    status, doc = desk.ask(OPERATOR, b"POST", "incident-close",
                           {"linkedid": LINKEDID, "outcome": "fire out"})
    assert status == 200 and doc["incident"]["state"] == "closed"
    assert [n["text"] for n in doc["notes"]] == ["smoke from the kitchen", "unit sent"]
    assert desk.count(Incident) == 1
    # The operators' incident feed heard the open and the close (not the refused open).
    incident_id = doc["incident"]["id"]
    assert desk.published == [(incident_id, "talking", "opened_from_call"),
                              (incident_id, "closed", "close")]


def test_given_an_unknown_category_when_opening_then_422_and_no_incident(desk: Desk) -> None:
    """The category is one of the center's agencies, or other."""
    status, doc = desk.ask(OPERATOR, b"POST", "incident-open",
                           {"linkedid": LINKEDID, "category": "<b>x</b>"})
    assert (status, doc["error"]) == (422, "invalid_field")
    assert desk.count(Incident) == 0


def test_given_no_incident_when_closing_then_404(desk: Desk) -> None:
    """Closing needs an incident."""
    status, doc = desk.ask(OPERATOR, b"POST", "incident-close",
                           {"linkedid": LINKEDID, "outcome": "done"})
    assert (status, doc["error"]) == (404, "no_incident")


def test_given_a_supervisor_then_any_calls_history_but_an_unknown_call_is_404(
        desk: Desk) -> None:
    """A supervisor reads any call's history; a linkedid neither live nor logged is 404."""
    status, doc = desk.ask(SUPERVISOR, b"GET", "history")
    assert status == 200 and doc["number"] == CITIZEN and doc["known"] is True
    status, doc = desk.ask(SUPERVISOR, b"GET", "history", linkedid="9.9")
    assert (status, doc["error"]) == (404, "no_such_call")


def test_given_an_operator_when_asking_for_the_flagged_list_then_403(desk: Desk) -> None:
    """The flagged numbers are the supervisors'."""
    status, doc = desk.ask(OPERATOR, b"GET", "flagged")
    assert (status, doc["error"]) == (403, "forbidden")
    status, doc = desk.ask(SUPERVISOR, b"GET", "flagged")
    assert status == 200 and doc["numbers"] == [] and doc["repeat_calls"] == 3


def test_given_a_callback_call_then_the_citizens_number_is_taken_not_the_operators(
        desk: Desk) -> None:
    """A call whose oldest channel is the operator's (an operator-first callback): the
    disposition is filed under the citizen's number, never the desk's."""
    desk.model.channels.clear()
    desk.model.channels["1796000000.11"] = Channel(
        "1796000000.11", "PJSIP/201-00000001", LINKEDID, caller_num="201")
    desk.model.channels["1796000000.12"] = Channel(
        "1796000000.12", "PJSIP/trunk-00000002", LINKEDID, caller_num=CITIZEN)
    status, _ = desk.ask(OPERATOR, b"POST", "incident-disposition",
                         {"linkedid": LINKEDID, "disposition": "silent"})
    assert status == 200
    with db.transaction(desk.sessions) as session:
        assert session.scalars(select(CallDisposition.caller_number)).all() == [CITIZEN]


def test_given_the_flagged_page_then_supervisors_only(desk: Desk) -> None:
    """/console/flagged: an operator is refused (403 JSON), no session goes to the login, a
    supervisor gets the page with the flagged number."""
    from dispatcher.web.console_incident import FlaggedPage

    with db.transaction(desk.sessions) as session:
        for i in range(4):
            session.add(Call(linkedid=f"r.{i}", caller_number=CITIZEN, dialed="112",
                             started_at=dt.datetime.fromtimestamp(NOW - 60 * i, dt.UTC)))

    class _PageConsole(_Console):
        def page(self, request, template, **ctx):  # noqa: ANN001, ANN003, ANN201
            from dispatcher.web.site import _environment
            return _environment().get_template(template).render(
                t=__import__("dispatcher.web.site", fromlist=["TEXT"]).TEXT["en"],
                lang="en", center_name="x", staff=self.who, csrf="", **ctx).encode()

    console = _PageConsole()
    page = FlaggedPage(console, desk.endpoints["flagged"].parts)

    def get(who: Staff | None) -> tuple[int, bytes]:
        console.who = who
        request = DummyRequest([b""])
        out = page.render(request)
        raw = out if isinstance(out, bytes) and out else b"".join(request.written)
        return request.responseCode or 200, raw

    assert get(None)[0] == 302
    status, body = get(OPERATOR)
    assert status == 403 and json.loads(body)["error"] == "forbidden"
    status, body = get(SUPERVISOR)
    assert status == 200 and CITIZEN.encode() in body and b"REPEAT CALLER" in body
