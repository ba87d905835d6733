"""The alert path's inserts on the driver's cursor (``calllog.driver_insert``) store rows
exactly as SQLAlchemy's ORM stores them, on SQLite and PostgreSQL: same columns, same stored
text for datetimes and nulls, ids in the rows' order."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from dispatcher.alerts import storage
from dispatcher.alerts.intake import AlertRequest, Location
from dispatcher.calllog import db, store_incidents
from dispatcher.calllog.driver_insert import DriverInsert
from dispatcher.calllog.models import Alert, Callback, Incident, IncidentTransition

NOW = dt.datetime(2026, 12, 7, 6, 30, 15, 123456, tzinfo=dt.UTC)
FIX = dt.datetime(2026, 12, 7, 6, 29, 58, tzinfo=dt.UTC)


def test_given_the_same_alerts_then_the_driver_path_stores_what_the_orm_path_stores(
        sessions: sessionmaker[Session], engine: Engine) -> None:
    """Alerts with and without a location, fix time and note go once through the batch path
    (driver cursor) and once, on a twin device, through the one-by-one ORM path
    (``commit_alert``): every stored column but the ids and the device is equal, as stored."""
    with db.transaction(sessions) as session:
        for name in ("fast", "orm"):
            store_incidents.add_device(session, name, token=f"token-of-{name}-0123456789",
                                       callback_number="0812000", now=NOW)
    with sessions() as session:
        seen = {name: storage.device_credentials(session, name) for name in ("fast", "orm")}

    def alerts(device: str) -> list[tuple[AlertRequest, object]]:
        return [
            (AlertRequest("a-1", device, "panic", Location(1.4756, 125.1736, 12.5, FIX),
                          "081234567", "pintu terkunci"), seen[device]),
            (AlertRequest("a-2", device, "medical", None, None, None), seen[device]),
            (AlertRequest("a-3", device, "fire", Location(-0.5, 124.9, None, None),
                          None, "asap"), seen[device]),
        ]

    with db.transaction(sessions) as session:
        fast = storage.commit_alerts(session, alerts("fast"), NOW)
    with db.transaction(sessions) as session:
        orm = [storage.commit_alert(session, request, device, NOW)
               for request, device in alerts("orm")]
    assert all(r.created for r in fast + orm)

    def stored(table: str, receipts: list[storage.AlertReceipt], key: str) -> list[tuple]:
        # Every column as stored, but the ones naming rows (which differ between twins).
        ids = {r.incident_id for r in receipts}
        with engine.connect() as connection:
            columns = [c for c in connection.exec_driver_sql(
                f"SELECT * FROM {table} LIMIT 0").keys()
                if c not in ("id", "device_id", "incident_id")]
            rows = connection.exec_driver_sql(
                f"SELECT {key}, {', '.join(columns)} FROM {table} ORDER BY id").all()
        return [tuple(row[1:]) for row in rows if row[0] in ids]

    for table, key in (("incidents", "id"), ("alerts", "incident_id"),
                       ("incident_transitions", "incident_id"), ("callbacks", "incident_id")):
        got, want = stored(table, fast, key), stored(table, orm, key)
        assert len(got) == 3, table
        assert got == want, table

    with sessions() as session:
        for receipt in fast:  # and the ORM reads the driver's rows back as its own
            incident = session.get(Incident, receipt.incident_id)
            assert incident.created_at == NOW
            assert session.get(Callback, receipt.callback.callback_id).incident_id == incident.id
        first = session.get(Incident, fast[0].incident_id)
        assert (first.fix_time, first.note, first.accuracy_m) == (FIX, "pintu terkunci", 12.5)
        assert session.scalar(select(Alert.received_at).where(
            Alert.incident_id == first.id)) == NOW
        assert session.query(IncidentTransition).count() == 6


def test_given_rows_then_ids_come_back_in_the_rows_order(
        sessions: sessionmaker[Session], engine: Engine) -> None:
    """Fifty incidents inserted in one call: each returned id is the row holding that row's
    own callback number."""
    insert = DriverInsert(Incident.__table__, ("state", "type", "callback_number",
                                               "created_at", "updated_at"),
                          engine.dialect, returning_id=True)
    with db.transaction(sessions) as session:
        ids = insert.run(session.connection(), [
            ("new", "panic", f"0812{i:04d}", NOW, NOW) for i in range(50)])
    assert len(set(ids)) == 50
    with engine.connect() as connection:
        numbers = dict(connection.execute(text(
            "SELECT id, callback_number FROM incidents")).all())
    assert [numbers[i] for i in ids] == [f"0812{i:04d}" for i in range(50)]


def test_given_an_unknown_column_then_refused_by_name(engine: Engine) -> None:
    with pytest.raises(ValueError, match="incidents has no column 'colour'"):
        DriverInsert(Incident.__table__, ("state", "colour"), engine.dialect)
