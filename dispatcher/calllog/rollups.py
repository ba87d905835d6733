"""Per-hour roll-ups of the call log, kept exact by the writer, read by the monthly report.

A month of a busy center is a million calls; adding them up for every report took seconds.
The writer therefore keeps, in the transaction that saves a journey, what each UTC hour adds to
the report (:class:`~dispatcher.calllog.models.CallRollup`,
:class:`~dispatcher.calllog.models.AgencyRollup`), and the report reads those rows for the whole
hours of its period.

Exactness, because a supervisor compares these figures with the log:

* A journey saved again (a live update, the CEL reconcile, a call closed after AMI was cut)
  first takes its old contribution away, then adds its new one (:func:`snapshot` before,
  :func:`apply` after), in the same transaction: a crash leaves both or neither.
* Seconds are summed as whole microseconds (integers): adding and taking away the same journey
  a thousand times leaves the sum exactly where it was, which float sums do not.
* A maximum cannot be taken away: when the journey that held an hour's maximum changes, the
  maximum is read again from that hour's rows.
* The short-abandon threshold is the report's parameter (5 s unless asked): abandoned calls
  shorter than ``SHORT_MAX`` seconds are kept per whole second of duration
  (``short_second``), which decides "shorter than the threshold" exactly for any whole-second
  threshold up to ``SHORT_MAX``. A longer or fractional threshold, or a zone whose offset is
  not whole hours (an hour of UTC is then not one local hour), is reported from the rows
  themselves. Finer or longer buckets would multiply the rows the report reads.

Everything here blocks: the writer's thread, the report's thread, a migration.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, and_, bindparam, case, delete, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from dispatcher.calllog.models import AgencyRollup, Call, CallRollup, Leg

ABANDONED = ("abandoned_ivr", "abandoned_queue")
#: The longest short-abandon threshold the roll-ups answer; the bucket of every call that is
#: short for none of them (any other outcome, no duration, ``SHORT_MAX`` s or more).
SHORT_MAX = 10
NEVER_SHORT = SHORT_MAX
#: The service levels the roll-ups count (``within_<seconds>`` columns); the report checks
#: that its own list is the same.
WITHIN = (15, 20)
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)
#: Dimensions also kept per UTC day (``hour`` is then the day's start), and their day kind.
DAY_KINDS = {"category": "category_day", "operator": "operator_day"}

CALL_KEY = ("hour", "kind", "direction", "category", "operator_id", "outcome", "short_second")
CALL_SUMS = ("calls", "answer_us", "talk_us", "requeued", "within_15", "within_20")
AGENCY_KEY = ("hour", "agency_id")
AGENCY_SUMS = (
    "legs",
    "transfers",
    "answered",
    "no_answer",
    "busy",
    "failed",
    "cancelled",
    "fallbacks",
    "ring_n",
    "ring_us",
    "talk_us",
)
AGENCY_LEG_KINDS = ("transfer_attempt", "agency_talk")

# A contribution: key tuple -> (sums in the order above, maximum or None).
Contribution = dict[tuple[Any, ...], tuple[list[int], float | None]]


def hour_of(value: dt.datetime) -> dt.datetime:
    """The start of the UTC hour holding ``value`` (aware UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)


def day_of(value: dt.datetime) -> dt.datetime:
    """The start of the UTC day holding ``value`` (aware UTC)."""
    return hour_of(value).replace(hour=0)


def micro(seconds: float | None) -> int:
    """Seconds as whole microseconds (0 for none)."""
    return 0 if seconds is None else round(seconds * 1_000_000)


def short_second(outcome: str, duration: float | None) -> int:
    """The bucket of a call's duration that decides a short abandon for a whole-second
    threshold ``t`` <= ``SHORT_MAX``: short exactly when ``short_second(...) < t``."""
    if outcome not in ABANDONED or duration is None or duration >= NEVER_SHORT:
        return NEVER_SHORT
    if duration < 0:
        return -1
    return int(duration)


def counts(call: Any) -> bool:
    """Whether the call counts in the report's call figures: finished, and not a self-test."""
    return call.outcome != "in_progress" and not call.test


def call_contribution(call: Any) -> Contribution:
    """What one call row (or any object with its columns) adds to the call roll-ups."""
    if not counts(call):
        return {}
    answered = call.outcome == "answered"
    answer = call.answer_seconds
    sums = [
        1,
        micro(answer) if answered else 0,
        micro(call.talk_seconds) if answered else 0,
        1 if (call.queue_passes or 0) > 1 else 0,
    ]
    sums += [1 if answered and answer is not None and answer <= s else 0 for s in WITHIN]
    maximum = answer if answered else None
    hour = hour_of(call.started_at)
    bucket = short_second(call.outcome, call.duration_seconds)
    out: Contribution = {
        (hour, "all", call.direction, "", 0, call.outcome, bucket): (sums, maximum),
    }
    if call.direction == "inbound":
        # Only inbound calls have category and operator tables.
        category = call.category or ""
        out[(hour, "category", call.direction, category, 0, call.outcome, bucket)] = (
            sums,
            maximum,
        )
        if call.answered_by_id is not None:
            out[
                (hour, "operator", call.direction, "", call.answered_by_id, call.outcome, bucket)
            ] = (
                sums,
                maximum,
            )
        # The category and operator tables have no hour of day: a month of them is read from
        # one row per UTC day (and the hours of the period's partial UTC days).
        day = day_of(hour)
        for key in list(out):
            if key[1] in DAY_KINDS:
                out[(day, DAY_KINDS[key[1]], *key[2:])] = out[key]
    return out


def leg_contribution(leg: Any, into: Contribution | None = None) -> Contribution:
    """What one leg row adds to the agency roll-ups (added into ``into`` when given)."""
    out: Contribution = {} if into is None else into
    if leg.kind not in AGENCY_LEG_KINDS or leg.agency_id is None:
        return out
    attempt = leg.kind == "transfer_attempt"
    answered = attempt and leg.result == "answered"
    ring = leg.ring_seconds if answered else None
    sums = [
        1,
        int(attempt),
        int(answered),
        int(attempt and leg.result == "no_answer"),
        int(attempt and leg.result == "busy"),
        int(attempt and leg.result == "failed"),
        int(attempt and leg.result == "cancelled"),
        int(attempt and bool(leg.fallback)),
        int(ring is not None),
        micro(ring),
        0 if attempt else micro(leg.duration_seconds),
    ]
    _add(out, (hour_of(leg.call_started_at), leg.agency_id), sums, ring)
    return out


def leg_contribution_of(legs: Iterable[Any]) -> Contribution:
    """What several leg rows add to the agency roll-ups."""
    out: Contribution = {}
    for leg in legs:
        leg_contribution(leg, out)
    return out


def _add(into: Contribution, key: tuple[Any, ...], sums: list[int], maximum: float | None) -> None:
    have = into.get(key)
    if have is None:
        into[key] = (list(sums), maximum)
        return
    total = [a + b for a, b in zip(have[0], sums, strict=True)]
    into[key] = (total, _max(have[1], maximum))


def _max(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


@dataclass
class Snapshot:
    """What one journey contributes to the roll-ups at one moment."""

    calls: Contribution = field(default_factory=dict)
    agencies: Contribution = field(default_factory=dict)


_LEG_COLUMNS = (
    Leg.kind,
    Leg.agency_id,
    Leg.call_started_at,
    Leg.result,
    Leg.ring_seconds,
    Leg.duration_seconds,
    Leg.fallback,
)


# Built once: the writer runs these for every journey, and building a statement costs more
# than running it.
_JOURNEY_LEGS = select(*_LEG_COLUMNS).where(
    Leg.call_id == bindparam("call_id"),
    Leg.kind.in_(AGENCY_LEG_KINDS),
    Leg.agency_id.is_not(None),
)
_ADD_ONLY: dict[tuple[str, Any], Any] = {}


def snapshot(session: Session, call: Call | None) -> Snapshot:
    """The contribution of ``call`` as the database holds it now (its row and its legs)."""
    if call is None or call.id is None:
        return Snapshot()
    agencies: Contribution = {}
    for leg in session.execute(_JOURNEY_LEGS, {"call_id": call.id}):
        leg_contribution(leg, agencies)
    return Snapshot(call_contribution(call), agencies)


def apply(session: Session, old: Snapshot, new: Snapshot) -> None:
    """Replace a journey's ``old`` contribution with its ``new`` one, in the session's
    transaction (the journey's rows must already be flushed in their new state)."""
    _apply(session, CallRollup, CALL_KEY, CALL_SUMS, "answer_max", old.calls, new.calls)
    _apply(session, AgencyRollup, AGENCY_KEY, AGENCY_SUMS, "ring_max", old.agencies, new.agencies)


def _insert(session: Session, model: Any) -> Any:
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return pg_insert(model)
    if dialect == "sqlite":
        return sqlite_insert(model)
    raise RuntimeError(f"roll-ups need SQLite or PostgreSQL, not {dialect}")  # pragma: no cover


def _add_only(
    session: Session,
    model: Any,
    key_names: tuple[str, ...],
    sum_names: tuple[str, ...],
    max_name: str,
    added: list[tuple[tuple[Any, ...], tuple[list[int], float | None]]],
) -> None:
    """Add contributions no row holds yet (a journey counted for the first time): one
    statement, each row created or added to in place."""
    cache_key = (session.get_bind().dialect.name, model)
    upsert = _ADD_ONLY.get(cache_key)
    if upsert is None:
        statement = _insert(session, model)
        table = model.__table__
        mine, theirs = table.c[max_name], statement.excluded[max_name]
        set_ = {name: table.c[name] + statement.excluded[name] for name in sum_names}
        set_[max_name] = case(
            (mine.is_(None), theirs),
            (theirs.is_(None), mine),
            (theirs > mine, theirs),
            else_=mine,
        )
        upsert = statement.on_conflict_do_update(index_elements=list(key_names), set_=set_)
        _ADD_ONLY[cache_key] = upsert
    rows = []
    for key, (sums, maximum) in added:
        row = dict(zip(key_names, key, strict=True))
        row.update(zip(sum_names, sums, strict=True))
        row[max_name] = maximum
        rows.append(row)
    session.execute(upsert, rows)


def _upsert_missing(
    session: Session, model: Any, key_names: tuple[str, ...], keys: list[tuple[Any, ...]]
) -> None:
    rows = [dict(zip(key_names, key, strict=True)) for key in keys]
    statement = _insert(session, model).on_conflict_do_nothing(index_elements=list(key_names))
    session.execute(statement, rows)


def _apply(
    session: Session,
    model: Any,
    key_names: tuple[str, ...],
    sum_names: tuple[str, ...],
    max_name: str,
    old: Contribution,
    new: Contribution,
) -> None:
    changed = [key for key in old.keys() | new.keys() if old.get(key) != new.get(key)]
    if not changed:
        return
    changed.sort(key=repr)  # one order for every writer: no deadlock between two of them
    if not any(key in old for key in changed):
        _add_only(
            session, model, key_names, sum_names, max_name, [(key, new[key]) for key in changed]
        )
        return
    _upsert_missing(session, model, key_names, changed)
    columns = [getattr(model, name) for name in key_names]
    match = or_(*(and_(*(c == v for c, v in zip(columns, key, strict=True))) for key in changed))
    query = select(
        model.id, *columns, *(getattr(model, n) for n in sum_names), getattr(model, max_name)
    ).where(match)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    updates, gone, stale = [], [], []
    width = len(key_names)
    for row in session.execute(query):
        key = tuple(row[1 : 1 + width])
        stored = list(row[1 + width : 1 + width + len(sum_names)])
        stored_max = row[-1]
        old_sums, old_max = old.get(key, ([0] * len(sum_names), None))
        new_sums, new_max = new.get(key, ([0] * len(sum_names), None))
        sums = [s - o + n for s, o, n in zip(stored, old_sums, new_sums, strict=True)]
        if sums[0] == 0:
            gone.append(row[0])
            continue
        values = dict(zip(sum_names, sums, strict=True), id=row[0])
        if old_max is not None and stored_max is not None and old_max >= stored_max:
            # The journey may have held this hour's maximum: read it again below.
            stale.append((row[0], key))
            values[max_name] = stored_max
        else:
            values[max_name] = _max(stored_max, new_max)
        updates.append(values)
    if updates:
        session.execute(update(model), updates)
    if gone:
        session.execute(delete(model).where(model.id.in_(gone)))
    for row_id, key in stale:
        maximum = session.scalar(_raw_max(model, key))
        session.execute(update(model).where(model.id == row_id).values({max_name: maximum}))


def _raw_max(model: Any, key: tuple[Any, ...]) -> Any:
    """The maximum of one roll-up row, read from the journeys' own rows."""
    if model is AgencyRollup:
        hour, agency_id = key
        return select(func.max(Leg.ring_seconds)).where(
            Leg.kind == "transfer_attempt",
            Leg.result == "answered",
            Leg.call_started_at >= hour,
            Leg.call_started_at < hour + HOUR,
            Leg.agency_id == agency_id,
        )
    hour, kind, direction, category, operator_id, outcome, _bucket = key
    span = DAY if kind.endswith("_day") else HOUR
    kind = kind.removesuffix("_day")
    where = [
        Call.started_at >= hour,
        Call.started_at < hour + span,
        Call.test.is_(False),
        Call.direction == direction,
        Call.outcome == outcome,
    ]
    if kind == "category":
        where.append(func.coalesce(Call.category, "") == category)
    elif kind == "operator":
        where.append(Call.answered_by_id == operator_id)
    # Only answered calls carry a maximum, and all of them are in bucket NEVER_SHORT.
    return select(func.max(Call.answer_seconds)).where(*where)


# --------------------------------------------------------------------------------------------
# Recomputation from the rows (the migration's backfill, the benchmark, tests)

_CALL_COLUMNS = (
    Call.started_at,
    Call.direction,
    Call.category,
    Call.answered_by_id,
    Call.outcome,
    Call.duration_seconds,
    Call.answer_seconds,
    Call.talk_seconds,
    Call.queue_passes,
    Call.test,
)


def call_rows(connection: Connection | Session, where: Iterable[Any] = ()) -> Iterator[Any]:
    """The columns the call roll-ups need, of the calls matching ``where``, streamed."""
    result = connection.execute(
        select(*_CALL_COLUMNS).where(*where).execution_options(yield_per=20_000)
    )
    yield from result


def leg_rows(connection: Connection | Session, where: Iterable[Any] = ()) -> Iterator[Any]:
    """The agency legs the agency roll-ups need, matching ``where``, streamed."""
    result = connection.execute(
        select(*_LEG_COLUMNS)
        .where(Leg.kind.in_(AGENCY_LEG_KINDS), Leg.agency_id.is_not(None), *where)
        .execution_options(yield_per=20_000)
    )
    yield from result


def recompute(connection: Connection | Session) -> Snapshot:
    """Every roll-up as it should be, computed from the calls and legs alone."""
    total = Snapshot()
    for row in call_rows(connection):
        for key, (sums, maximum) in call_contribution(row).items():
            _add(total.calls, key, sums, maximum)
    for row in leg_rows(connection):
        leg_contribution(row, total.agencies)
    return total


def stored(connection: Connection | Session) -> Snapshot:
    """Every roll-up row as the database holds it."""
    out = Snapshot()
    for model, key_names, sum_names, max_name, into in (
        (CallRollup, CALL_KEY, CALL_SUMS, "answer_max", out.calls),
        (AgencyRollup, AGENCY_KEY, AGENCY_SUMS, "ring_max", out.agencies),
    ):
        query = select(
            *(getattr(model, n) for n in key_names),
            *(getattr(model, n) for n in sum_names),
            getattr(model, max_name),
        )
        width = len(key_names)
        for row in connection.execute(query):
            key = tuple(row[:width])
            into[(hour_of(key[0]), *key[1:])] = (list(row[width:-1]), row[-1])
    return out


def rebuild(connection: Connection | Session) -> tuple[int, int]:
    """Replace every roll-up row with one computed from the calls and legs (the backfill).

    Run it inside the caller's transaction. Returns the call and agency roll-up rows written.
    """
    total = recompute(connection)
    connection.execute(delete(CallRollup))
    connection.execute(delete(AgencyRollup))
    for model, key_names, sum_names, max_name, rows in (
        (CallRollup, CALL_KEY, CALL_SUMS, "answer_max", total.calls),
        (AgencyRollup, AGENCY_KEY, AGENCY_SUMS, "ring_max", total.agencies),
    ):
        batch = []
        for key, (sums, maximum) in rows.items():
            values = dict(zip(key_names, key, strict=True))
            values.update(zip(sum_names, sums, strict=True))
            values[max_name] = maximum
            batch.append(values)
            if len(batch) >= 5_000:
                connection.execute(insert(model), batch)
                batch = []
        if batch:
            connection.execute(insert(model), batch)
    return len(total.calls), len(total.agencies)


def differences(connection: Connection | Session, limit: int = 10) -> list[str]:
    """Where the stored roll-ups differ from a recomputation (empty when they agree)."""
    want, have = recompute(connection), stored(connection)
    out = []
    for name, a, b in (("call", want.calls, have.calls), ("agency", want.agencies, have.agencies)):
        for key in sorted(a.keys() | b.keys(), key=repr):
            if a.get(key) != b.get(key):
                out.append(f"{name} {key}: rows say {a.get(key)}, roll-up says {b.get(key)}")
                if len(out) >= limit:
                    return out
    return out


def hours(start: dt.datetime, end: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """The whole UTC hours inside ``[start, end)``: ``[first, last)`` (empty when equal)."""
    first = hour_of(start)
    if first < start:
        first += HOUR
    last = max(first, hour_of(end))
    return first, last


def whole_days(first: dt.datetime, last: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """The whole UTC days inside ``[first, last)``: ``[start, end)`` (empty when equal)."""
    start = day_of(first)
    if start < first:
        start += DAY
    return start, max(start, day_of(last))


def edge_ranges(start: dt.datetime, end: dt.datetime) -> list[tuple[dt.datetime, dt.datetime]]:
    """The parts of ``[start, end)`` outside its whole hours (read from the rows)."""
    first, last = hours(start, end)
    if first >= last:
        return [(start, end)] if start < end else []
    return [(a, b) for a, b in ((start, first), (last, end)) if a < b]


__all__ = [
    "AGENCY_KEY",
    "AGENCY_SUMS",
    "CALL_KEY",
    "CALL_SUMS",
    "NEVER_SHORT",
    "SHORT_MAX",
    "Snapshot",
    "WITHIN",
    "apply",
    "call_contribution",
    "call_rows",
    "differences",
    "edge_ranges",
    "hour_of",
    "hours",
    "whole_days",
    "day_of",
    "leg_contribution",
    "leg_contribution_of",
    "leg_rows",
    "micro",
    "rebuild",
    "recompute",
    "short_second",
    "snapshot",
    "stored",
]
