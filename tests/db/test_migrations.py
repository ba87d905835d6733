"""Upgrading a database that already holds data, one revision at a time."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import text

from dispatcher.calllog import db


def test_given_callbacks_at_revision_0001_when_upgraded_then_they_count_no_missed_attempt(
        db_url: str) -> None:
    """0002 adds callbacks.citizen_no_answers: existing rows read 0, the schema is at head."""
    assert db.upgrade(db_url, "0001") == "0001"
    engine = db.make_engine(db_url)
    try:
        now = dt.datetime(2026, 11, 27, 12, 0)
        with engine.begin() as connection:
            connection.execute(text(
                "INSERT INTO callbacks (number, state, reason, attempts, created_at, updated_at)"
                " VALUES ('0812', 'pending', 'alert', 1, :now, :now)"), {"now": now})
        assert db.upgrade(db_url) == db.head_revision()
        with engine.connect() as connection:
            rows = connection.execute(text(
                "SELECT number, attempts, citizen_no_answers FROM callbacks")).all()
        assert [tuple(r) for r in rows] == [("0812", 1, 0)]
    finally:
        engine.dispose()


def test_given_calls_at_revision_0002_when_upgraded_then_they_are_citizens_and_selftests_table_exists(  # noqa: E501
        db_url: str) -> None:
    """0003 adds calls.test (existing calls read as citizens' calls, never tests) and the
    selftest_runs table; downgrading to 0002 and back keeps the calls."""
    assert db.upgrade(db_url, "0002") == "0002"
    engine = db.make_engine(db_url)
    try:
        now = dt.datetime(2026, 11, 29, 12, 0)
        with engine.begin() as connection:
            connection.execute(text(
                "INSERT INTO calls (linkedid, direction, caller_number, caller_name, dialed,"
                " started_at, outcome, queue_passes, source)"
                " VALUES ('1.1', 'inbound', '0812', '', '112', :now, 'answered', 1, 'ami')"),
                {"now": now})
        assert db.upgrade(db_url) == db.head_revision()
        with engine.connect() as connection:
            rows = connection.execute(text("SELECT linkedid, test FROM calls")).all()
            assert [tuple(r) for r in rows] == [("1.1", False)]
            assert connection.execute(text("SELECT count(*) FROM selftest_runs")).scalar() == 0
    finally:
        engine.dispose()
