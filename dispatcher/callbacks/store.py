"""The one store of callbacks (the call log's ``callbacks`` table) and the one restore.

Both kinds of callback live in one table: ``abandoned``/``dropped`` rows are the hotline's
(:class:`~dispatcher.callbacks.owed.CallbackList` persists them through
:class:`WriterCallbackStore`, or :class:`SqlCallbackStore` off the reactor), ``alert`` rows
the alerts' (written with :func:`set_state` and :func:`citizen_no_answer` by the alert
service's writer). At start :func:`owed_callbacks` reads every open row once and gives each
kind back: the hotline's list restores its entries, the alert service resumes its jobs.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from twisted.logger import Logger

from dispatcher.alerts.incident import IncidentState
from dispatcher.callbacks.missed import ABANDONED, DROPPED, MissedCall, evidence
from dispatcher.callbacks.owed import CallbackEntry
from dispatcher.calllog import db, store_callbacks, store_journeys
from dispatcher.calllog.models import Call, Incident, Leg
from pbx.channels import endpoint_of

__all__ = [
    "CallbackJob",
    "Owed",
    "SqlCallbackStore",
    "WriterCallbackStore",
    "citizen_no_answer",
    "owed_callbacks",
    "set_state",
]

log = Logger(namespace="dispatcher.callbacks.store")

ALERT = "alert"
# An alert's callback is still wanted while its incident waits for someone to talk to.
_AWAITING = (IncidentState.NEW, IncidentState.OPERATOR_RINGING)


@dataclass(frozen=True)
class CallbackJob:
    """A callback the center owes for an incident (snapshot of a ``callbacks`` row)."""

    callback_id: int
    incident_id: int
    number: str
    attempts: int
    citizen_no_answers: int = 0  # attempts the citizen already left unanswered

    @property
    def key(self) -> int:
        """What the dialer and the dialplan's events know it by: its incident."""
        return self.incident_id


class SqlCallbackStore:
    """Persists callbacks into the call log's ``callbacks`` table (dispatcher.calllog).

    Synchronous: give it to a :class:`CallbackList` that runs off the reactor thread, or
    accept one small transaction per missed call on it (what a center's volume allows).
    """

    def __init__(self, session_factory) -> None:  # noqa: ANN001 (sessionmaker)
        self.session_factory = session_factory

    def created(self, entry: CallbackEntry) -> int | None:
        """Insert a pending callback linked to its call (when the call log has it)."""
        with db.transaction(self.session_factory) as session:
            origin = entry.linkedid if store_journeys.get_call(session, entry.linkedid) else None
            row = store_callbacks.create_callback(session, entry.number, reason=entry.reason,
                                                  origin_linkedid=origin)
            return int(row.id)

    def updated(self, entry: CallbackEntry) -> None:
        """Copy the entry's state into its row."""
        if entry.store_id is None:
            return
        with db.transaction(self.session_factory) as session:
            store_callbacks.set_callback_state(session, entry.store_id, entry.state,
                                               result_linkedid=entry.result_linkedid)


class WriterCallbackStore:
    """Persists callbacks through the call log's writer thread: the reactor never waits on
    the database. ``submit(fn, *args)`` runs ``fn(session, *args)`` in a transaction in the
    writer's thread and returns a Deferred (``CallLogWriter.submit``).

    ``created`` returns None at once; the row's id is put on the entry when the insert is
    committed, and state changes made before that are written after it, in order.
    """

    def __init__(self, submit: Callable[..., Any]) -> None:
        self.submit = submit
        self._pending: dict[int, Any] = {}  # entry id -> Deferred of its insert

    def created(self, entry: CallbackEntry) -> int | None:
        """Queue the insert; the id arrives on the entry later."""
        def insert(session: Any, number: str, reason: str, linkedid: str) -> int:
            origin = linkedid if store_journeys.get_call(session, linkedid) else None
            return int(store_callbacks.create_callback(session, number, reason=reason,
                                                       origin_linkedid=origin).id)

        def stored(row_id: int) -> int:
            entry.store_id = row_id
            self._pending.pop(entry.id, None)
            return row_id

        d = self.submit(insert, entry.number, entry.reason, entry.linkedid)
        d.addCallback(stored)
        d.addErrback(lambda f: log.failure("Callback {id} not persisted", f, id=entry.id,
                                         call_id=entry.linkedid))
        self._pending[entry.id] = d
        return None

    def updated(self, entry: CallbackEntry) -> None:
        """Queue the state change (after the insert when that is still on its way)."""
        state, result = entry.state, entry.result_linkedid

        def write(session: Any, row_id: int) -> None:
            store_callbacks.set_callback_state(session, row_id, state, result_linkedid=result)

        def after_insert(_: object) -> None:
            if entry.store_id is not None:
                self.submit(write, entry.store_id).addErrback(
                    lambda f: log.failure("Callback {id} state not persisted", f,
                                          id=entry.id, call_id=entry.linkedid))

        pending = self._pending.get(entry.id)
        if pending is None:
            after_insert(None)
            return

        def then(row_id: object) -> object:
            after_insert(row_id)
            return row_id

        pending.addCallback(then)


def set_state(session: Session, callback_id: int, state: str, now: dt.datetime) -> None:
    """Move a callback's row to ``state`` (a closed row never moves again: IllegalMove)."""
    store_callbacks.set_callback_state(session, callback_id, state, now=now)


def citizen_no_answer(session: Session, callback_id: int, now: dt.datetime) -> int:
    """Count an attempt the citizen did not answer (kept for a restarted server)."""
    return store_callbacks.count_citizen_no_answer(session, callback_id, now=now)


@dataclass
class Owed:
    """The callbacks a previous process still owed, each kind as its owner takes it back."""

    missed: list[CallbackEntry] = field(default_factory=list)  # hotline: abandoned, dropped
    alerts: list[CallbackJob] = field(default_factory=list)  # incidents still waiting


def owed_callbacks(session: Session) -> Owed:
    """Every open callback in the call log, both kinds (blocking: before the reactor runs or
    in a thread).

    A hotline row left ``ringing`` by a process that died is pending again: its ring is gone.
    The endpoint the citizen came in on is read from the origin call's first leg (a direct
    SIP caller's source address is not stored, so such a caller is listed but cannot be
    rung). An alert's row is owed while its incident still waits for a callback.
    """
    owed = Owed()
    for row in store_callbacks.pending_callbacks(session):
        if row.reason in (ABANDONED, DROPPED):
            owed.missed.append(_missed_entry(session, row))
        elif row.reason == ALERT and row.incident_id is not None:
            incident = session.get(Incident, row.incident_id)
            if incident is not None and incident.state in _AWAITING:
                owed.alerts.append(CallbackJob(row.id, row.incident_id, row.number,
                                               row.attempts, row.citizen_no_answers))
    return owed


def _missed_entry(session: Session, row: Any) -> CallbackEntry:
    call = session.get(Call, row.origin_call_id) if row.origin_call_id else None
    channel = ""
    if call is not None:
        channel = session.scalars(select(Leg.channel).where(Leg.call_id == call.id)
                                  .order_by(Leg.seq).limit(1)).first() or ""
    created = row.created_at
    if created.tzinfo is None:
        created = created.replace(tzinfo=dt.UTC)
    # The evidence the live list ranked it by, again from the logged call.
    waited, queued = 0.0, False
    if call is not None:
        waited = (call.answer_seconds if row.reason == DROPPED
                  else call.duration_seconds) or 0.0
        queued = bool(call.queue_passes) or call.queued_at is not None
    return CallbackEntry(
        id=0, number=row.number, reason=row.reason,
        linkedid=call.linkedid if call is not None else "",
        endpoint=endpoint_of(channel), source=None,
        category=(call.category or "") if call is not None else "",
        created_at=created.timestamp(), attempts=row.attempts,
        calls=[call.linkedid] if call is not None else [], store_id=row.id,
        evidence=evidence(MissedCall(row.reason, row.number, "", "", "", None, "",
                                     waited, None, queued)),
        waited=waited, queued=queued)
