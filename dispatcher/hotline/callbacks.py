"""Abandoned and dropped hotline calls, and the list of callbacks the center owes.

:class:`MissedCallDetector` is sans-IO: feed it AMI events (name, fields, the time) and it
returns :class:`MissedCall` records. A hotline call is the citizen's channel, recognised by
the dialplan's ``SIAGA_CITIZEN=yes`` (set in ``[hotline]`` only). It is **abandoned** when it
hangs up before an operator answered (in the menu or in the queue), and **dropped** when it
ends less than ``dropped_seconds`` after an operator answered without having been handed to
an agency (a blind transfer, a consultation or a conference is not a drop).

:class:`CallbackList` keeps the callbacks: in memory, one open entry per number (a
citizen who calls three times and gives up three times is called back once), with an
optional :class:`CallbackStore` hook to persist them (:class:`SqlCallbackStore` writes them
to the call log's ``callbacks`` table).

Anyone can call the hotline and hang up, thousands of times a minute from a script, so the
list is bounded and ranked. Each entry carries the evidence that a person was there (how
long the caller waited, whether they reached the operators' queue, whether an operator
answered, how often the same number tried again: :func:`evidence`); the list is kept sorted
on it, strongest first, in balanced sorted containers (insert, remove, rank and page in
O(log n)). Beyond ``max_per_source`` open entries from one SIP source address, or
``max_open`` in all, the weakest pending entry is evicted (state ``evicted``): a flood of
short calls only ever displaces its own kind, and a citizen who waited stays at the top.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from sortedcontainers import SortedKeyList
from twisted.logger import Logger

from dialplans import contract

log = Logger(namespace="dispatcher.hotline.callbacks")

ABANDONED = "abandoned"
DROPPED = "dropped"
EVICTED = "evicted"
CALLBACK_STATES = ("pending", "ringing", "done", "failed", EVICTED)
OPEN_STATES = ("pending", "ringing")
DEFAULT_DROPPED_SECONDS = 5.0
DEFAULT_MAX_OPEN = 1000
DEFAULT_MAX_PER_SOURCE = 20

# The weights of the evidence that a person, not a script, made a missed call. Seconds count
# as points up to WAIT_CAP (past ten minutes a longer wait says nothing more); reaching the
# queue means the caller sat through the menu or chose an operator; an operator's answer
# means a person was heard. A scripted INVITE and hang-up scores next to nothing.
WAIT_CAP = 600.0
QUEUE_POINTS = 60.0
DROPPED_POINTS = 120.0
# Each further missed call from the same number adds this, when it shows a person (at least
# CREDIBLE_POINTS) and at most MAX_REPEATS times: one number redialled by a script cannot
# climb above callers who waited.
REPEAT_POINTS = 30.0
MAX_REPEATS = 4
CREDIBLE_POINTS = 3.0
# The missed calls' ids kept per entry (the newest): a number redialled ten thousand times
# keeps a bounded entry.
MAX_CALLS_KEPT = 20
# Entries no longer open (done, failed, evicted) kept for lookups by id, newest.
MAX_CLOSED_KEPT = 1000


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
    queued: bool = False  # it reached the operators' queue


def evidence(missed: MissedCall) -> float:
    """Points for the evidence that a person made ``missed``: seconds waited (capped),
    plus :data:`QUEUE_POINTS` when it reached the queue and :data:`DROPPED_POINTS` when an
    operator answered it."""
    points = min(max(missed.waited, 0.0), WAIT_CAP)
    if missed.queued:
        points += QUEUE_POINTS
    if missed.reason == DROPPED:
        points += DROPPED_POINTS
    return points


def source_host(source: str | None) -> str | None:
    """The address part of a SIP source ``host:port`` (``[v6]:port``): what a flood from one
    machine shares whatever ports it uses. None for None or ''."""
    if not source:
        return None
    if source.startswith("["):
        return source[1:].split("]", 1)[0] or None
    return source.rsplit(":", 1)[0] or None


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
    queued: bool = False


def _bare(variable: str) -> str:
    # VarSet names an inherited variable with its underscores (``__SIAGA_CATEGORY``).
    return variable.lstrip("_")


def endpoint_of(channel: str) -> str:
    """``PJSIP/anonymous-0000002a`` -> ``anonymous``; '' for other technologies."""
    if not channel.startswith("PJSIP/"):
        return ""
    return channel[len("PJSIP/"):].rsplit("-", 1)[0]


#: Hotline calls the detector follows at once. Far above what Asterisk carries; it only
#: bounds the memory of calls whose Hangup never came (an AMI connection lost meanwhile).
MAX_TRACKED = 10_000


class MissedCallDetector:
    """Sans-IO: AMI events in, :class:`MissedCall` out."""

    def __init__(self, dropped_seconds: float = DEFAULT_DROPPED_SECONDS,
                 max_tracked: int = MAX_TRACKED) -> None:
        self.dropped_seconds = dropped_seconds
        self.max_tracked = max_tracked
        self._calls: dict[str, _Tracked] = {}  # by the citizen channel's Uniqueid, oldest first
        # Channels the dialplan marked as the center's self-test (SIAGA_TEST, set before the
        # channel is marked as a citizen's): never owed a callback. Cleared at their Hangup.
        self._tests: set[str] = set()

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
        if name == "Hangup":
            self._tests.discard(uniqueid)
        call = self._calls.get(uniqueid)
        if call is None:
            return []
        if name == "QueueCallerJoin":
            call.queued = True
        elif name == "AgentConnect":
            if call.answered_at is None:
                call.answered_at = now
        elif name == "Newexten":
            context = fields.get("Context", "")
            if (context.startswith(contract.AGENCY_CONTEXT_PREFIX)
                    or context == contract.CONTEXT_CONFERENCE):
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
        if variable == contract.VAR_TEST and value == "1" and uniqueid:
            # The center calling itself: not a citizen, whatever happens to the call.
            self._calls.pop(uniqueid, None)
            if len(self._tests) < self.max_tracked:
                self._tests.add(uniqueid)
            return
        if variable == contract.VAR_CITIZEN and value == "yes" and uniqueid:
            if uniqueid in self._tests:
                return
            if uniqueid not in self._calls and len(self._calls) >= self.max_tracked:
                # The oldest is the likeliest to have ended unseen (dicts keep insertion order).
                del self._calls[next(iter(self._calls))]
            self._calls.setdefault(uniqueid, _Tracked(
                uniqueid=uniqueid, channel=fields.get("Channel", ""),
                linkedid=fields.get("Linkedid", uniqueid),
                number=fields.get("CallerIDNum", ""), started=now,
            ))
            return
        call = self._calls.get(uniqueid)
        if call is None:
            return
        if variable == contract.VAR_FROM:
            call.source = value or None
        elif variable == contract.VAR_CATEGORY and value:
            call.category = value

    def _judge(self, call: _Tracked, now: float) -> MissedCall | None:
        number = "" if call.number in ("<unknown>", contract.ANONYMOUS_NUMBER) else call.number
        common = dict(number=number, linkedid=call.linkedid, channel=call.channel,
                      endpoint=endpoint_of(call.channel), source=call.source,
                      category=call.category, queued=call.queued)
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
    persistence hook's (the call log's row id), when it has one.

    ``evidence`` is the strongest single missed call's (:func:`evidence`), ``repeats`` the
    further missed calls from the number that showed a person, ``missed`` all of them."""

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
    calls: list[str] = field(default_factory=list)  # linkedids of the newest missed calls
    result_linkedid: str | None = None
    store_id: int | None = None
    evidence: float = 0.0
    repeats: int = 0
    missed: int = 1
    waited: float = 0.0  # the longest wait of its missed calls, seconds
    queued: bool = False  # one of its missed calls reached the queue

    @property
    def open(self) -> bool:
        """Still to be done (pending or ringing)."""
        return self.state in OPEN_STATES

    @property
    def strength(self) -> float:
        """How sure the center is that a person is owed this call: the list's order."""
        return self.evidence + REPEAT_POINTS * min(self.repeats, MAX_REPEATS)

    @property
    def source_key(self) -> str | None:
        """What the per-source bound counts by: the SIP source address of a caller that
        came straight to our SIP port. A trunk's callers all share the carrier's address, and
        an entry restored from the call log has none: the total bound covers those."""
        if self.endpoint == contract.ENDPOINT_TRUNK:
            return None
        return source_host(self.source)


def _rank(entry: CallbackEntry) -> tuple[float, float, int]:
    # Strongest first; among equals the oldest, so a newcomer never pushes an equal aside.
    return (-entry.strength, entry.created_at, entry.id)


class CallbackStore(Protocol):
    """Where callbacks are persisted. Called on the reactor thread: keep it quick (or hand
    the work to a writer thread) and raise on failure (the list logs it and keeps going)."""

    def created(self, entry: CallbackEntry) -> int | None:
        """A new entry; return its id in the store, if any."""

    def updated(self, entry: CallbackEntry) -> None:
        """An entry changed state."""


class CallbackList:
    """The callbacks owed, strongest evidence first; one open entry per number; at most
    ``max_per_source`` pending entries per SIP source address and ``max_open`` pending in
    all (an entry an operator is ringing is never evicted, and does not count).

    Every operation is O(log n) (sorted containers and dicts) or O(log n + k) for a page of
    k entries: the wallboard and the API read pages, never the whole list.
    """

    def __init__(self, store: CallbackStore | None = None,
                 on_change: Callable[[CallbackEntry], object] | None = None,
                 max_open: int = DEFAULT_MAX_OPEN,
                 max_per_source: int = DEFAULT_MAX_PER_SOURCE) -> None:
        if max_open < 1 or max_per_source < 1:
            raise ValueError("max_open and max_per_source must be at least 1")
        self.store = store
        self.on_change = on_change
        self.max_open = max_open
        self.max_per_source = max_per_source
        self._ids = itertools.count(1)
        self._open: dict[int, CallbackEntry] = {}
        self._closed: OrderedDict[int, CallbackEntry] = OrderedDict()
        self._by_number: dict[str, CallbackEntry] = {}
        self._by_call: dict[str, int] = {}  # a missed call's linkedid -> its open entry id
        # Every open entry, ranked: what the API and the wallboard page through.
        self._ranked = SortedKeyList(key=_rank)
        # Pending entries only (one an operator is ringing is never evicted), ranked: the
        # weakest is the last.
        self._evictable = SortedKeyList(key=_rank)
        self._by_source: dict[str, SortedKeyList] = {}
        self._persisted: set[int] = set()  # open entries the store was told about
        self.evicted_count = 0  # entries evicted since start
        self.refused_count = 0  # missed calls turned away at once (weaker than a full list)

    # -- reading ------------------------------------------------------------------------------

    @property
    def open_count(self) -> int:
        """Open entries (pending and ringing)."""
        return len(self._ranked)

    def page(self, offset: int = 0, limit: int = 50) -> list[CallbackEntry]:
        """``limit`` open entries from rank ``offset`` (0 is the strongest)."""
        if offset < 0 or limit < 0:
            raise ValueError("offset and limit must not be negative")
        return list(self._ranked.islice(offset, offset + limit))

    def pending(self) -> list[CallbackEntry]:
        """Every open entry, ranked (O(n): for tools and tests; pages use :meth:`page`)."""
        return list(self._ranked)

    def all(self) -> list[CallbackEntry]:
        """The open entries, ranked, then those recently closed (O(n), for tools)."""
        return list(self._ranked) + list(self._closed.values())

    def get(self, entry_id: int) -> CallbackEntry:
        """The entry with this id, open or recently closed (KeyError if none)."""
        entry = self._open.get(entry_id)
        return entry if entry is not None else self._closed[entry_id]

    def has_call(self, linkedid: str) -> bool:
        """Whether an open entry already counts this missed call."""
        return linkedid in self._by_call

    # -- changing -----------------------------------------------------------------------------

    def add(self, missed: MissedCall, now: float) -> CallbackEntry | None:
        """Owe ``missed`` a callback. None when it cannot be called back (no number) or when
        it is weaker than every entry of a full list (it is then not kept)."""
        if not missed.number:
            log.info("Missed call {linkedid} ({reason}) has no number to call back",
                     linkedid=missed.linkedid, reason=missed.reason)
            return None
        points = evidence(missed)
        existing = self._by_number.get(missed.number)
        if existing is not None:
            self._unindex(existing)
            self._note_call(existing, missed.linkedid)
            existing.missed += 1
            if points >= CREDIBLE_POINTS:
                existing.repeats += 1
            existing.evidence = max(existing.evidence, points)
            existing.waited = max(existing.waited, missed.waited)
            existing.queued = existing.queued or missed.queued
            # The newest way to reach the caller wins (an app may have moved).
            existing.source = missed.source or existing.source
            self._index(existing)
            self._enforce(existing)
            return existing if existing.open else None
        entry = CallbackEntry(
            id=next(self._ids), number=missed.number, reason=missed.reason,
            linkedid=missed.linkedid, endpoint=missed.endpoint, source=missed.source,
            category=missed.category, created_at=now, calls=[], evidence=points,
            waited=missed.waited, queued=missed.queued,
        )
        self._note_call(entry, missed.linkedid)
        self._open[entry.id] = entry
        self._index(entry)
        if self._enforce(entry, fresh=entry) is entry:
            # Weaker than all it would have displaced: never persisted, never shown.
            return None
        if self.store is not None:
            self._persisted.add(entry.id)
            try:
                entry.store_id = self.store.created(entry)
            except Exception:
                log.failure("Callback {id} for {number} not persisted", id=entry.id,
                            number=entry.number, call_id=entry.linkedid)
        self._changed(entry)
        return entry

    def restore(self, entries: list[CallbackEntry]) -> None:
        """Take back open entries a previous process persisted (``stored_open_callbacks``):
        each gets an id of this list; its ``store_id`` keeps pointing at its row. The bounds
        apply to them too: the weakest beyond them are evicted (and their rows say so)."""
        for stored in entries:
            if stored.number in self._by_number:
                continue
            stored.id = next(self._ids)
            stored.state = "pending"
            stored.calls = stored.calls[-MAX_CALLS_KEPT:]
            self._open[stored.id] = stored
            self._persisted.add(stored.id)
            for linkedid in stored.calls:
                self._by_call[linkedid] = stored.id
            self._index(stored)
            self._enforce(stored)

    def set_state(self, entry_id: int, state: str,
                  result_linkedid: str | None = None) -> CallbackEntry:
        """Move an entry to ``state`` (ringing counts an attempt)."""
        if state not in CALLBACK_STATES:
            raise ValueError(f"unknown callback state {state!r}")
        entry = self.get(entry_id)
        if entry.open:
            self._unindex(entry)
        entry.state = state
        if state == "ringing":
            entry.attempts += 1
        if result_linkedid:
            entry.result_linkedid = result_linkedid
        if entry.open:
            self._open[entry.id] = entry
            self._closed.pop(entry.id, None)
            self._index(entry)
        else:
            self._close(entry)
        self._persist(entry)
        self._changed(entry)
        if entry.open:
            self._enforce(entry)
        return entry

    # -- the bounds ---------------------------------------------------------------------------

    def _index(self, entry: CallbackEntry) -> None:
        self._by_number[entry.number] = entry
        self._ranked.add(entry)
        if entry.state != "pending":
            return
        self._evictable.add(entry)
        key = entry.source_key
        if key is not None:
            group = self._by_source.get(key)
            if group is None:
                group = self._by_source[key] = SortedKeyList(key=_rank)
            group.add(entry)

    def _unindex(self, entry: CallbackEntry) -> None:
        # Before any change to what _rank or source_key reads: the containers find an
        # entry by its key.
        self._ranked.discard(entry)
        self._evictable.discard(entry)
        key = entry.source_key
        group = self._by_source.get(key) if key is not None else None
        if group is not None:
            group.discard(entry)
            if not group:
                del self._by_source[key]

    def _enforce(self, entry: CallbackEntry, fresh: CallbackEntry | None = None
                 ) -> CallbackEntry | None:
        """Evict the weakest pending entries beyond the bounds, after ``entry`` came in or
        changed; the entry evicted last (``entry`` itself when it was the weakest). ``fresh``
        is a newcomer: turned away rather than evicted when it is the weakest."""
        evicted = None
        key = entry.source_key
        group = self._by_source.get(key) if key is not None else None
        while group is not None and len(group) > self.max_per_source:
            evicted = self._evict(group[-1], f"more than {self.max_per_source} from {key}",
                                  fresh)
            group = self._by_source.get(key)
        while len(self._evictable) > self.max_open:
            evicted = self._evict(self._evictable[-1], f"more than {self.max_open} owed",
                                  fresh)
        return evicted

    def _evict(self, weakest: CallbackEntry, why: str,
               fresh: CallbackEntry | None = None) -> CallbackEntry:
        persisted = weakest.id in self._persisted
        self._unindex(weakest)
        weakest.state = EVICTED
        self._close(weakest)
        if weakest is fresh:
            self.refused_count += 1
        else:
            self.evicted_count += 1
        log.debug("Callback {id} for {number} evicted: {why}", id=weakest.id,
                  number=weakest.number, why=why, call_id=weakest.linkedid)
        if persisted:
            # Its row says it is no longer owed (a restart does not bring it back).
            self._persist(weakest)
            self._changed(weakest)
        return weakest

    def _close(self, entry: CallbackEntry) -> None:
        self._open.pop(entry.id, None)
        self._persisted.discard(entry.id)
        if self._by_number.get(entry.number) is entry:
            del self._by_number[entry.number]
        for linkedid in entry.calls:
            if self._by_call.get(linkedid) == entry.id:
                del self._by_call[linkedid]
        self._closed[entry.id] = entry
        while len(self._closed) > MAX_CLOSED_KEPT:
            self._closed.popitem(last=False)

    def _note_call(self, entry: CallbackEntry, linkedid: str) -> None:
        entry.calls.append(linkedid)
        self._by_call[linkedid] = entry.id
        while len(entry.calls) > MAX_CALLS_KEPT:
            dropped = entry.calls.pop(0)
            if self._by_call.get(dropped) == entry.id:
                del self._by_call[dropped]

    def _persist(self, entry: CallbackEntry) -> None:
        if self.store is None:
            return
        try:
            self.store.updated(entry)
        except Exception:
            log.failure("Callback {id} state {state} not persisted", id=entry.id,
                        state=entry.state, call_id=entry.linkedid)

    def _changed(self, entry: CallbackEntry) -> None:
        if self.on_change is not None:
            try:
                self.on_change(entry)
            except Exception:
                log.failure("Callback listener failed on {id}", id=entry.id,
                            call_id=entry.linkedid)


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
        d.addErrback(lambda f: log.failure("Callback {id} not persisted", f, id=entry.id,
                                         call_id=entry.linkedid))
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
        # The evidence the live list ranked it by, again from the logged call.
        waited, queued = 0.0, False
        if call is not None:
            waited = (call.answer_seconds if row.reason == DROPPED
                      else call.duration_seconds) or 0.0
            queued = bool(call.queue_passes) or call.queued_at is not None
        entries.append(CallbackEntry(
            id=0, number=row.number, reason=row.reason,
            linkedid=call.linkedid if call is not None else "",
            endpoint=endpoint_of(channel)[1] if channel else "", source=None,
            category=(call.category or "") if call is not None else "",
            created_at=created.timestamp(), attempts=row.attempts,
            calls=[call.linkedid] if call is not None else [], store_id=row.id,
            evidence=evidence(MissedCall(row.reason, row.number, "", "", "", None, "",
                                         waited, None, queued)),
            waited=waited, queued=queued))
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
    if getattr(record, "test", False):
        return None  # the center's self-test call
    ended = record.ended_at
    if ended is None or now - ended > window:
        return None
    channel = record.legs[0].channel if record.legs else ""
    from dispatcher.calllog.journey import endpoint_of

    endpoint = endpoint_of(channel)[1] if channel else ""
    number = "" if record.caller_number in ("", "<unknown>", contract.ANONYMOUS_NUMBER) \
        else record.caller_number
    queued = record.queue_passes > 0 or record.queued_at is not None
    if record.answered_at is None:
        return MissedCall(ABANDONED, number, record.linkedid, channel, endpoint,
                          record.sip_source, record.category or "",
                          ended - record.started_at, None, queued)
    talked = ended - record.answered_at
    if talked < dropped_seconds and not any(leg.kind in _AGENCY_LEGS for leg in record.legs):
        return MissedCall(DROPPED, number, record.linkedid, channel, endpoint,
                          record.sip_source, record.category or "",
                          record.answered_at - record.started_at, talked, queued)
    return None
