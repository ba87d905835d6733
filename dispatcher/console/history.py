"""The caller's history on the call card, and the repeat/prank caller flag.

Read from the call log: the number's earlier calls of the last ``history_days`` (with their
outcome and disposition), the callbacks the center still owes it, and its incidents. A number
is **flagged** when it called more than ``repeat_calls`` times within ``repeat_hours`` (the
current call included) or when an operator once marked one of its calls a prank.

The flag only informs the operator. Nothing here (or anywhere) blocks a flagged caller or
moves it back in the queue: an emergency line answers everyone, and the boy who cried wolf
may be calling about a real fire today.

Every function taking a session blocks: run it in a reader thread, never on the reactor.
A withheld or malformed number (``anonymous``, empty, letters) has no history: lumping all
anonymous callers together would flag every one of them.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import groupby

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from dispatcher.calllog.models import Call, Callback, CallDisposition, Incident, Operator, utc
from dispatcher.console.settings import ConsoleSettings

__all__ = ["Flag", "caller_history", "flagged_numbers", "has_history", "latest_dispositions",
           "repeat_flag"]

KNOWN_NUMBER = re.compile(r"^\+?[0-9]{3,20}$")
OWED_STATES = ("pending", "ringing")
MAX_CALLS = 50  # on one card: the newest; the count says how many there were


def has_history(number: str) -> bool:
    """True when ``number`` identifies a caller (digits, not withheld)."""
    return bool(KNOWN_NUMBER.match(number or ""))


@dataclass(frozen=True)
class Flag:
    """Why a number is flagged (``reasons`` empty: it is not)."""

    calls_in_window: int  # calls within the repeat window, the current one included
    window_hours: float
    threshold: int
    pranks: int  # earlier calls whose disposition is prank

    @property
    def reasons(self) -> list[str]:
        """``repeat`` and/or ``prank``."""
        out = []
        if self.calls_in_window > self.threshold:
            out.append("repeat")
        if self.pranks:
            out.append("prank")
        return out

    @property
    def flagged(self) -> bool:
        """True when there is any reason."""
        return bool(self.reasons)

    def document(self) -> dict[str, object]:
        """The flag as JSON."""
        return {"flagged": self.flagged, "reasons": self.reasons,
                "calls_in_window": self.calls_in_window, "window_hours": self.window_hours,
                "threshold": self.threshold, "pranks": self.pranks}


def repeat_flag(earlier: Iterable[dt.datetime], now: dt.datetime, pranks: int,
                settings: ConsoleSettings, current: bool = True) -> Flag:
    """The flag for a number whose earlier calls started at ``earlier``.

    A call counts when it started at or after ``now - repeat_hours`` (and not after ``now``);
    ``current`` adds the call being taken, which the log may not hold yet.
    """
    since = now - dt.timedelta(seconds=settings.repeat_seconds)
    recent = sum(1 for t in earlier if since <= utc(t) <= now) + (1 if current else 0)
    return Flag(recent, settings.repeat_hours, settings.repeat_calls, pranks)


def latest_dispositions(session: Session, linkedids: Sequence[str]) -> dict[str, dict]:
    """The current disposition of each call (its latest marking), by linkedid."""
    if not linkedids:
        return {}
    rows = session.scalars(select(CallDisposition)
                           .where(CallDisposition.linkedid.in_(list(linkedids)))
                           .order_by(CallDisposition.id))
    return {r.linkedid: {"disposition": r.disposition, "by": r.author,
                         "at": utc(r.at).isoformat()} for r in rows}


def prank_calls(session: Session, number: str) -> set[str]:
    """Linkedids of the number's calls whose current disposition is prank."""
    marked = session.scalars(select(CallDisposition.linkedid).where(
        CallDisposition.caller_number == number,
        CallDisposition.disposition == "prank")).all()
    if not marked:
        return set()
    current = latest_dispositions(session, sorted(set(marked)))
    return {lid for lid, d in current.items() if d["disposition"] == "prank"}


def _call_document(call: Call, codes: dict[int, str], dispositions: dict[str, dict]
                   ) -> dict[str, object]:
    return {
        "linkedid": call.linkedid,
        "started_at": utc(call.started_at).isoformat(),
        "outcome": call.outcome,
        "category": call.category,
        "answered_by": codes.get(call.answered_by_id) if call.answered_by_id else None,
        "duration_seconds": call.duration_seconds,
        "incident_id": call.incident_id,
        "disposition": (dispositions.get(call.linkedid) or {}).get("disposition"),
    }


def _operator_codes(session: Session, calls: Sequence[Call]) -> dict[int, str]:
    ids = {c.answered_by_id for c in calls if c.answered_by_id}
    if not ids:
        return {}
    return {row[0]: row[1] for row in session.execute(
        select(Operator.id, Operator.code).where(Operator.id.in_(ids)))}


def _incident_document(incident: Incident) -> dict[str, object]:
    return {
        "id": incident.id, "state": incident.state, "type": incident.type,
        "category": incident.category, "linkedid": incident.linkedid,
        "created_at": utc(incident.created_at).isoformat(),
        "closed_at": utc(incident.closed_at).isoformat() if incident.closed_at else None,
        "outcome": incident.outcome,
    }


def caller_history(session: Session, number: str, now: dt.datetime, settings: ConsoleSettings,
                   current_linkedid: str | None = None) -> dict[str, object]:
    """The call card's history of ``number`` (the call ``current_linkedid`` left out of the
    lists, but counted in the flag)."""
    if not has_history(number):
        return {"number": number, "known": False, "calls": [], "calls_total": 0,
                "callbacks_owed": [], "incidents": [],
                "flag": Flag(0, settings.repeat_hours, settings.repeat_calls, 0).document()}
    since = now - dt.timedelta(days=settings.history_days)
    earlier = [Call.caller_number == number, Call.started_at >= since, Call.started_at <= now,
               Call.test.is_(False)]
    if current_linkedid:
        earlier.append(Call.linkedid != current_linkedid)
    total = session.scalar(select(func.count()).select_from(Call).where(*earlier)) or 0
    calls = list(session.scalars(select(Call).where(*earlier)
                                 .order_by(Call.started_at.desc(), Call.id.desc())
                                 .limit(MAX_CALLS)))
    window_start = now - dt.timedelta(seconds=settings.repeat_seconds)
    in_window = session.scalars(select(Call.started_at).where(
        *earlier, Call.started_at >= window_start)).all()
    pranks = prank_calls(session, number) - {current_linkedid or ""}
    dispositions = latest_dispositions(session, [c.linkedid for c in calls])
    codes = _operator_codes(session, calls)
    owed = session.scalars(select(Callback).where(
        Callback.number == number, Callback.state.in_(OWED_STATES))
        .order_by(Callback.created_at)).all()
    linked = [c.linkedid for c in calls]
    incident_ids = {c.incident_id for c in calls if c.incident_id}
    incidents = session.scalars(select(Incident).where(
        Incident.created_at >= since,
        or_(Incident.id.in_(sorted(incident_ids) or [-1]), Incident.linkedid.in_(linked or [""]),
            Incident.callback_number == number))
        .order_by(Incident.created_at.desc()).limit(MAX_CALLS)).all()
    return {
        "number": number, "known": True,
        "days": settings.history_days,
        "calls": [_call_document(c, codes, dispositions) for c in calls],
        "calls_total": total,
        "callbacks_owed": [{"id": cb.id, "state": cb.state, "reason": cb.reason,
                            "created_at": utc(cb.created_at).isoformat(),
                            "attempts": cb.attempts} for cb in owed],
        "incidents": [_incident_document(i) for i in incidents
                      if i.linkedid is None or i.linkedid != current_linkedid],
        "flag": repeat_flag(in_window, now, len(pranks), settings).document(),
    }


def _busiest_window(starts: Sequence[dt.datetime], seconds: float) -> int:
    """The most calls any window of ``seconds`` holds (starts sorted)."""
    best, lo = 0, 0
    for hi, t in enumerate(starts):
        while (t - starts[lo]).total_seconds() > seconds:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def flagged_numbers(session: Session, now: dt.datetime, settings: ConsoleSettings,
                    limit: int = 200) -> list[dict[str, object]]:
    """The numbers flagged within the last ``history_days`` (for supervisors): those with more
    than ``repeat_calls`` calls in some window of ``repeat_hours``, and those with a call whose
    current disposition is prank; each with its calls, newest first. The busiest numbers
    first, at most ``limit`` of them.

    A handful of queries whatever the log's size (no query per number): the call times of
    the numbers with enough calls to be repeat callers at all, the prank markings, then the
    listed numbers' calls in one read.
    """
    since = now - dt.timedelta(days=settings.history_days)
    base = [Call.started_at >= since, Call.started_at <= now, Call.test.is_(False)]
    enough = (select(Call.caller_number).where(*base).group_by(Call.caller_number)
              .having(func.count() > settings.repeat_calls))
    busiest: dict[str, int] = {}
    totals: dict[str, int] = {}
    rows = session.execute(select(Call.caller_number, Call.started_at)
                           .where(*base, Call.caller_number.in_(enough))
                           .order_by(Call.caller_number, Call.started_at))
    for number, group in groupby(rows, key=lambda row: row[0]):
        starts = [utc(t) for _, t in group]
        totals[number] = len(starts)
        busiest[number] = _busiest_window(starts, settings.repeat_seconds)
    marked = select(CallDisposition.linkedid).where(CallDisposition.disposition == "prank",
                                                    CallDisposition.at >= since)
    latest: dict[str, tuple[str, str]] = {}
    for linkedid, number, disposition in session.execute(
            select(CallDisposition.linkedid, CallDisposition.caller_number,
                   CallDisposition.disposition)
            .where(CallDisposition.linkedid.in_(marked)).order_by(CallDisposition.id)):
        latest[linkedid] = (number, disposition)
    pranks: dict[str, int] = {}
    for number, disposition in latest.values():
        if disposition == "prank":
            pranks[number] = pranks.get(number, 0) + 1
    flags = {}
    for number in {*busiest, *pranks}:
        if not has_history(number):
            continue
        flag = Flag(busiest.get(number, 1), settings.repeat_hours, settings.repeat_calls,
                    pranks.get(number, 0))
        if flag.flagged:
            flags[number] = flag
    if not flags:
        return []
    missing = [n for n in flags if n not in totals]
    if missing:
        totals.update({row[0]: row[1] for row in session.execute(
            select(Call.caller_number, func.count())
            .where(*base, Call.caller_number.in_(missing)).group_by(Call.caller_number))})
    chosen = sorted(flags, key=lambda n: (-totals.get(n, 0), n))[:limit]
    calls: dict[str, list[Call]] = {n: [] for n in chosen}
    for call in session.scalars(select(Call).where(*base, Call.caller_number.in_(chosen))
                                .order_by(Call.caller_number, Call.started_at.desc(),
                                          Call.id.desc())):
        if len(calls[call.caller_number]) < MAX_CALLS:
            calls[call.caller_number].append(call)
    shown = [c for number in chosen for c in calls[number]]
    dispositions = latest_dispositions(session, [c.linkedid for c in shown])
    codes = _operator_codes(session, shown)
    return [{"number": number, "flag": flags[number].document(),
             "calls_total": totals.get(number, 0),
             "calls": [_call_document(c, codes, dispositions) for c in calls[number]]}
            for number in chosen]
