"""The call card's history, the repeat/prank flag and a call's case work, on SQLite and
PostgreSQL (dispatcher.console.history and .incidents over the real schema)."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from dispatcher.calllog import db, store_callbacks
from dispatcher.calllog.models import (
    Call,
    CallDisposition,
    CallNote,
    Incident,
    IncidentTransition,
)
from dispatcher.calllog.store_journeys import ensure_operator
from dispatcher.console import history, incidents
from dispatcher.console.calls import NotYourCall
from dispatcher.console.settings import ConsoleSettings

NOW = dt.datetime(2026, 12, 7, 10, 0, tzinfo=dt.UTC)
SETTINGS = ConsoleSettings(repeat_calls=3, repeat_hours=1.0, history_days=30)
NUMBER = "081234500001"


def add_call(session: Session, linkedid: str, at: dt.datetime, number: str = NUMBER,
             outcome: str = "answered", answered_by: str | None = None,
             test: bool = False) -> Call:
    call = Call(linkedid=linkedid, caller_number=number, dialed="112", started_at=at,
                outcome=outcome, test=test,
                answered_by=ensure_operator(session, answered_by) if answered_by else None)
    session.add(call)
    session.flush()
    return call


def card(sessions: sessionmaker[Session], current: str = "now.1",
         number: str = NUMBER) -> dict:
    with db.transaction(sessions) as session:
        return history.caller_history(session, number, NOW, SETTINGS, current)


def test_given_three_earlier_calls_within_the_hour_when_the_fourth_comes_then_flagged(
        sessions: sessionmaker[Session]) -> None:
    """Three earlier calls in the last hour plus this one make four, more than three: the
    card flags a repeat caller; with two earlier calls (three in all) it does not."""
    with db.transaction(sessions) as session:
        for i, minutes in enumerate((50, 30)):
            add_call(session, f"e.{i}", NOW - dt.timedelta(minutes=minutes))
    doc = card(sessions)
    assert doc["flag"]["calls_in_window"] == 3
    assert doc["flag"]["flagged"] is False and doc["flag"]["reasons"] == []
    with db.transaction(sessions) as session:
        add_call(session, "e.2", NOW - dt.timedelta(minutes=10))
    doc = card(sessions)
    assert doc["flag"]["calls_in_window"] == 4
    assert doc["flag"]["reasons"] == ["repeat"]
    assert [c["linkedid"] for c in doc["calls"]] == ["e.2", "e.1", "e.0"]
    assert doc["calls_total"] == 3


def test_given_calls_at_the_window_edge_then_exactly_one_hour_ago_counts_a_second_more_not(
        sessions: sessionmaker[Session]) -> None:
    """The window includes its start: a call exactly one hour ago counts, one a second
    older does not (it stays in the 30-day history)."""
    with db.transaction(sessions) as session:
        add_call(session, "e.0", NOW - dt.timedelta(minutes=20))
        add_call(session, "e.1", NOW - dt.timedelta(minutes=40))
        add_call(session, "old", NOW - dt.timedelta(hours=1, seconds=1))
    doc = card(sessions)
    assert doc["flag"]["calls_in_window"] == 3 and not doc["flag"]["flagged"]
    assert doc["calls_total"] == 3
    with db.transaction(sessions) as session:
        add_call(session, "edge", NOW - dt.timedelta(hours=1))
    doc = card(sessions)
    assert doc["flag"]["calls_in_window"] == 4 and doc["flag"]["reasons"] == ["repeat"]


def test_given_history_older_than_the_days_and_other_numbers_then_left_out(
        sessions: sessionmaker[Session]) -> None:
    """The history reaches back history_days: older calls, other numbers, self-test calls
    and the current call itself are not listed."""
    with db.transaction(sessions) as session:
        add_call(session, "in", NOW - dt.timedelta(days=29))
        add_call(session, "out", NOW - dt.timedelta(days=31))
        add_call(session, "other", NOW - dt.timedelta(days=1), number="0899999")
        add_call(session, "selftest", NOW - dt.timedelta(days=1), test=True)
        add_call(session, "now.1", NOW)
    doc = card(sessions)
    assert [c["linkedid"] for c in doc["calls"]] == ["in"]


def test_given_a_call_marked_prank_before_when_the_number_calls_then_flagged_until_remarked(
        sessions: sessionmaker[Session]) -> None:
    """One earlier call marked prank flags the number whatever the count; the operator
    re-marking that call (say, information after all) lifts it: the latest marking counts."""
    with db.transaction(sessions) as session:
        add_call(session, "p.1", NOW - dt.timedelta(days=3))
        incidents.set_disposition_in(session, "p.1", "", "prank", "201", NOW)
    doc = card(sessions)
    assert doc["flag"]["reasons"] == ["prank"] and doc["flag"]["pranks"] == 1
    assert doc["calls"][0]["disposition"] == "prank"
    with db.transaction(sessions) as session:
        incidents.set_disposition_in(session, "p.1", "", "information", "202", NOW)
    doc = card(sessions)
    assert doc["flag"]["flagged"] is False
    with db.transaction(sessions) as session:
        assert session.scalar(select(func.count()).select_from(CallDisposition)) == 2


def test_given_a_withheld_number_then_no_history_and_no_flag(
        sessions: sessionmaker[Session]) -> None:
    """Anonymous callers are not one caller: no history, never a repeat flag."""
    with db.transaction(sessions) as session:
        for i in range(6):
            add_call(session, f"a.{i}", NOW - dt.timedelta(minutes=i), number="anonymous")
    doc = card(sessions, number="anonymous")
    assert doc["known"] is False and doc["calls"] == [] and not doc["flag"]["flagged"]


def test_given_callbacks_owed_and_incidents_then_the_card_lists_them(
        sessions: sessionmaker[Session]) -> None:
    """A pending callback to the number and the incident opened from its earlier call are
    on the card."""
    with db.transaction(sessions) as session:
        add_call(session, "e.1", NOW - dt.timedelta(days=2))
        store_callbacks.create_callback(session, NUMBER, now=NOW - dt.timedelta(hours=2))
        incidents.open_incident_in(session, "e.1", NUMBER, "fire", "Jl. Merdeka 1", "",
                                   "201", NOW - dt.timedelta(days=2))
    doc = card(sessions)
    assert [cb["state"] for cb in doc["callbacks_owed"]] == ["pending"]
    assert [(i["category"], i["state"]) for i in doc["incidents"]] == [("fire", "talking")]
    assert doc["calls"][0]["incident_id"] == doc["incidents"][0]["id"]


def test_given_notes_when_more_are_added_then_all_are_kept_in_order_unchanged(
        sessions: sessionmaker[Session]) -> None:
    """Notes are appended: the first stays word for word (markup is kept as text) when
    later ones come, each with its author and time, and they join the incident once the
    call has one."""
    later = NOW + dt.timedelta(minutes=1)
    with db.transaction(sessions) as session:
        add_call(session, "c.1", NOW, answered_by="201")
        first = incidents.add_note_in(session, "c.1", '<script>x</script> "><img>', "201", NOW)
        incidents.open_incident_in(session, "c.1", NUMBER, "police", "", "second", "201", later)
        incidents.add_note_in(session, "c.1", "third", "202", later)
    with db.transaction(sessions) as session:
        case = incidents.call_case_in(session, "c.1")
        rows = session.scalars(select(CallNote).order_by(CallNote.id)).all()
    assert [(n["text"], n["by"]) for n in case["notes"]] == [
        ('<script>x</script> "><img>', "201"), ("second", "201"), ("third", "202")]
    assert case["notes"][0] == first
    incident_id = case["incident"]["id"]
    assert [r.incident_id for r in rows] == [None, incident_id, incident_id]


def test_given_an_open_incident_when_opened_again_then_refused_and_nothing_written(
        sessions: sessionmaker[Session]) -> None:
    """A call has one live incident: a second open is a conflict that adds nothing."""
    with db.transaction(sessions) as session:
        add_call(session, "c.1", NOW)
        incidents.open_incident_in(session, "c.1", NUMBER, "health", "", "", "201", NOW)
    with pytest.raises(incidents.CaseConflict), db.transaction(sessions) as session:
        incidents.open_incident_in(session, "c.1", NUMBER, "fire", "", "again", "201", NOW)
    with db.transaction(sessions) as session:
        assert session.scalar(select(func.count()).select_from(Incident)) == 1
        assert session.scalar(select(func.count()).select_from(CallNote)) == 0


def test_given_an_incident_when_closed_then_outcome_kept_and_second_close_refused(
        sessions: sessionmaker[Session]) -> None:
    """Close goes through the incident's state machine (talking → closed, logged as a
    transition); a closed incident cannot close again."""
    with db.transaction(sessions) as session:
        add_call(session, "c.1", NOW)
        incidents.open_incident_in(session, "c.1", NUMBER, "police", "", "", "201", NOW)
        case = incidents.close_incident_in(session, "c.1", "unit sent, resolved", "201", NOW)
    assert case["incident"]["state"] == "closed"
    assert case["incident"]["outcome"] == "unit sent, resolved"
    assert case["incident"]["can_close"] is False
    with pytest.raises(incidents.CaseConflict), db.transaction(sessions) as session:
        incidents.close_incident_in(session, "c.1", "again", "201", NOW)
    with db.transaction(sessions) as session:
        steps = session.scalars(select(IncidentTransition.to_state)
                                .order_by(IncidentTransition.id)).all()
    assert steps == ["talking", "closed"]


def test_given_an_operator_who_did_not_answer_when_acting_after_the_call_then_refused(
        sessions: sessionmaker[Session]) -> None:
    """After the hang-up only the operator who answered may add to the call's case."""
    with db.transaction(sessions) as session:
        add_call(session, "c.1", NOW, answered_by="201")
        incidents.add_note_in(session, "c.1", "wrap-up", "201", NOW, owner="201")
    with pytest.raises(NotYourCall), db.transaction(sessions) as session:
        incidents.add_note_in(session, "c.1", "snooping", "202", NOW, owner="202")
    with db.transaction(sessions) as session:
        texts = session.scalars(select(CallNote.text)).all()
    assert texts == ["wrap-up"]


def test_given_repeat_and_prank_numbers_then_supervisors_list_both_with_their_calls(
        sessions: sessionmaker[Session]) -> None:
    """Four calls inside one hour (days ago) and a prank-marked number are listed; four calls
    spread over a day are not."""
    base = NOW - dt.timedelta(days=2)
    with db.transaction(sessions) as session:
        for i in range(4):
            add_call(session, f"r.{i}", base + dt.timedelta(minutes=15 * i), number="0811")
            add_call(session, f"s.{i}", base + dt.timedelta(hours=5 * i), number="0822")
        add_call(session, "p.0", base, number="0833")
        incidents.set_disposition_in(session, "p.0", "", "prank", "201", NOW)
    with db.transaction(sessions) as session:
        listed = history.flagged_numbers(session, NOW, SETTINGS)
    assert [(n["number"], n["flag"]["reasons"]) for n in listed] == [
        ("0811", ["repeat"]), ("0833", ["prank"])]
    assert [c["linkedid"] for c in listed[0]["calls"]] == ["r.3", "r.2", "r.1", "r.0"]


def test_given_an_incident_opened_from_a_call_when_the_call_is_handed_off_then_it_follows(
        sessions: sessionmaker[Session]) -> None:
    """The agency answered the call: its incident moves to handed_to_agency with the agency;
    a call with no incident, or whose incident is closed, changes nothing."""
    with db.transaction(sessions) as session:
        add_call(session, "c.1", NOW)
        add_call(session, "c.2", NOW)
        incidents.open_incident_in(session, "c.1", NUMBER, "police", "", "", "201", NOW)
    with db.transaction(sessions) as session:
        moved = incidents.handed_off_in(session, "c.1", "police", NOW)
        assert incidents.handed_off_in(session, "c.2", "police", NOW) is None
    assert moved is not None and moved[1] == "handed_to_agency"
    with db.transaction(sessions) as session:
        incident = session.get(Incident, moved[0])
        assert incident.state == "handed_to_agency" and incident.agency_id is not None
        incidents.close_incident_in(session, "c.1", "done", "201", NOW)
    with db.transaction(sessions) as session:
        assert incidents.handed_off_in(session, "c.1", "fire", NOW) is None
        assert session.get(Incident, moved[0]).state == "closed"


def test_given_incidents_at_revision_0004_when_upgraded_then_kept_with_no_call_and_downgrade_works(  # noqa: E501
        db_url: str) -> None:
    """0005 adds the incident's call, category, address and outcome (an alert's incident
    reads None for each) and the notes and dispositions tables; down to 0004 and back keeps
    the incidents."""
    from sqlalchemy import text

    assert db.upgrade(db_url, "0004") == "0004"
    engine = db.make_engine(db_url)
    try:
        now = dt.datetime(2026, 12, 6, 12, 0)
        with engine.begin() as connection:
            connection.execute(text(
                "INSERT INTO incidents (state, type, created_at, updated_at)"
                " VALUES ('new', 'panic', :now, :now)"), {"now": now})
        assert db.upgrade(db_url) == db.head_revision()
        with engine.connect() as connection:
            rows = connection.execute(text(
                "SELECT state, linkedid, category, address, outcome FROM incidents")).all()
            assert [tuple(r) for r in rows] == [("new", None, None, None, None)]
            assert connection.execute(text("SELECT count(*) FROM call_notes")).scalar() == 0
        from alembic import command

        cfg = db._alembic_config()
        with engine.begin() as connection:
            cfg.attributes["connection"] = connection
            command.downgrade(cfg, "0004")
        assert db.current_revision(engine) == "0004"
        assert db.upgrade(db_url) == db.head_revision()
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM incidents")).scalar() == 1
    finally:
        engine.dispose()


def test_given_a_call_for_an_alerts_incident_then_its_case_is_that_incident(
        sessions: sessionmaker[Session]) -> None:
    """An alert's callback call carries its incident: the case shows it, a note joins it,
    opening another is refused while it is live, and the close goes through its table."""
    from dispatcher.calllog import store_incidents

    with db.transaction(sessions) as session:
        device = store_incidents.add_device(session, "app-1", now=NOW)
        alert = store_incidents.record_alert(session, device, "a-1", "medical",
                                             callback_number=NUMBER, note="chest pain",
                                             now=NOW)
        store_incidents.set_incident_state(session, alert.incident.id, "operator_ringing",
                                           now=NOW)
        store_incidents.set_incident_state(session, alert.incident.id, "talking", now=NOW)
        call = add_call(session, "cb.1", NOW, answered_by="201")
        call.incident_id = alert.incident.id
        incident_id = alert.incident.id
    with db.transaction(sessions) as session:
        incidents.add_note_in(session, "cb.1", "on the way", "201", NOW)
        case = incidents.call_case_in(session, "cb.1")
    assert case["incident"]["id"] == incident_id and case["incident"]["note"] == "chest pain"
    assert [n["incident_id"] for n in case["notes"]] == [incident_id]
    with pytest.raises(incidents.CaseConflict), db.transaction(sessions) as session:
        incidents.open_incident_in(session, "cb.1", NUMBER, "health", "", "", "201", NOW)
    with db.transaction(sessions) as session:
        closed = incidents.close_incident_in(session, "cb.1", "taken to hospital", "201", NOW)
    assert closed["incident"]["state"] == "closed"
