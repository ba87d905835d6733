"""Data access for the call log, alerts and incidents: one function per operation.

Every function takes a :class:`~sqlalchemy.orm.Session` already inside a transaction (see
``db.transaction``) and blocks: call them from the writer's thread
(:class:`dispatcher.calllog.writer.CallLogWriter`) or at start-up, never on the reactor thread.
They flush but never commit; the caller's transaction decides.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dispatcher.callbacks.states import check_stored_move
from dispatcher.calllog.models import (
    ALERT_TYPES,
    INCIDENT_STATES,
    Agency,
    Alert,
    Call,
    Callback,
    CallEvent,
    CelCursor,
    Device,
    Incident,
    IncidentTransition,
    IvrChoice,
    Leg,
    Operator,
    Recording,
)
from dispatcher.calllog.records import JourneyRecord


def _ts(epoch: float | None) -> dt.datetime | None:
    if epoch is None:
        return None
    return dt.datetime.fromtimestamp(epoch, dt.UTC)


def _now(now: dt.datetime | None) -> dt.datetime:
    return now if now is not None else dt.datetime.now(dt.UTC)


# --------------------------------------------------------------------------------------------
# Reference rows: operators and agencies


def ensure_operator(session: Session, code: str, name: str = "") -> Operator:
    """Return the operator with ``code``, creating it if new."""
    operator = session.scalar(select(Operator).where(Operator.code == code))
    if operator is None:
        operator = Operator(code=code, name=name or code, active=True)
        session.add(operator)
        session.flush()
    elif name and operator.name != name:
        operator.name = name
    return operator


def ensure_agency(session: Session, code: str, name: str = "") -> Agency:
    """Return the agency with ``code``, creating it if new."""
    agency = session.scalar(select(Agency).where(Agency.code == code))
    if agency is None:
        agency = Agency(code=code, name=name or code, active=True)
        session.add(agency)
        session.flush()
    elif name and agency.name != name:
        agency.name = name
    return agency


def sync_reference(
    session: Session,
    operators: Iterable[tuple[str, str]],
    agencies: Iterable[tuple[str, str]],
) -> None:
    """Make the operator and agency rows match the center's config (code, name pairs).

    Rows no longer in the config are marked inactive, never deleted: old calls refer to them.
    """
    for model, pairs, ensure in (
        (Operator, list(operators), ensure_operator),
        (Agency, list(agencies), ensure_agency),
    ):
        codes = set()
        for code, name in pairs:
            ensure(session, code, name).active = True  # type: ignore[operator]
            codes.add(code)
        for row in session.scalars(select(model)):
            row.active = row.code in codes


def sync_center(session: Session, center: Any) -> None:
    """``sync_reference`` from the center's config (``dispatcher.config.Center``)."""
    sync_reference(
        session,
        [(op.extension, op.name) for op in center.operators],
        [(agency.key, agency.name) for agency in center.agencies],
    )


# --------------------------------------------------------------------------------------------
# Journeys


def get_call(session: Session, linkedid: str) -> Call | None:
    """Return the call with this linkedid, or None."""
    return session.scalar(select(Call).where(Call.linkedid == linkedid))


def has_finished_call(session: Session, linkedid: str) -> bool:
    """True when the log holds this journey and it is finished."""
    outcome = session.scalar(select(Call.outcome).where(Call.linkedid == linkedid))
    return outcome is not None and outcome != "in_progress"


def save_journey(session: Session, record: JourneyRecord) -> Call | None:
    """Insert or replace the call for ``record.linkedid`` with everything the record holds.

    A finished call is never overwritten by an unfinished record (a late start notice), and a
    call saved live is never overwritten by a reconciled one once finished. Returns the call, or
    None when the record was ignored for those reasons.
    """
    call = get_call(session, record.linkedid)
    if call is not None and call.outcome != "in_progress":
        if not record.complete or record.source == "cel":
            return None
    if call is None:
        call = Call(linkedid=record.linkedid)
        session.add(call)
    else:
        # Children are rebuilt from the record: simpler and safer than diffing them.
        for child in (Leg, CallEvent, IvrChoice, Recording):
            session.execute(delete(child).where(child.call_id == call.id))
        session.expire(call, ["legs", "events", "ivr_choices", "recordings"])
    operators: dict[str, Operator] = {}
    agencies: dict[str, Agency] = {}

    def operator_of(code: str | None) -> Operator | None:
        if not code:
            return None
        if code not in operators:
            operators[code] = ensure_operator(session, code)
        return operators[code]

    def agency_of(code: str | None) -> Agency | None:
        if not code:
            return None
        if code not in agencies:
            agencies[code] = ensure_agency(session, code)
        return agencies[code]

    call.direction = record.direction
    call.caller_number = record.caller_number
    call.caller_name = record.caller_name
    call.dialed = record.dialed
    call.started_at = _ts(record.started_at)  # type: ignore[assignment]
    call.queued_at = _ts(record.queued_at)
    call.answered_at = _ts(record.answered_at)
    call.ended_at = _ts(record.ended_at) if record.complete else None
    call.category = record.category
    call.language = record.language
    call.outcome = record.outcome if record.complete else "in_progress"
    call.hangup_cause = record.hangup_cause
    call.answered_by = operator_of(record.answered_by)
    call.queue_passes = record.queue_passes
    call.answer_seconds = record.answer_seconds
    call.queue_seconds = record.queue_seconds
    call.talk_seconds = record.talk_seconds
    call.duration_seconds = record.duration_seconds if record.complete else None
    call.source = record.source
    call.test = record.test
    if record.incident_ref is not None and session.get(Incident, record.incident_ref):
        call.incident_id = record.incident_ref
    session.flush()
    session.add_all(
        Leg(
            call_id=call.id,
            seq=seq,
            kind=leg.kind,
            channel=leg.channel,
            uniqueid=leg.uniqueid,
            operator=operator_of(leg.operator),
            agency=agency_of(leg.agency),
            queue=leg.queue,
            call_started_at=call.started_at,
            started_at=_ts(leg.started_at),
            answered_at=_ts(leg.answered_at),
            ended_at=_ts(leg.ended_at),
            result=leg.result,
            ring_seconds=leg.ring_seconds,
            duration_seconds=leg.duration,
            fallback=leg.fallback,
        )
        for seq, leg in enumerate(record.legs)
    )
    session.add_all(
        CallEvent(
            call_id=call.id,
            seq=seq,
            at=_ts(event.at),
            kind=event.kind,
            channel=event.channel,
            detail=json.dumps(event.detail, sort_keys=True) if event.detail else "",
        )
        for seq, event in enumerate(record.events)
    )
    session.add_all(
        IvrChoice(
            call_id=call.id,
            at=_ts(choice.at),
            menu=choice.menu,
            digit=choice.digit,
            choice=choice.choice,
            language=choice.language,
        )
        for choice in record.ivr_choices
    )
    session.add_all(
        Recording(
            call_id=call.id,
            channel=rec.channel,
            path=rec.path,
            started_at=_ts(rec.started_at),
            ended_at=_ts(rec.ended_at),
        )
        for rec in record.recordings
    )
    session.flush()
    return call


def calls_between(session: Session, start: dt.datetime, end: dt.datetime) -> list[Call]:
    """Calls that arrived in ``[start, end)``, oldest first."""
    return list(
        session.scalars(
            select(Call)
            .where(Call.started_at >= start, Call.started_at < end)
            .order_by(Call.started_at)
        )
    )


def unfinished_calls(session: Session) -> list[str]:
    """Linkedids of calls still marked in progress (to be completed from CEL)."""
    return list(session.scalars(select(Call.linkedid).where(Call.outcome == "in_progress")))


# --------------------------------------------------------------------------------------------
# CEL cursors


def cel_cursor(session: Session, path: str, inode: int, size: int) -> int:
    """Where to resume reading the CEL file; 0 if it is new, rotated or truncated."""
    cursor = session.get(CelCursor, path)
    if cursor is None or cursor.inode != inode or cursor.offset > size:
        return 0
    return cursor.offset


def set_cel_cursor(
    session: Session, path: str, inode: int, offset: int, now: dt.datetime | None = None
) -> None:
    """Remember that the CEL file is reconciled up to ``offset``."""
    cursor = session.get(CelCursor, path)
    if cursor is None:
        session.add(CelCursor(path=path, inode=inode, offset=offset, updated_at=_now(now)))
    else:
        cursor.inode, cursor.offset, cursor.updated_at = inode, offset, _now(now)
    session.flush()


# --------------------------------------------------------------------------------------------
# Callbacks


def create_callback(
    session: Session,
    number: str,
    reason: str = "abandoned",
    origin_linkedid: str | None = None,
    incident_id: int | None = None,
    now: dt.datetime | None = None,
) -> Callback:
    """Record a call the center owes ``number``, pending."""
    origin = get_call(session, origin_linkedid) if origin_linkedid else None
    at = _now(now)
    callback = Callback(
        number=number,
        state="pending",
        reason=reason,
        origin_call_id=origin.id if origin else None,
        incident_id=incident_id,
        attempts=0,
        created_at=at,
        updated_at=at,
    )
    session.add(callback)
    session.flush()
    return callback


def set_callback_state(
    session: Session,
    callback_id: int,
    state: str,
    now: dt.datetime | None = None,
    result_linkedid: str | None = None,
) -> Callback:
    """Move a callback to ``state`` (ringing counts an attempt; done, failed and evicted
    close it: evicted is a hotline callback that gave way to stronger ones in a full list).
    An unknown state is a ValueError; a closed row never moves again
    (``dispatcher.callbacks.states.IllegalMove``, a ValueError): nothing is changed."""
    callback = session.get(Callback, callback_id)
    if callback is None:
        raise LookupError(f"no callback {callback_id}")
    check_stored_move(callback.state, state)
    at = _now(now)
    callback.state = state
    callback.updated_at = at
    if state == "ringing":
        callback.attempts += 1
    if state in ("done", "failed", "evicted"):
        callback.done_at = at
    if result_linkedid:
        callback.result_linkedid = result_linkedid
    session.flush()
    return callback


def count_citizen_no_answer(session: Session, callback_id: int,
                            now: dt.datetime | None = None) -> int:
    """The citizen missed one more callback attempt; the count so far."""
    callback = session.get(Callback, callback_id)
    if callback is None:
        raise LookupError(f"no callback {callback_id}")
    callback.citizen_no_answers += 1
    callback.updated_at = _now(now)
    session.flush()
    return callback.citizen_no_answers


def pending_callbacks(session: Session) -> list[Callback]:
    """Callbacks not done yet (pending or ringing), oldest first."""
    return list(
        session.scalars(
            select(Callback)
            .where(Callback.state.in_(("pending", "ringing")))
            .order_by(Callback.created_at)
        )
    )


# --------------------------------------------------------------------------------------------
# Devices, alerts, incidents (issue 7 drives them; the schema and idempotency live here)


def hash_token(token: str) -> str:
    """Hash a device token for storage. Tokens are random (``new_token``), so SHA-256 suffices."""
    return "sha256$" + hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A fresh random device token (shown once to the administrator, stored hashed)."""
    return secrets.token_urlsafe(32)


def add_device(
    session: Session,
    device_id: str,
    kind: str = "app",
    label: str = "",
    token: str | None = None,
    hmac_key: str | None = None,
    callback_number: str | None = None,
    lat: float | None = None,
    lon: float | None = None,
    now: dt.datetime | None = None,
) -> Device:
    """Enrol a device. Raises ValueError if the device id is taken."""
    if get_device(session, device_id) is not None:
        raise ValueError(f"device {device_id!r} already enrolled")
    device = Device(
        device_id=device_id,
        kind=kind,
        label=label,
        token_hash=hash_token(token) if token else None,
        hmac_key=hmac_key,
        callback_number=callback_number,
        lat=lat,
        lon=lon,
        enabled=True,
        created_at=_now(now),
    )
    session.add(device)
    session.flush()
    return device


def get_device(session: Session, device_id: str) -> Device | None:
    """Return the device with this external id, or None."""
    return session.scalar(select(Device).where(Device.device_id == device_id))


def authenticate_token(session: Session, device_id: str, token: str) -> Device | None:
    """Return the enabled device if ``token`` is its token, else None (constant-time compare)."""
    device = get_device(session, device_id)
    if device is None or not device.enabled or device.token_hash is None:
        return None
    if not hmac.compare_digest(device.token_hash, hash_token(token)):
        return None
    return device


def revoke_device(session: Session, device_id: str, now: dt.datetime | None = None) -> bool:
    """Disable a device; return False if there is none."""
    device = get_device(session, device_id)
    if device is None:
        return False
    device.enabled = False
    device.revoked_at = _now(now)
    session.flush()
    return True


@dataclass
class AlertOutcome:
    """The incident an alert belongs to, and whether this request created it."""

    alert: Alert
    incident: Incident
    created: bool


def record_alert(
    session: Session,
    device: Device,
    alert_id: str,
    type: str,
    lat: float | None = None,
    lon: float | None = None,
    accuracy_m: float | None = None,
    fix_time: dt.datetime | None = None,
    callback_number: str | None = None,
    note: str | None = None,
    now: dt.datetime | None = None,
) -> AlertOutcome:
    """Store an alert and open its incident, once per ``(device, alert_id)``.

    A retry with the same alert id returns the first alert's incident with ``created=False``,
    even when two retries race (the unique constraint decides; the loser reads the winner's row).
    Input validation is the HTTP layer's job; this only refuses an unknown type.
    """
    if type not in ALERT_TYPES:
        raise ValueError(f"unknown alert type {type!r}")
    existing = _find_alert(session, device.id, alert_id)
    if existing is not None:
        return AlertOutcome(existing, existing.incident, False)
    at = _now(now)
    try:
        with session.begin_nested():
            incident = Incident(
                state="new",
                type=type,
                device_id=device.id,
                lat=lat if lat is not None else device.lat,
                lon=lon if lon is not None else device.lon,
                accuracy_m=accuracy_m,
                fix_time=fix_time,
                callback_number=callback_number or device.callback_number,
                note=note,
                created_at=at,
                updated_at=at,
            )
            session.add(incident)
            session.flush()
            alert = Alert(
                device_id=device.id,
                alert_id=alert_id,
                type=type,
                lat=lat,
                lon=lon,
                accuracy_m=accuracy_m,
                fix_time=fix_time,
                callback_number=callback_number,
                note=note,
                received_at=at,
                incident_id=incident.id,
            )
            session.add(alert)
            session.add(
                IncidentTransition(
                    incident_id=incident.id,
                    at=at,
                    from_state=None,
                    to_state="new",
                    detail=f"alert {alert_id}",
                )
            )
            session.flush()
    except IntegrityError:
        existing = _find_alert(session, device.id, alert_id)
        if existing is None:
            raise
        return AlertOutcome(existing, existing.incident, False)
    return AlertOutcome(alert, incident, True)


def _find_alert(session: Session, device_pk: int, alert_id: str) -> Alert | None:
    return session.scalar(
        select(Alert).where(Alert.device_id == device_pk, Alert.alert_id == alert_id)
    )


def get_incident(session: Session, incident_id: int) -> Incident | None:
    """Return an incident, or None."""
    return session.get(Incident, incident_id)


def set_incident_state(
    session: Session,
    incident_id: int,
    to_state: str,
    now: dt.datetime | None = None,
    detail: str = "",
    operator_code: str | None = None,
    agency_code: str | None = None,
) -> Incident:
    """Record an incident's move to ``to_state`` (the state machine decides if it is allowed)."""
    if to_state not in INCIDENT_STATES:
        raise ValueError(f"unknown incident state {to_state!r}")
    incident = session.get(Incident, incident_id)
    if incident is None:
        raise LookupError(f"no incident {incident_id}")
    at = _now(now)
    session.add(
        IncidentTransition(
            incident_id=incident.id,
            at=at,
            from_state=incident.state,
            to_state=to_state,
            detail=detail,
        )
    )
    incident.state = to_state
    incident.updated_at = at
    if operator_code:
        incident.operator_id = ensure_operator(session, operator_code).id
    if agency_code:
        incident.agency_id = ensure_agency(session, agency_code).id
    if to_state in ("closed", "cancelled", "unreachable"):
        incident.closed_at = at
    session.flush()
    return incident


def open_incidents(session: Session) -> list[Incident]:
    """Incidents not closed, cancelled or unreachable, oldest first."""
    return list(
        session.scalars(
            select(Incident)
            .where(Incident.state.not_in(("closed", "cancelled", "unreachable")))
            .order_by(Incident.created_at)
        )
    )
