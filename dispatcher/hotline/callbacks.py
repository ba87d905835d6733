"""Abandoned and dropped hotline calls, and the list of callbacks the center owes.

:class:`MissedCallDetector` is sans-IO: feed it AMI events (name, fields, the time) and it
returns :class:`MissedCall` records. A hotline call is the citizen's channel, recognised by
the dialplan's ``SIAGA_CITIZEN=yes`` (set in ``[hotline]`` only). It is **abandoned** when it
hangs up before an operator answered (in the menu or in the queue), and **dropped** when it
ends less than ``dropped_seconds`` after an operator answered without having been handed to
an agency (a blind transfer, a consultation or a conference is not a drop).

:class:`CallbackList` keeps the callbacks: in memory, one pending entry per number (a
citizen who calls three times and gives up three times is called back once), with an
optional :class:`CallbackStore` hook to persist them (:class:`SqlCallbackStore` writes them
to the call log's ``callbacks`` table).
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from twisted.logger import Logger

log = Logger(namespace="dispatcher.hotline.callbacks")

ABANDONED = "abandoned"
DROPPED = "dropped"
CALLBACK_STATES = ("pending", "ringing", "done", "failed")
OPEN_STATES = ("pending", "ringing")
DEFAULT_DROPPED_SECONDS = 5.0


@dataclass(frozen=True)
class MissedCall:
    """A hotline call that ended without help: who, why, and how to reach them again."""

    reason: str  # ABANDONED or DROPPED
    number: str  # the caller ID number ('' when withheld)
    linkedid: str
    channel: str
    endpoint: str  # the PJSIP endpoint the call came in on: anonymous, trunk, an extension
    source: str | None  # SIP source address (host:port) of a direct SIP caller
    category: str
    waited: float  # seconds from the start of the call to the end (abandoned) or answer
    talked: float | None  # seconds with the operator (dropped)


@dataclass
class _Tracked:
    uniqueid: str
    channel: str
    linkedid: str
    number: str
    started: float
    source: str | None = None
    category: str = "unknown"
    answered_at: float | None = None
    handed_over: bool = False


def _bare(variable: str) -> str:
    # VarSet names an inherited variable with its underscores (``__SIAGA_CATEGORY``).
    return variable.lstrip("_")


def endpoint_of(channel: str) -> str:
    """``PJSIP/anonymous-0000002a`` -> ``anonymous``; '' for other technologies."""
    if not channel.startswith("PJSIP/"):
        return ""
    return channel[len("PJSIP/"):].rsplit("-", 1)[0]


class MissedCallDetector:
    """Sans-IO: AMI events in, :class:`MissedCall` out."""

    def __init__(self, dropped_seconds: float = DEFAULT_DROPPED_SECONDS) -> None:
        self.dropped_seconds = dropped_seconds
        self._calls: dict[str, _Tracked] = {}  # by the citizen channel's Uniqueid

    @property
    def tracked(self) -> int:
        """Hotline calls in progress."""
        return len(self._calls)

    def feed(self, name: str, fields: Mapping[str, str], now: float) -> list[MissedCall]:
        """One AMI event (its name and headers) at time ``now`` (seconds, any epoch)."""
        uniqueid = fields.get("Uniqueid", "")
        if name == "VarSet":
            self._var(uniqueid, fields, now)
            return []
        call = self._calls.get(uniqueid)
        if call is None:
            return []
        if name == "AgentConnect":
            if call.answered_at is None:
                call.answered_at = now
        elif name == "Newexten":
            context = fields.get("Context", "")
            if context.startswith("agency-") or context == "siaga-conference":
                call.handed_over = True
        elif name in ("BlindTransfer", "AttendedTransfer", "ConfbridgeJoin"):
            call.handed_over = True
        elif name == "Hangup":
            del self._calls[uniqueid]
            missed = self._judge(call, now)
            return [missed] if missed is not None else []
        return []

    def _var(self, uniqueid: str, fields: Mapping[str, str], now: float) -> None:
        variable = _bare(fields.get("Variable", ""))
        value = fields.get("Value", "")
        if variable == "SIAGA_CITIZEN" and value == "yes" and uniqueid:
            self._calls.setdefault(uniqueid, _Tracked(
                uniqueid=uniqueid, channel=fields.get("Channel", ""),
                linkedid=fields.get("Linkedid", uniqueid),
                number=fields.get("CallerIDNum", ""), started=now,
            ))
            return
        call = self._calls.get(uniqueid)
        if call is None:
            return
        if variable == "SIAGA_FROM":
            call.source = value or None
        elif variable == "SIAGA_CATEGORY" and value:
            call.category = value

    def _judge(self, call: _Tracked, now: float) -> MissedCall | None:
        number = "" if call.number in ("<unknown>", "anonymous") else call.number
        common = dict(number=number, linkedid=call.linkedid, channel=call.channel,
                      endpoint=endpoint_of(call.channel), source=call.source,
                      category=call.category)
        if call.answered_at is None:
            return MissedCall(reason=ABANDONED, waited=now - call.started, talked=None,
                              **common)
        talked = now - call.answered_at
        if not call.handed_over and talked < self.dropped_seconds:
            return MissedCall(reason=DROPPED, waited=call.answered_at - call.started,
                              talked=talked, **common)
        return None


@dataclass
class CallbackEntry:
    """A call the center owes a citizen. ``id`` is the list's own; ``store_id`` the
    persistence hook's (the call log's row id), when it has one."""

    id: int
    number: str
    reason: str
    linkedid: str
    endpoint: str
    source: str | None
    category: str
    created_at: float
    state: str = "pending"
    attempts: int = 0
    calls: list[str] = field(default_factory=list)  # linkedids of every missed call
    result_linkedid: str | None = None
    store_id: int | None = None

    @property
    def open(self) -> bool:
        """Still to be done (pending or ringing)."""
        return self.state in OPEN_STATES


class CallbackStore(Protocol):
    """Where callbacks are persisted. Called on the reactor thread: keep it quick (or hand
    the work to a writer thread) and raise on failure (the list logs it and keeps going)."""

    def created(self, entry: CallbackEntry) -> int | None:
        """A new entry; return its id in the store, if any."""

    def updated(self, entry: CallbackEntry) -> None:
        """An entry changed state."""


class CallbackList:
    """The callbacks owed, oldest first; one open entry per number."""

    def __init__(self, store: CallbackStore | None = None,
                 on_change: Callable[[CallbackEntry], object] | None = None) -> None:
        self.store = store
        self.on_change = on_change
        self._entries: dict[int, CallbackEntry] = {}
        self._ids = itertools.count(1)

    def add(self, missed: MissedCall, now: float) -> CallbackEntry | None:
        """Owe ``missed`` a callback; None when it cannot be called back (no number)."""
        if not missed.number:
            log.info("Missed call {linkedid} ({reason}) has no number to call back",
                     linkedid=missed.linkedid, reason=missed.reason)
            return None
        existing = next((e for e in self._entries.values()
                         if e.open and e.number == missed.number), None)
        if existing is not None:
            existing.calls.append(missed.linkedid)
            # The newest way to reach the caller wins (an app may have moved).
            existing.source = missed.source or existing.source
            return existing
        entry = CallbackEntry(
            id=next(self._ids), number=missed.number, reason=missed.reason,
            linkedid=missed.linkedid, endpoint=missed.endpoint, source=missed.source,
            category=missed.category, created_at=now, calls=[missed.linkedid],
        )
        self._entries[entry.id] = entry
        if self.store is not None:
            try:
                entry.store_id = self.store.created(entry)
            except Exception:
                log.failure("Callback {id} for {number} not persisted", id=entry.id,
                            number=entry.number)
        self._changed(entry)
        return entry

    def restore(self, entries: list[CallbackEntry]) -> None:
        """Take back open entries a previous process persisted (``stored_open_callbacks``):
        each gets an id of this list; its ``store_id`` keeps pointing at its row."""
        for stored in entries:
            if any(e.open and e.number == stored.number for e in self._entries.values()):
                continue
            stored.id = next(self._ids)
            self._entries[stored.id] = stored

    def get(self, entry_id: int) -> CallbackEntry:
        """The entry with this id (KeyError if none)."""
        return self._entries[entry_id]

    def pending(self) -> list[CallbackEntry]:
        """Open entries, oldest first."""
        return sorted((e for e in self._entries.values() if e.open),
                      key=lambda e: (e.created_at, e.id))

    def all(self) -> list[CallbackEntry]:
        """Every entry, oldest first."""
        return sorted(self._entries.values(), key=lambda e: (e.created_at, e.id))

    def set_state(self, entry_id: int, state: str,
                  result_linkedid: str | None = None) -> CallbackEntry:
        """Move an entry to ``state`` (ringing counts an attempt)."""
        if state not in CALLBACK_STATES:
            raise ValueError(f"unknown callback state {state!r}")
        entry = self._entries[entry_id]
        entry.state = state
        if state == "ringing":
            entry.attempts += 1
        if result_linkedid:
            entry.result_linkedid = result_linkedid
        if self.store is not None:
            try:
                self.store.updated(entry)
            except Exception:
                log.failure("Callback {id} state {state} not persisted", id=entry.id,
                            state=state)
        self._changed(entry)
        return entry

    def _changed(self, entry: CallbackEntry) -> None:
        if self.on_change is not None:
            try:
                self.on_change(entry)
            except Exception:
                log.failure("Callback listener failed on {id}", id=entry.id)


class SqlCallbackStore:
    """Persists callbacks into the call log's ``callbacks`` table (dispatcher.calllog).

    Synchronous: give it to a :class:`CallbackList` that runs off the reactor thread, or
    accept one small transaction per missed call on it (what a center's volume allows).
    """

    def __init__(self, session_factory) -> None:  # noqa: ANN001 (sessionmaker)
        self.session_factory = session_factory

    def created(self, entry: CallbackEntry) -> int | None:
        """Insert a pending callback linked to its call (when the call log has it)."""
        from dispatcher.calllog import db, store

        with db.transaction(self.session_factory) as session:
            origin = entry.linkedid if store.get_call(session, entry.linkedid) else None
            row = store.create_callback(session, entry.number, reason=entry.reason,
                                        origin_linkedid=origin)
            return int(row.id)

    def updated(self, entry: CallbackEntry) -> None:
        """Copy the entry's state into its row."""
        if entry.store_id is None:
            return
        from dispatcher.calllog import db, store

        with db.transaction(self.session_factory) as session:
            store.set_callback_state(session, entry.store_id, entry.state,
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
            from dispatcher.calllog import store

            origin = linkedid if store.get_call(session, linkedid) else None
            return int(store.create_callback(session, number, reason=reason,
                                             origin_linkedid=origin).id)

        def stored(row_id: int) -> int:
            entry.store_id = row_id
            self._pending.pop(entry.id, None)
            return row_id

        d = self.submit(insert, entry.number, entry.reason, entry.linkedid)
        d.addCallback(stored)
        d.addErrback(lambda f: log.failure("Callback {id} not persisted", f, id=entry.id))
        self._pending[entry.id] = d
        return None

    def updated(self, entry: CallbackEntry) -> None:
        """Queue the state change (after the insert when that is still on its way)."""
        state, result = entry.state, entry.result_linkedid

        def write(session: Any, row_id: int) -> None:
            from dispatcher.calllog import store

            store.set_callback_state(session, row_id, state, result_linkedid=result)

        def after_insert(_: object) -> None:
            if entry.store_id is not None:
                self.submit(write, entry.store_id).addErrback(
                    lambda f: log.failure("Callback {id} state not persisted", f, id=entry.id))

        pending = self._pending.get(entry.id)
        if pending is None:
            after_insert(None)
            return

        def then(row_id: object) -> object:
            after_insert(row_id)
            return row_id

        pending.addCallback(then)


def stored_open_callbacks(session: Any) -> list[CallbackEntry]:
    """The abandoned and dropped calls' callbacks still open in the call log, as entries
    for :meth:`CallbackList.restore` (blocking: run it before the reactor or in a thread).

    A row left ``ringing`` by a process that died is pending again: its ring is gone. The
    endpoint the citizen came in on is read from the origin call's first leg (a direct SIP
    caller's source address is not stored, so such a caller is listed but cannot be rung).
    """
    from sqlalchemy import select

    from dispatcher.calllog import store
    from dispatcher.calllog.journey import endpoint_of
    from dispatcher.calllog.models import Call, Leg

    entries = []
    for row in store.pending_callbacks(session):
        if row.reason not in (ABANDONED, DROPPED):
            continue
        call = session.get(Call, row.origin_call_id) if row.origin_call_id else None
        channel = ""
        if call is not None:
            channel = session.scalars(select(Leg.channel).where(Leg.call_id == call.id)
                                      .order_by(Leg.seq).limit(1)).first() or ""
        created = row.created_at
        if created.tzinfo is None:
            created = created.replace(tzinfo=dt.UTC)
        entries.append(CallbackEntry(
            id=0, number=row.number, reason=row.reason,
            linkedid=call.linkedid if call is not None else "",
            endpoint=endpoint_of(channel)[1] if channel else "", source=None,
            category=(call.category or "") if call is not None else "",
            created_at=created.timestamp(), attempts=row.attempts,
            calls=[call.linkedid] if call is not None else [], store_id=row.id))
    return entries


#: Calls found only afterwards (in Asterisk's CEL, after the server was away) are called back
#: when they ended at most this long ago; older ones are history, not a callback to make now.
LATE_MISSED_WINDOW = 24 * 3600.0
_AGENCY_LEGS = ("transfer_attempt", "agency_talk", "conference")


def missed_from_journey(record: Any, hotline: Iterable[str], now: float,
                        window: float = LATE_MISSED_WINDOW,
                        dropped_seconds: float = DEFAULT_DROPPED_SECONDS) -> MissedCall | None:
    """The missed call in a finished journey (``dispatcher.calllog.journey.JourneyRecord``)
    that nobody saw live, by the same rules as :class:`MissedCallDetector`: a call to a
    hotline number that ended before an operator answered (abandoned), or less than
    ``dropped_seconds`` after the answer with no agency involved (dropped). None otherwise,
    and for calls that ended more than ``window`` seconds before ``now``."""
    if record.direction != "inbound" or record.dialed not in set(hotline):
        return None
    ended = record.ended_at
    if ended is None or now - ended > window:
        return None
    channel = record.legs[0].channel if record.legs else ""
    from dispatcher.calllog.journey import endpoint_of

    endpoint = endpoint_of(channel)[1] if channel else ""
    number = "" if record.caller_number in ("", "<unknown>", "anonymous") \
        else record.caller_number
    if record.answered_at is None:
        return MissedCall(ABANDONED, number, record.linkedid, channel, endpoint, None,
                          record.category or "", ended - record.started_at, None)
    talked = ended - record.answered_at
    if talked < dropped_seconds and not any(leg.kind in _AGENCY_LEGS for leg in record.legs):
        return MissedCall(DROPPED, number, record.linkedid, channel, endpoint, None,
                          record.category or "", record.answered_at - record.started_at,
                          talked)
    return None
