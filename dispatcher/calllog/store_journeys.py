"""Call-log data access for journeys: reference rows, calls, CEL cursors.

Every function takes a :class:`~sqlalchemy.orm.Session` already inside a transaction (see
``db.transaction``) and blocks: call them from the writer's thread
(:class:`dispatcher.calllog.writer.CallLogWriter`) or at start-up, never on the reactor thread.
They flush but never commit; the caller's transaction decides.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from dispatcher.calllog import rollups
from dispatcher.calllog.models import (
    Agency,
    Call,
    CallEvent,
    CelCursor,
    Incident,
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
    # What the journey added to the report's roll-ups until now: taken away below, in this
    # transaction, when its new contribution is added (a rewrite counts once).
    before = rollups.snapshot(session, call)
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
    rollups.apply(session, before, rollups.snapshot(session, call))
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
