"""Alerts committed in batches (``storage.commit_alerts``) on SQLite and PostgreSQL: each new
alert gets its own incident, transition and owed callback, linked to each other in the order
the batch gave, and a retry of a stored alert creates nothing."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import Engine, event, select
from sqlalchemy.orm import Session, sessionmaker

from dispatcher.alerts import storage
from dispatcher.alerts.intake import AlertRequest, Location
from dispatcher.calllog import db, store_incidents
from dispatcher.calllog.models import Alert, Callback, Incident, IncidentTransition

NOW = dt.datetime(2026, 11, 30, 1, 0, tzinfo=dt.UTC)


def test_given_a_batch_of_new_alerts_then_rows_are_linked_in_the_batch_order(
        sessions: sessionmaker[Session]) -> None:
    """Forty alerts from four devices in one batch: each receipt names the incident holding
    that alert's own number and place, its callback row points at the same incident, and a
    second batch retrying ten of them answers those from the database, creating nothing."""
    with db.transaction(sessions) as session:
        for n in range(4):
            store_incidents.add_device(session, f"app{n}", token=f"token-of-app-{n}-0123456789",
                                       callback_number=None, now=NOW)
    with sessions() as session:
        seen = {f"app{n}": storage.device_credentials(session, f"app{n}") for n in range(4)}
    batch = [(AlertRequest(f"alert-{i}", f"app{i % 4}", "panic",
                           Location(1.0 + i / 100, 125.0, 10.0, None), f"08123{i:05d}",
                           None), seen[f"app{i % 4}"]) for i in range(40)]
    with db.transaction(sessions) as session:
        receipts = storage.commit_alerts(session, batch, NOW)
    assert all(r.created for r in receipts)
    with sessions() as session:
        for i, receipt in enumerate(receipts):
            incident = session.get(Incident, receipt.incident_id)
            assert (incident.callback_number, incident.lat) == (f"08123{i:05d}", 1.0 + i / 100)
            alert = session.scalar(select(Alert).where(Alert.incident_id == incident.id))
            assert alert.alert_id == f"alert-{i}"
            callback = session.get(Callback, receipt.callback.callback_id)
            assert (callback.incident_id, callback.number) == (incident.id, f"08123{i:05d}")
        assert session.query(IncidentTransition).count() == 40

    with db.transaction(sessions) as session:
        again = storage.commit_alerts(session, batch[:10], NOW)
    assert [(r.created, r.incident_id) for r in again] == [
        (False, r.incident_id) for r in receipts[:10]]
    with sessions() as session:
        assert session.query(Alert).count() == 40
        assert session.query(Callback).count() == 40


def test_given_stored_alerts_when_a_batch_looks_for_retries_then_no_statement_scans_alerts(
        sessions: sessionmaker[Session], engine: Engine) -> None:
    """Every batch asks which of its alert ids are already stored. The alerts table only
    grows (months of a city's alerts), so that question must be index searches driven by the
    batch, never a scan of the table: each SELECT the batch runs is explained on SQLite (the
    database whose planner scanned for a row-value IN list) and none reads alerts by a
    scan. A retry among new alerts is still answered from the database."""
    if engine.dialect.name != "sqlite":
        pytest.skip("EXPLAIN QUERY PLAN is SQLite's")
    with db.transaction(sessions) as session:
        store_incidents.add_device(session, "app", token="token-of-app-0123456789",
                                   callback_number=None, now=NOW)
    with sessions() as session:
        seen = storage.device_credentials(session, "app")

    def batch(first: int, count: int) -> list[tuple[AlertRequest, Any]]:
        return [(AlertRequest(f"alert-{i}", "app", "panic", None, "0812345678", None), seen)
                for i in range(first, first + count)]

    with db.transaction(sessions) as session:
        storage.commit_alerts(session, batch(0, 200), NOW)
    selects: list[tuple[str, Any]] = []

    def note(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
             executemany: bool) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            selects.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", note)
    try:
        with db.transaction(sessions) as session:
            receipts = storage.commit_alerts(session, batch(190, 20), NOW)
    finally:
        event.remove(engine, "before_cursor_execute", note)
    assert [r.created for r in receipts] == [False] * 10 + [True] * 10
    assert any("alert_id" in statement for statement, _ in selects)
    with engine.connect() as conn:
        for statement, parameters in selects:
            plan = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement,
                                        parameters).fetchall()
            details = [row[-1] for row in plan]
            assert not any(d.startswith("SCAN alerts") for d in details), (statement, details)


class _Undone(Exception):
    """Raised inside a transaction to make it roll back."""


def test_given_alerts_committed_in_a_transaction_that_rolls_back_then_none_is_stored(
        sessions: sessionmaker[Session]) -> None:
    """The savepoint inside ``commit_alerts`` belongs to the writer's transaction: when a
    later write of the same batch fails and the transaction rolls back, the alerts go with it
    (the writer then redoes the batch write by write). On SQLite, pysqlite emits no BEGIN, so
    the SAVEPOINT opened a transaction of its own and its RELEASE committed the alerts
    early: the redo found them stored and answered created=False with no callback to dial."""
    with db.transaction(sessions) as session:
        store_incidents.add_device(session, "app0", token="token-of-app-0-0123456789",
                                   callback_number="0812000", now=NOW)
    with sessions() as session:
        seen = storage.device_credentials(session, "app0")
    batch = [(AlertRequest(f"alert-{i}", "app0", "panic", None, None, None), seen)
             for i in range(3)]
    try:
        with db.transaction(sessions) as session:
            assert all(r.created for r in storage.commit_alerts(session, batch, NOW))
            raise _Undone
    except _Undone:
        pass
    with sessions() as session:
        assert session.query(Alert).count() == 0
        assert session.query(Incident).count() == 0
        assert session.query(Callback).count() == 0
    with db.transaction(sessions) as session:
        receipts = storage.commit_alerts(session, batch, NOW)
    assert all(r.created and r.callback is not None for r in receipts)


def test_given_a_batch_without_locations_then_the_incident_has_the_devices_place(
        sessions: sessionmaker[Session]) -> None:
    """An alert without a fix: its incident is placed at the device's registered place (a
    button on a wall) while the alert row keeps no location; a note, a fix time and the
    device's own callback number travel as they came, on both databases' insert paths."""
    with db.transaction(sessions) as session:
        store_incidents.add_device(session, "button", token="token-of-button-0123456789",
                                   callback_number="0812777", lat=1.44, lon=125.18, now=NOW)
    with sessions() as session:
        seen = storage.device_credentials(session, "button")
    fix = dt.datetime(2026, 11, 30, 0, 59, 30, tzinfo=dt.UTC)
    batch = [(AlertRequest("a-1", "button", "panic", None, None, "pintu macet"), seen),
             (AlertRequest("a-2", "button", "medical", Location(1.5, 125.2, 8.0, fix),
                           "0813", None), seen)]
    with db.transaction(sessions) as session:
        first, second = storage.commit_alerts(session, batch, NOW)
    with sessions() as session:
        incident = session.get(Incident, first.incident_id)
        alert = session.scalar(select(Alert).where(Alert.alert_id == "a-1"))
        assert (incident.lat, incident.lon, incident.callback_number, incident.note) == (
            1.44, 125.18, "0812777", "pintu macet")
        assert (alert.lat, alert.lon, alert.fix_time, alert.incident_id) == (
            None, None, None, first.incident_id)
        other = session.get(Incident, second.incident_id)
        assert (other.type, other.lat, other.accuracy_m, other.fix_time) == (
            "medical", 1.5, 8.0, fix)
        assert other.created_at == NOW and other.callback_number == "0813"
        transition = session.scalar(select(IncidentTransition).where(
            IncidentTransition.incident_id == other.id))
        assert (transition.to_state, transition.detail) == ("new", "alert a-2")


def postgres_app_batch(sessions: sessionmaker[Session], engine: Engine, count: int
                       ) -> list[tuple[AlertRequest, Any]]:
    """On PostgreSQL only (else the test is skipped): device "app" enrolled, and a batch of
    ``count`` new alerts from it."""
    if engine.dialect.name != "postgresql":
        pytest.skip("the single-statement path is PostgreSQL's")
    with db.transaction(sessions) as session:
        store_incidents.add_device(session, "app", token="token-of-app-0123456789",
                                   callback_number="0812", now=NOW)
    with sessions() as session:
        seen = storage.device_credentials(session, "app")
    return [(AlertRequest(f"alert-{i}", "app", "panic", None, None, None), seen)
            for i in range(count)]


def test_given_postgresql_when_a_batch_is_stored_then_it_is_two_statements(
        sessions: sessionmaker[Session], engine: Engine) -> None:
    """On PostgreSQL every statement is a round trip to the server, and under load the
    round trips are an alert's wait for its 201: a batch of new alerts and retries is one
    read and one insert, with no savepoint."""
    batch = postgres_app_batch(sessions, engine, 30)
    with db.transaction(sessions) as session:
        storage.commit_alerts(session, batch[:10], NOW)
    statements: list[str] = []

    def note(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
             executemany: bool) -> None:
        statements.append(statement.split(None, 1)[0].upper())

    event.listen(engine, "before_cursor_execute", note)
    try:
        with db.transaction(sessions) as session:
            receipts = storage.commit_alerts(session, batch, NOW)
    finally:
        event.remove(engine, "before_cursor_execute", note)
    assert [r.created for r in receipts] == [False] * 10 + [True] * 20
    assert statements == ["SELECT", "WITH"], statements


def test_given_postgresql_when_another_process_stores_the_same_alert_meanwhile_then_redone(
        sessions: sessionmaker[Session], engine: Engine,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The race the savepoint handled on PostgreSQL: between this batch's read and its
    insert another process commits the same alert. The batch raises IntegrityError (its
    transaction is lost, nothing of it stored), and the writer's redo, in a transaction of
    its own, answers the alert from the database: stored once, with one incident."""
    from sqlalchemy.exc import IntegrityError

    batch = postgres_app_batch(sessions, engine, 3)
    read = storage._read_batch_pg
    other: list[Any] = []
    raced: list[bool] = []

    def read_then_race(connection: Any, b: Any) -> Any:
        found = read(connection, b)
        if not raced:  # the other process stores alert-1 after this read
            raced.append(True)
            with db.transaction(sessions) as session:
                other.extend(storage.commit_alerts(session, [batch[1]], NOW))
        return found

    monkeypatch.setattr(storage, "_read_batch_pg", read_then_race)
    with pytest.raises(IntegrityError), db.transaction(sessions) as session:
        storage.commit_alerts(session, batch, NOW)
    with sessions() as session:
        assert session.query(Alert).count() == 1
    with db.transaction(sessions) as session:
        redone = storage.commit_alerts(session, batch, NOW)
    assert [r.created for r in redone] == [True, False, True]
    assert redone[1].incident_id == other[0].incident_id
    with sessions() as session:
        assert session.query(Alert).count() == 3
        assert session.query(Incident).count() == 3
        assert session.query(Callback).count() == 3
