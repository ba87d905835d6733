"""The callbacks the center owes for missed hotline calls: bounded, ranked, one per number.

:class:`CallbackList` keeps them in memory, one open entry per number (a citizen who calls
three times and gives up three times is called back once), with an optional
:class:`CallbackStore` to persist them (:mod:`dispatcher.callbacks.store`). Every change of
state is a move of the one table (:mod:`dispatcher.callbacks.states`): a move it does not
allow (done → pending) raises and changes nothing.

Anyone can call the hotline and hang up, thousands of times a minute from a script, so the
list is bounded and ranked. Each entry carries the evidence that a person was there (how
long the caller waited, whether they reached the operators' queue, whether an operator
answered, how often the same number tried again: :func:`~dispatcher.callbacks.missed.evidence`);
the list is kept sorted on it, strongest first, in balanced sorted containers (insert, remove,
rank and page in O(log n)). Beyond ``max_per_source`` open entries from one SIP source
address, or ``max_open`` in all, the weakest pending entry is evicted (state ``evicted``): a
flood of short calls only ever displaces its own kind, and a citizen who waited stays on top.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from sortedcontainers import SortedKeyList
from twisted.logger import Logger

from dialplans import contract
from dispatcher.callbacks.missed import MissedCall, evidence, source_host
from dispatcher.callbacks.states import (
    CallbackInput,
    CallbackState,
    input_towards,
    next_state,
    stored,
)

__all__ = ["CallbackEntry", "CallbackList", "CallbackStore"]

log = Logger(namespace="dispatcher.callbacks.owed")

_OPEN = frozenset({CallbackState.PENDING, CallbackState.RINGING_OPERATOR,
                   CallbackState.RINGING_CITIZEN})
DEFAULT_MAX_OPEN = 1000
DEFAULT_MAX_PER_SOURCE = 20
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
    phase: CallbackState = CallbackState.PENDING
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
    def state(self) -> str:
        """The state as the call log and the API name it (both ringing states: ringing)."""
        return stored(self.phase)

    @property
    def open(self) -> bool:
        """Still to be done (pending or ringing)."""
        return self.phase in _OPEN

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
        """Take back open entries a previous process persisted (``store.owed_callbacks``):
        each gets an id of this list; its ``store_id`` keeps pointing at its row. The bounds
        apply to them too: the weakest beyond them are evicted (and their rows say so)."""
        for kept in entries:
            if kept.number in self._by_number:
                continue
            kept.id = next(self._ids)
            kept.phase = CallbackState.PENDING  # a ring of the process that died is gone
            kept.calls = kept.calls[-MAX_CALLS_KEPT:]
            self._open[kept.id] = kept
            self._persisted.add(kept.id)
            for linkedid in kept.calls:
                self._by_call[linkedid] = kept.id
            self._index(kept)
            self._enforce(kept)

    def set_state(self, entry_id: int, state: str,
                  result_linkedid: str | None = None) -> CallbackEntry:
        """Move an entry to the stored state ``state`` by the table's move that leads there
        (ringing counts an attempt). :class:`IllegalMove` when the table has none (a closed
        entry never opens again), ``ValueError`` for an unknown state: nothing changed."""
        entry = self.get(entry_id)
        return self.move(entry_id, input_towards(entry.phase, state), result_linkedid)

    def move(self, entry_id: int, event: CallbackInput,
             result_linkedid: str | None = None) -> CallbackEntry:
        """Apply ``event`` to an entry (:func:`~dispatcher.callbacks.states.next_state`);
        :class:`IllegalMove` for a pair not in the table, with nothing changed."""
        entry = self.get(entry_id)
        after = next_state(entry.phase, event)
        if entry.open:
            self._unindex(entry)
        entry.phase = after
        if event is CallbackInput.RING_OPERATOR:
            entry.attempts += 1
        if result_linkedid:
            entry.result_linkedid = result_linkedid
        if entry.open:
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
        if entry.phase is not CallbackState.PENDING:
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
        weakest.phase = next_state(weakest.phase, CallbackInput.EVICT)
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


