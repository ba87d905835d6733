"""The one-time enrolment code on SQLite and PostgreSQL: spent once, even by two racers."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from dispatcher.alerts import enrolment
from dispatcher.calllog import db, store_incidents
from tests.harness import wait_for

NOW = dt.datetime(2026, 11, 30, 1, 0, tzinfo=dt.UTC)
CODE = "racing-code-racing-code-0123"


def _issue(sessions: sessionmaker[Session]) -> None:
    with db.transaction(sessions) as session:
        store_incidents.add_device(session, "phone1", now=NOW)
        enrolment.issue_code(session, "phone1", CODE, NOW)


def test_given_a_code_when_exchanged_twice_then_the_second_is_refused(
        sessions: sessionmaker[Session]) -> None:
    """One token per code; the second exchange raises ``used`` and changes nothing."""
    _issue(sessions)
    with db.transaction(sessions) as session:
        first = enrolment.exchange_code(session, CODE, NOW)
    with pytest.raises(enrolment.EnrolmentRefused, match="used"), \
            db.transaction(sessions) as session:
        enrolment.exchange_code(session, CODE, NOW)
    with sessions() as session:
        device = store_incidents.get_device(session, "phone1")
        assert device.token_hash == store_incidents.hash_token(first.token)


def test_given_two_exchanges_racing_on_postgresql_then_exactly_one_token_is_given(
        engine: Engine, sessions: sessionmaker[Session]) -> None:
    """Both read the code unused; the second's conditional update waits for the first's
    commit and then finds nothing to spend: exactly one of them gets a token. (SQLite
    serializes writers, and the server writes through one writer thread anyway.)"""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite has no concurrent writers to race")
    _issue(sessions)
    first = sessions()
    first.begin()
    got = enrolment.exchange_code(first, CODE, NOW)  # holds the row's lock until commit
    outcome: list[object] = []

    def second() -> None:
        try:
            with db.transaction(sessions) as session:
                outcome.append(enrolment.exchange_code(session, CODE, NOW))
        except enrolment.EnrolmentRefused as exc:
            outcome.append(exc.reason)

    racer = threading.Thread(target=second)
    racer.start()

    def second_waits_for_the_lock() -> bool:
        with engine.connect() as watch:
            return bool(watch.scalar(text(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")))

    wait_for(second_waits_for_the_lock, 30, "the second exchange to wait for the row lock")
    first.commit()
    first.close()
    racer.join(30)
    assert outcome == ["used"]
    with sessions() as session:
        device = store_incidents.get_device(session, "phone1")
        assert device.token_hash == store_incidents.hash_token(got.token)
