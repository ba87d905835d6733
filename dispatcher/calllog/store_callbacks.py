"""Call-log data access for the callbacks the center owes.

Every function takes a :class:`~sqlalchemy.orm.Session` already inside a transaction (see
``db.transaction``) and blocks: call them from the writer's thread
(:class:`dispatcher.calllog.writer.CallLogWriter`) or at start-up, never on the reactor thread.
They flush but never commit; the caller's transaction decides.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select
from sqlalchemy.orm import Session

from dispatcher.callbacks.states import check_stored_move
from dispatcher.calllog.models import (
    Callback,
)
from dispatcher.calllog.store_journeys import _now, get_call


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
