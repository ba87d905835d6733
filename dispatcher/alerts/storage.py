"""The alerts' database work: one function per operation, each taking a session in a transaction.

They run in the call log's writer thread (``CallLogWriter.submit``) or a reader thread, never on
the reactor thread, and return plain snapshots (dataclasses, dicts), never ORM objects: those
belong to the session of the thread that loaded them.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select, text, tuple_
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dispatcher.alerts.auth import DeviceCredentials
from dispatcher.alerts.incident import IncidentInput, next_state
from dispatcher.alerts.intake import AlertRequest
from dispatcher.callbacks import store as callback_store
from dispatcher.callbacks.store import CallbackJob
from dispatcher.calllog import store_callbacks, store_incidents
from dispatcher.calllog.driver_insert import DriverInsert
from dispatcher.calllog.models import (
    Agency,
    Alert,
    Callback,
    Device,
    Incident,
    IncidentTransition,
    Operator,
    utc,
)

__all__ = [
    "AlertReceipt",
    "CallbackJob",
    "DeviceChanged",
    "NoCallbackNumber",
    "TransitionResult",
    "button_device_id",
    "commit_alert",
    "commit_alerts",
    "commit_button_call",
    "device_credentials",
    "incident_document",
    "list_devices",
    "pending_callbacks",
    "set_callback",
    "sync_buttons",
    "transition",
]


class DeviceChanged(Exception):
    """The device was revoked or re-keyed between authentication and commit."""


class NoCallbackNumber(Exception):
    """The alert has no number to call back and its device has no default one."""


@dataclass(frozen=True)
class AlertReceipt:
    """What the API answers about a stored alert."""

    incident_id: int
    state: str
    created: bool
    callback: CallbackJob | None


@dataclass(frozen=True)
class TransitionResult:
    """An incident's move: from, to, and when."""

    incident_id: int
    from_state: str
    to_state: str


def button_device_id(extension: str) -> str:
    """The device id of the physical button on SIP extension ``extension``."""
    return f"button-{extension}"


def _credentials(device: Device) -> DeviceCredentials:
    return DeviceCredentials(
        pk=device.id, device_id=device.device_id, kind=device.kind, enabled=device.enabled,
        token_hash=device.token_hash, hmac_key=device.hmac_key,
        callback_number=device.callback_number, lat=device.lat, lon=device.lon,
    )


def device_credentials(session: Session, device_id: str) -> DeviceCredentials | None:
    """The device's credentials snapshot, or None if it is not enrolled."""
    device = store_incidents.get_device(session, device_id)
    return None if device is None else _credentials(device)


def commit_alert(session: Session, request: AlertRequest, seen: DeviceCredentials,
                 now: dt.datetime) -> AlertReceipt:
    """Store the alert, its incident and the callback it is owed, once per alert id.

    ``seen`` is the device as authenticated: if it was revoked or its credentials changed
    since, nothing is stored (:class:`DeviceChanged`). A retry of a stored alert returns the
    first one's incident with ``created=False`` whatever it carries.
    """
    device = store_incidents.get_device(session, request.device_id)
    if (device is None or not device.enabled or device.id != seen.pk
            or device.token_hash != seen.token_hash or device.hmac_key != seen.hmac_key):
        raise DeviceChanged(request.device_id)
    existing = session.scalar(select(Alert).where(Alert.device_id == device.id,
                                                  Alert.alert_id == request.alert_id))
    if existing is not None:
        return AlertReceipt(existing.incident_id, existing.incident.state, False, None)
    number = request.callback_number or device.callback_number
    if number is None:
        raise NoCallbackNumber(request.device_id)
    loc = request.location
    outcome = store_incidents.record_alert(
        session, device, request.alert_id, request.type,
        lat=loc.lat if loc else None, lon=loc.lon if loc else None,
        accuracy_m=loc.accuracy_m if loc else None, fix_time=loc.fix_time if loc else None,
        callback_number=number, note=request.note, now=now,
    )
    if not outcome.created:
        return AlertReceipt(outcome.incident.id, outcome.incident.state, False, None)
    callback = store_callbacks.create_callback(session, number, reason="alert",
                                               incident_id=outcome.incident.id, now=now)
    job = CallbackJob(callback.id, outcome.incident.id, number, 0)
    return AlertReceipt(outcome.incident.id, outcome.incident.state, True, job)


def commit_alerts(session: Session, batch: list[tuple[AlertRequest, DeviceCredentials]],
                  now: dt.datetime) -> list[AlertReceipt | Exception]:
    """:func:`commit_alert` for many alerts in a few statements (the API's hot path).

    Same rules, same results, one per alert in order (an exception object for a refused
    one). Rows are inserted with multi-row statements instead of one ORM flush per object:
    at a thousand alerts a second the ORM's per-object cost, not the disk, is the limit.

    A unique-constraint race (another server process storing the same alert between this
    batch's read and its insert) is resolved alert by alert with :func:`commit_alert`. On
    SQLite, inside a savepoint here. On PostgreSQL the batch is two statements and no
    savepoint (each statement is a round trip to the server, and under load the round trips
    are the alert's wait): the race aborts the transaction, the call log's writer redoes the
    job in a transaction of its own, and that one's read finds the other process's alert.
    """
    if session.get_bind().dialect.name == "postgresql":
        return _commit_alerts_fast(session, batch, now)
    try:
        with session.begin_nested():
            return _commit_alerts_fast(session, batch, now)
    except IntegrityError:
        out: list[AlertReceipt | Exception] = []
        for request, seen in batch:
            try:
                with session.begin_nested():
                    out.append(commit_alert(session, request, seen, now))
            except (DeviceChanged, NoCallbackNumber) as exc:
                out.append(exc)
        return out


# The batch's (device, alert id) pairs as rows of a JSON array, joined to the unique index
# of alerts. SQLite plans ``(device_id, alert_id) IN (VALUES ...)`` as a scan of the whole
# alerts table for every batch (a cost that grows with every alert ever stored: 117 ms a
# batch at 200,000 rows); driven from the pairs, each is one index search. One bound
# parameter whatever the batch's size, so the statement is compiled once.
_KNOWN_ALERTS_SQLITE = text(
    "WITH batch(device_id, alert_id) AS ("
    " SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(:pairs))"
    " SELECT alerts.device_id, alerts.alert_id, alerts.incident_id, incidents.state"
    " FROM batch JOIN alerts ON alerts.device_id = batch.device_id"
    " AND alerts.alert_id = batch.alert_id"
    " JOIN incidents ON incidents.id = alerts.incident_id")


def _known_alerts(connection: Connection, keys: list[tuple[int, str]]) -> Any:
    """Rows ``(device pk, alert id, incident id, state)`` of the ``keys`` already stored."""
    alerts_t, incidents_t = Alert.__table__, Incident.__table__
    if connection.dialect.name == "sqlite":
        return connection.execute(_KNOWN_ALERTS_SQLITE, {"pairs": json.dumps(keys)})
    # PostgreSQL turns a row-value IN list into index searches by itself.
    return connection.execute(
        select(alerts_t.c.device_id, alerts_t.c.alert_id, alerts_t.c.incident_id,
               incidents_t.c.state)
        .join(incidents_t, incidents_t.c.id == alerts_t.c.incident_id)
        .where(tuple_(alerts_t.c.device_id, alerts_t.c.alert_id).in_(keys)))


def _commit_alerts_fast(session: Session, batch: list[tuple[AlertRequest, DeviceCredentials]],
                        now: dt.datetime) -> list[AlertReceipt | Exception]:
    # Core statements and the driver's cursor, not ORM entities: the ORM's per-statement
    # machinery cost more than the database work itself (driver_insert).
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        devices, existing = _read_batch_pg(connection, batch)
    else:
        devices, existing = _read_batch(connection, batch)
    out: list[AlertReceipt | Exception | None] = [None] * len(batch)
    fresh: list[tuple[int, AlertRequest, Any, str]] = []
    first_in_batch: dict[tuple[int, str], int] = {}
    for i, (request, seen) in enumerate(batch):
        device = devices.get(request.device_id)
        if (device is None or not device.enabled or device.id != seen.pk
                or device.token_hash != seen.token_hash or device.hmac_key != seen.hmac_key):
            out[i] = DeviceChanged(request.device_id)
            continue
        key = (device.id, request.alert_id)
        if key in existing:
            incident_id, state = existing[key]
            out[i] = AlertReceipt(incident_id, state, False, None)
            continue
        if key in first_in_batch:
            continue  # a retry inside the same batch: answered from the first below
        number = request.callback_number or device.callback_number
        if number is None:
            out[i] = NoCallbackNumber(request.device_id)
            continue
        first_in_batch[key] = i
        fresh.append((i, request, device, number))
    if fresh:
        insert = _insert_fresh_pg if connection.dialect.name == "postgresql" else _insert_fresh
        for (i, _, _, number), (incident_id, callback_id) in zip(
                fresh, insert(connection, fresh, now), strict=True):
            out[i] = AlertReceipt(incident_id, "new", True,
                                  CallbackJob(callback_id, incident_id, number, 0))
    for i, (request, _) in enumerate(batch):
        if out[i] is None:  # the in-batch retry of an alert created just above
            device = devices[request.device_id]
            first = out[first_in_batch[(device.id, request.alert_id)]]
            assert isinstance(first, AlertReceipt)
            out[i] = AlertReceipt(first.incident_id, first.state, False, None)
    return [o for o in out if o is not None]


# A fresh alert to store: its place in the batch, the request, the device's row, the number
# to call back.
_Fresh = tuple[int, AlertRequest, Any, str]


def _read_batch(connection: Connection, batch: list[tuple[AlertRequest, DeviceCredentials]]
                ) -> tuple[dict[str, Any], dict[tuple[int, str], tuple[int, str]]]:
    """The batch's devices (by device id) and its alerts already stored ((device pk, alert
    id) -> (incident id, state)): two statements."""
    devices_t = Device.__table__
    device_ids = {request.device_id for request, _ in batch}
    devices = {row.device_id: row for row in connection.execute(
        select(devices_t.c.id, devices_t.c.device_id, devices_t.c.enabled,
               devices_t.c.token_hash, devices_t.c.hmac_key, devices_t.c.callback_number,
               devices_t.c.lat, devices_t.c.lon)
        .where(devices_t.c.device_id.in_(device_ids)))}
    keys = {(devices[r.device_id].id, r.alert_id) for r, _ in batch if r.device_id in devices}
    existing: dict[tuple[int, str], tuple[int, str]] = {}
    if keys:
        existing = {(row[0], row[1]): (row[2], row[3])
                    for row in _known_alerts(connection, sorted(keys))}
    return devices, existing


# PostgreSQL: the batch's devices and, on the same rows, the batch's alerts already stored
# (NULL when none): one statement, each pair one search of the alerts' unique index. The
# pairs arrive as two arrays.
_READ_BATCH_PG = (
    "SELECT d.id, d.device_id, d.enabled, d.token_hash, d.hmac_key, d.callback_number,"
    " d.lat, d.lon, a.alert_id, a.incident_id, i.state"
    " FROM devices d"
    " LEFT JOIN unnest(%(devices)s::text[], %(alerts)s::text[]) AS p(device_id, alert_id)"
    "  ON p.device_id = d.device_id"
    " LEFT JOIN alerts a ON a.device_id = d.id AND a.alert_id = p.alert_id"
    " LEFT JOIN incidents i ON i.id = a.incident_id"
    " WHERE d.device_id = ANY(%(devices)s::text[])")


@dataclass(frozen=True)
class _DeviceRow:
    id: int
    device_id: str
    enabled: bool
    token_hash: str | None
    hmac_key: str | None
    callback_number: str | None
    lat: float | None
    lon: float | None


def _read_batch_pg(connection: Connection, batch: list[tuple[AlertRequest, DeviceCredentials]]
                   ) -> tuple[dict[str, Any], dict[tuple[int, str], tuple[int, str]]]:
    """:func:`_read_batch` in one round trip."""
    rows = connection.exec_driver_sql(_READ_BATCH_PG, {
        "devices": [r.device_id for r, _ in batch], "alerts": [r.alert_id for r, _ in batch]})
    devices: dict[str, Any] = {}
    existing: dict[tuple[int, str], tuple[int, str]] = {}
    for row in rows:
        if row[1] not in devices:
            devices[row[1]] = _DeviceRow(*row[:8])
        if row[8] is not None:
            existing[(row[0], row[8])] = (row[9], row[10])
    return devices, existing


def _insert_fresh(connection: Connection, fresh: list[_Fresh], now: dt.datetime
                  ) -> list[tuple[int, int]]:
    """Store each fresh alert with its incident, first transition and callback; (incident
    id, callback id) of each, in order. Four multi-row statements."""
    inserts = _driver_inserts(connection.dialect)
    incident_ids = inserts.incidents.run(connection, [(
        "new", request.type, device.id,
        request.location.lat if request.location else device.lat,
        request.location.lon if request.location else device.lon,
        request.location.accuracy_m if request.location else None,
        request.location.fix_time if request.location else None,
        number, request.note, now, now,
    ) for _, request, device, number in fresh])
    inserts.alerts.run(connection, [(
        device.id, request.alert_id, request.type,
        request.location.lat if request.location else None,
        request.location.lon if request.location else None,
        request.location.accuracy_m if request.location else None,
        request.location.fix_time if request.location else None,
        number, request.note, now, incident_id,
    ) for (_, request, device, number), incident_id in zip(fresh, incident_ids, strict=True)])
    inserts.transitions.run(connection, [
        (incident_id, now, None, "new", f"alert {request.alert_id}")
        for (_, request, _, _), incident_id in zip(fresh, incident_ids, strict=True)])
    callback_ids = inserts.callbacks.run(connection, [
        (number, "pending", "alert", incident_id, 0, 0, now, now)
        for (_, _, _, number), incident_id in zip(fresh, incident_ids, strict=True)])
    return list(zip(incident_ids, callback_ids, strict=True))


# PostgreSQL: the four inserts as one statement. The incidents' ids are drawn from their
# sequence first (a materialized CTE: once per row), so the alert, transition and callback
# of each row name their incident without a round trip in between; the foreign keys are
# checked at the statement's end, when every row is in. Rows arrive as one array per column.
_INSERT_FRESH_PG = (
    "WITH src AS MATERIALIZED ("
    " SELECT nextval(pg_get_serial_sequence('incidents', 'id')) AS incident_id, r.*"
    " FROM unnest(%(ord)s::int[], %(type)s::text[], %(device)s::int[],"
    "  %(inc_lat)s::float8[], %(inc_lon)s::float8[], %(lat)s::float8[], %(lon)s::float8[],"
    "  %(accuracy)s::float8[], %(fix_time)s::timestamp[], %(number)s::text[],"
    "  %(note)s::text[], %(alert_id)s::text[])"
    " AS r(ord, type, device_id, inc_lat, inc_lon, lat, lon, accuracy_m, fix_time, number,"
    "  note, alert_id)"
    " ORDER BY r.ord),"
    " inc AS (INSERT INTO incidents (id, state, type, device_id, lat, lon, accuracy_m,"
    "  fix_time, callback_number, note, created_at, updated_at)"
    "  SELECT incident_id, 'new', type, device_id, inc_lat, inc_lon, accuracy_m, fix_time,"
    "  number, note, %(now)s, %(now)s FROM src),"
    " al AS (INSERT INTO alerts (device_id, alert_id, type, lat, lon, accuracy_m, fix_time,"
    "  callback_number, note, received_at, incident_id)"
    "  SELECT device_id, alert_id, type, lat, lon, accuracy_m, fix_time, number, note,"
    "  %(now)s, incident_id FROM src),"
    " tr AS (INSERT INTO incident_transitions (incident_id, at, from_state, to_state, detail)"
    "  SELECT incident_id, %(now)s, NULL, 'new', 'alert ' || alert_id FROM src),"
    " cb AS (INSERT INTO callbacks (number, state, reason, incident_id, attempts,"
    "  citizen_no_answers, created_at, updated_at)"
    "  SELECT number, 'pending', 'alert', incident_id, 0, 0, %(now)s, %(now)s FROM src"
    "  RETURNING id, incident_id)"
    " SELECT src.incident_id, cb.id FROM src JOIN cb ON cb.incident_id = src.incident_id"
    " ORDER BY src.ord")


def _naive_utc(value: dt.datetime | None) -> dt.datetime | None:
    """As the call log's timestamps are stored (models.UTCDateTime): naive UTC."""
    return None if value is None else utc(value).replace(tzinfo=None)


def _insert_fresh_pg(connection: Connection, fresh: list[_Fresh], now: dt.datetime
                     ) -> list[tuple[int, int]]:
    """:func:`_insert_fresh` in one round trip."""
    locs = [request.location for _, request, _, _ in fresh]
    params = {
        "ord": list(range(len(fresh))),
        "type": [request.type for _, request, _, _ in fresh],
        "device": [device.id for _, _, device, _ in fresh],
        "inc_lat": [loc.lat if loc else device.lat
                    for loc, (_, _, device, _) in zip(locs, fresh, strict=True)],
        "inc_lon": [loc.lon if loc else device.lon
                    for loc, (_, _, device, _) in zip(locs, fresh, strict=True)],
        "lat": [loc.lat if loc else None for loc in locs],
        "lon": [loc.lon if loc else None for loc in locs],
        "accuracy": [loc.accuracy_m if loc else None for loc in locs],
        "fix_time": [_naive_utc(loc.fix_time) if loc else None for loc in locs],
        "number": [number for _, _, _, number in fresh],
        "note": [request.note for _, request, _, _ in fresh],
        "alert_id": [request.alert_id for _, request, _, _ in fresh],
        "now": _naive_utc(now),
    }
    rows = connection.exec_driver_sql(_INSERT_FRESH_PG, params).all()
    if len(rows) != len(fresh):
        raise RuntimeError(f"{len(fresh)} alerts inserted, {len(rows)} callbacks returned")
    return [(row[0], row[1]) for row in rows]


@dataclass(frozen=True)
class _AlertInserts:
    incidents: DriverInsert
    alerts: DriverInsert
    transitions: DriverInsert
    callbacks: DriverInsert


_INSERTS: dict[str, _AlertInserts] = {}


def _driver_inserts(dialect: Dialect) -> _AlertInserts:
    """The alert path's four inserts, compiled once per dialect (see driver_insert)."""
    found = _INSERTS.get(dialect.name)
    if found is None:
        found = _INSERTS[dialect.name] = _AlertInserts(
            incidents=DriverInsert(Incident.__table__, (
                "state", "type", "device_id", "lat", "lon", "accuracy_m", "fix_time",
                "callback_number", "note", "created_at", "updated_at"), dialect,
                returning_id=True),
            alerts=DriverInsert(Alert.__table__, (
                "device_id", "alert_id", "type", "lat", "lon", "accuracy_m", "fix_time",
                "callback_number", "note", "received_at", "incident_id"), dialect),
            transitions=DriverInsert(IncidentTransition.__table__, (
                "incident_id", "at", "from_state", "to_state", "detail"), dialect),
            callbacks=DriverInsert(Callback.__table__, (
                "number", "state", "reason", "incident_id", "attempts",
                "citizen_no_answers", "created_at", "updated_at"), dialect, returning_id=True))
    return found


def commit_button_call(session: Session, extension: str, linkedid: str,
                       now: dt.datetime) -> AlertReceipt:
    """Open (once per call) the incident of a physical button's call to the panic number."""
    device = store_incidents.get_device(session, button_device_id(extension))
    if device is None:
        raise LookupError(f"no button device for extension {extension}")
    outcome = store_incidents.record_alert(session, device, f"call-{linkedid}", "panic",
                                           callback_number=extension,
                                           note=device.label or None, now=now)
    return AlertReceipt(outcome.incident.id, outcome.incident.state, outcome.created, None)


def sync_buttons(session: Session, buttons: list[tuple[str, str, float, float]],
                 now: dt.datetime) -> list[str]:
    """Make a ``button`` device row for each configured button (extension, name, lat, lon).

    A button authenticates as a SIP endpoint, never on the API: its row has no credential.
    Returns the device ids.
    """
    ids = []
    for extension, name, lat, lon in buttons:
        device_id = button_device_id(extension)
        device = store_incidents.get_device(session, device_id)
        if device is None:
            store_incidents.add_device(session, device_id, kind="button", label=name,
                                       callback_number=extension, lat=lat, lon=lon, now=now)
        else:
            device.label, device.lat, device.lon = name, lat, lon
            device.callback_number, device.enabled = extension, True
        ids.append(device_id)
    return ids


def list_devices(session: Session) -> list[dict[str, Any]]:
    """Every enrolled device (without secrets), for ``siaga device list``."""
    rows = session.scalars(select(Device).order_by(Device.device_id))
    return [{
        "device_id": d.device_id, "kind": d.kind, "label": d.label, "enabled": d.enabled,
        # An app enrolled by link has no credential until its code is exchanged.
        "auth": "+".join(a for a, on in (("token", d.token_hash), ("hmac", d.hmac_key)) if on)
        or ("link" if d.kind == "app" else "none"),
        "callback_number": d.callback_number, "created_at": d.created_at.isoformat(),
        "revoked_at": d.revoked_at.isoformat() if d.revoked_at else None,
    } for d in rows]


def transition(session: Session, incident_id: int, event: IncidentInput,
               now: dt.datetime, detail: str = "", operator: str | None = None,
               agency: str | None = None) -> TransitionResult:
    """Apply ``event`` to the incident as the database has it (the state machine decides).

    Raises ``LookupError`` for an unknown incident and ``InvalidTransition`` for a pair the
    table refuses; nothing is written then.
    """
    incident = session.get(Incident, incident_id)
    if incident is None:
        raise LookupError(f"no incident {incident_id}")
    before = incident.state
    after = next_state(before, event)
    text = event.value + (f": {detail}" if detail else "")
    store_incidents.set_incident_state(session, incident_id, after.value, now=now, detail=text,
                                       operator_code=operator, agency_code=agency)
    return TransitionResult(incident_id, before, after.value)


def set_callback(session: Session, callback_id: int, state: str, now: dt.datetime) -> None:
    """Move a callback to ``state`` (pending, ringing, done, failed)."""
    callback_store.set_state(session, callback_id, state, now)


def citizen_no_answer(session: Session, callback_id: int, now: dt.datetime) -> int:
    """Count an attempt the citizen did not answer (kept for a restarted server)."""
    return callback_store.citizen_no_answer(session, callback_id, now)


def pending_callbacks(session: Session) -> list[CallbackJob]:
    """Alert callbacks not finished whose incident still wants one (recovery at start-up):
    the alerts' part of the one restore, ``dispatcher.callbacks.store.owed_callbacks``."""
    return callback_store.owed_callbacks(session).alerts


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def incident_document(session: Session, incident_id: int) -> dict[str, Any] | None:
    """The incident as the API shows it to operators, or None if there is none."""
    incident = session.get(Incident, incident_id)
    if incident is None:
        return None
    device = session.get(Device, incident.device_id) if incident.device_id else None
    operator = session.get(Operator, incident.operator_id) if incident.operator_id else None
    agency = session.get(Agency, incident.agency_id) if incident.agency_id else None
    location = None
    if incident.lat is not None and incident.lon is not None:
        location = {"lat": incident.lat, "lon": incident.lon, "accuracy_m": incident.accuracy_m,
                    "fix_time": _iso(incident.fix_time)}
    callback = session.scalar(select(Callback).where(Callback.incident_id == incident.id)
                              .order_by(Callback.id.desc()))
    transitions = session.scalars(select(IncidentTransition)
                                  .where(IncidentTransition.incident_id == incident.id)
                                  .order_by(IncidentTransition.id))
    return {
        "id": incident.id,
        "state": incident.state,
        "type": incident.type,
        "device": None if device is None else {"device_id": device.device_id,
                                               "kind": device.kind, "label": device.label},
        "location": location,
        "callback_number": incident.callback_number,
        "note": incident.note,
        "operator": operator.code if operator else None,
        "agency": agency.code if agency else None,
        "created_at": _iso(incident.created_at),
        "updated_at": _iso(incident.updated_at),
        "closed_at": _iso(incident.closed_at),
        "alerts": [{"alert_id": a.alert_id, "received_at": _iso(a.received_at)}
                   for a in incident.alerts],
        "callback": None if callback is None else {"state": callback.state,
                                                   "attempts": callback.attempts},
        "transitions": [{"at": _iso(t.at), "from": t.from_state, "to": t.to_state,
                         "detail": t.detail} for t in transitions],
    }
