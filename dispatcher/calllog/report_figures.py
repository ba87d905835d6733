"""Supervisor report figures, aggregated in SQL.

:func:`build_report` returns a plain data structure (dicts, lists, numbers, strings), the same
for the ``siaga report`` command and for an HTTP resource;
:func:`dispatcher.calllog.report_render.render` turns it into a document.

Definitions (stated in the report too):

* A call belongs to the period (and hour) in which it *arrived*, even if it ended after
  midnight; its legs (operator talk, transfers) count with it.
* *Offered*: inbound journeys that are finished, less *short abandons* (the caller hung up in the
  menu or the queue within ``short_abandon_seconds`` of arriving: misdials, pocket calls). One
  journey is one call however many times it went through the queue.
* *Answer time*: from arrival at the center (the first ring on the hotline) to the moment an
  operator is connected. It includes the menu: the citizen waits during it too. NENA-STA-020.1
  measures from arrival at the PSAP, and the menu is part of the center.
* *Service level*: calls answered within 15 s (20 s) among the offered calls, against
  NENA-STA-020.1's targets of 90 % (95 %). Abandoned calls count as not answered in time.
* *ASA*: mean answer time of answered calls. *AHT*: mean operator talk time of answered calls
  (all operator legs of a journey, consultation with an agency included).
"""

from __future__ import annotations

import datetime as dt
from fractions import Fraction
from typing import Any

from sqlalchemy import (
    Integer,
    and_,
    case,
    cast,
    func,
    literal,
    not_,
    or_,
    select,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import ColumnElement

from dispatcher.calllog import rollups
from dispatcher.calllog.models import (
    Agency,
    AgencyRollup,
    Call,
    Callback,
    CallRollup,
    Leg,
    Operator,
)
from dispatcher.calllog.report_period import ReportOptions, local_hour

SERVICE_LEVELS = ((15, 90.0), (20, 95.0))  # (seconds, target percent), NENA-STA-020.1
ABANDONED = ("abandoned_ivr", "abandoned_queue")
FAILED_TRANSFER = ("no_answer", "busy", "failed")
# The roll-ups count answers within these same seconds (their within_<s> columns).
assert tuple(s for s, _t in SERVICE_LEVELS) == rollups.WITHIN


def _count(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _avg(value: Any, condition: ColumnElement[bool]) -> ColumnElement[float]:
    return func.avg(case((condition, value), else_=None))


def _r(value: Any, digits: int = 1) -> float | None:
    return None if value is None else round(float(value), digits)


def _pct(part: int, whole: int) -> float | None:
    return None if not whole else round(100.0 * part / whole, 1)


# --------------------------------------------------------------------------------------------
# The report as data


def build_report(
    session: Session,
    options: ReportOptions,
    now: dt.datetime | None = None,
    use_rollups: bool = True,
) -> dict[str, Any]:
    """Compute every figure of the report for ``options`` (blocking: run off the reactor).

    The call figures come from the per-hour roll-ups the writer keeps
    (:mod:`dispatcher.calllog.rollups`) for the period's whole hours, and from the calls
    themselves for what is left; ``use_rollups=False`` (or a period the roll-ups cannot
    answer exactly, see :func:`_rollups_usable`) reads every call in one grouped scan instead.
    Either way the summary, the hourly, per-category and per-operator tables are sums of a
    few thousand groups. Agencies come the same way from their roll-ups or the transfer legs;
    repeat callers from one grouped scan of the period's calls (see :func:`_repeat_callers`).
    """
    start, end = options.utc_bounds()
    # The center's self-test calls are not citizens: they count nowhere in a report.
    in_period = and_(Call.started_at >= start, Call.started_at < end, Call.test.is_(False))
    short = and_(
        Call.outcome.in_(ABANDONED),
        Call.duration_seconds < options.short_abandon_seconds,
    )
    offered_filter = and_(
        in_period, Call.direction == "inbound", Call.outcome != "in_progress", not_(short)
    )
    rolled = use_rollups and _rollups_usable(options)
    if rolled:
        dims = _rolled_groups(session, start, end, options)
        agencies = _rolled_agencies(session, start, end)
    else:
        groups = _call_groups(session, in_period, short, options)
        dims = {"all": groups, "category": groups, "operator": groups}
        agencies = _agencies(session, start, end)
    inbound = [g for g in dims["all"] if g["direction"] == "inbound"]
    outbound = [g for g in dims["all"] if g["direction"] == "outbound"]
    summary = _fold(inbound)
    summary["short_abandons_excluded"] = sum(g["short"] for g in inbound)
    summary["outbound_calls"] = sum(g["all"] for g in outbound)
    summary["outbound_answered"] = sum(g["answered"] for g in outbound)
    return {
        "language": options.language,
        "period": {
            "from": options.start.isoformat(),
            "to": options.end.isoformat(),
            "timezone": options.timezone,
            "utc_start": start.isoformat(),
            "utc_end": end.isoformat(),
        },
        "generated_at": (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC).isoformat(),
        "settings": {
            "short_abandon_seconds": options.short_abandon_seconds,
            "service_level_targets": [
                {"seconds": s, "target_percent": t} for s, t in SERVICE_LEVELS
            ],
        },
        "summary": summary,
        "operators": _operators(
            session, [g for g in dims["operator"] if g["direction"] == "inbound"]
        ),
        "agencies": agencies,
        "categories": _categories([g for g in dims["category"] if g["direction"] == "inbound"]),
        "hourly": _hourly(inbound),
        "callbacks": _callbacks(session, start, end),
        "repeat_callers": _repeat_callers(session, offered_filter, options.top_repeat_callers),
    }


def summary(session: Session, options: ReportOptions) -> dict[str, Any]:
    """The report's summary row alone (offered, answered, service levels...) for the
    period: what live figures such as the metrics need, by the report's own definitions."""
    start, end = options.utc_bounds()
    if _rollups_usable(options):
        groups = _rolled_groups(session, start, end, options, kinds=("all",))["all"]
        return _fold([g for g in groups if g["direction"] == "inbound"])
    # The center's self-test calls are not citizens: they count nowhere in a report.
    in_period = and_(Call.started_at >= start, Call.started_at < end, Call.test.is_(False))
    short = and_(
        Call.outcome.in_(ABANDONED),
        Call.duration_seconds < options.short_abandon_seconds,
    )
    groups = _call_groups(session, in_period, short, options)
    return _fold([g for g in groups if g["direction"] == "inbound"])


_SUMMED = (
    "all",
    "short",
    "answered",
    "abandoned_ivr",
    "abandoned_queue",
    "unanswered",
    "dropped",
    "answer_sum",
    "talk_sum",
    "requeued",
) + tuple(f"within_{s}" for s, _t in SERVICE_LEVELS)


def _call_groups(
    session: Session,
    in_period: ColumnElement[bool],
    short: ColumnElement[bool],
    options: ReportOptions,
) -> list[dict[str, Any]]:
    """Partial aggregates of the period's finished calls, one row per (direction, local hour,
    category, answering operator). Short abandons are counted apart and nowhere else.

    The SQL groups by outcome and by "shorter than the threshold" as well, so every aggregate
    is a plain COUNT/SUM/MAX with no CASE per row (SQLite spends most of a report evaluating
    per-row expressions); the outcome columns are then laid out from those few groups.
    """
    hour = local_hour(Call.started_at, literal(options.utc_offset_minutes(), Integer()))
    category = func.coalesce(Call.category, "")
    is_short = cast(Call.duration_seconds < options.short_abandon_seconds, Integer)
    keys = (Call.direction, hour, category, Call.answered_by_id, Call.outcome, is_short)
    columns = [
        Call.direction.label("direction"),
        hour.label("hour"),
        category.label("category"),
        Call.answered_by_id.label("operator_id"),
        Call.outcome.label("outcome"),
        is_short.label("is_short"),
        func.count().label("n"),
        func.sum(Call.answer_seconds).label("answer_sum"),
        func.sum(Call.talk_seconds).label("talk_sum"),
        func.max(Call.answer_seconds).label("answer_max"),
        func.sum(cast(Call.queue_passes > 1, Integer)).label("requeued"),
    ]
    for seconds, _target in SERVICE_LEVELS:
        columns.append(
            func.sum(cast(Call.answer_seconds <= seconds, Integer)).label(f"within_{seconds}")
        )
    statement = select(*columns).where(in_period, Call.outcome != "in_progress").group_by(*keys)
    groups = []
    for row in session.execute(statement):
        r = row._mapping
        n = int(r["n"])
        outcome = r["outcome"]
        answered = outcome == "answered"
        short_abandon = outcome in ABANDONED and r["is_short"] == 1
        group: dict[str, Any] = {
            "direction": r["direction"],
            "hour": int(r["hour"]),
            "category": r["category"],
            "operator_id": r["operator_id"],
            "all": n,
            "short": n if short_abandon else 0,
            "answered": n if answered else 0,
            "abandoned_ivr": n if outcome == "abandoned_ivr" and not short_abandon else 0,
            "abandoned_queue": n if outcome == "abandoned_queue" and not short_abandon else 0,
            "unanswered": n if outcome == "unanswered" else 0,
            "dropped": n if outcome == "dropped" else 0,
            "answer_sum": float(r["answer_sum"] or 0.0) if answered else 0.0,
            "talk_sum": float(r["talk_sum"] or 0.0) if answered else 0.0,
            "answer_max": r["answer_max"] if answered else None,
            "requeued": 0 if short_abandon else int(r["requeued"] or 0),
        }
        for seconds, _target in SERVICE_LEVELS:
            key = f"within_{seconds}"
            group[key] = int(r[key] or 0) if answered else 0
        group["offered"] = n - group["short"]
        groups.append(group)
    return groups


def _fold(groups: list[dict[str, Any]]) -> dict[str, Any]:
    """Add partial aggregates up into the figures of one table row."""
    total = {key: sum(g[key] for g in groups) for key in _SUMMED}
    offered = sum(g["offered"] for g in groups)
    answered = int(total["answered"])
    abandoned = int(total["abandoned_ivr"] + total["abandoned_queue"])
    maxima = [g["answer_max"] for g in groups if g["answer_max"] is not None]
    return {
        "offered": offered,
        "answered": answered,
        "abandoned": abandoned,
        "abandoned_ivr": int(total["abandoned_ivr"]),
        "abandoned_queue": int(total["abandoned_queue"]),
        "unanswered": int(total["unanswered"]),
        "dropped": int(total["dropped"]),
        "answered_percent": _pct(answered, offered),
        "abandoned_percent": _pct(abandoned, offered),
        "asa_seconds": _r(total["answer_sum"] / answered) if answered else None,
        "aht_seconds": _r(total["talk_sum"] / answered) if answered else None,
        "talk_seconds": _r(total["talk_sum"]),
        "max_answer_seconds": _r(max(maxima)) if maxima else None,
        "requeued": int(total["requeued"]),
        "service_levels": [
            {
                "seconds": seconds,
                "target_percent": target,
                "answered_within": int(total[f"within_{seconds}"]),
                "percent": _pct(int(total[f"within_{seconds}"]), offered),
                "met": offered > 0 and 100.0 * total[f"within_{seconds}"] >= target * offered,
            }
            for seconds, target in SERVICE_LEVELS
        ],
    }


def _by(groups: list[dict[str, Any]], key: str) -> dict[Any, list[dict[str, Any]]]:
    out: dict[Any, list[dict[str, Any]]] = {}
    for group in groups:
        out.setdefault(group[key], []).append(group)
    return out


def _operators(session: Session, groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per operator: the calls they answered (ASA), and those calls' talk time (AHT)."""
    names = {op.id: op for op in session.scalars(select(Operator))}
    rows = []
    for op_id, mine in _by(groups, "operator_id").items():
        if op_id is None:
            continue
        folded = _fold(mine)
        op = names.get(op_id)
        rows.append(
            {
                "code": op.code if op else "?",
                "name": op.name if op else "?",
                "answered": folded["answered"],
                "asa_seconds": folded["asa_seconds"],
                "aht_seconds": folded["aht_seconds"],
                "talk_seconds": folded["talk_seconds"],
                "max_answer_seconds": folded["max_answer_seconds"],
                "answered_within_15": folded["service_levels"][0]["answered_within"],
            }
        )
    rows.sort(key=lambda r: (-r["answered"], r["code"]))
    return rows


def _agencies(session: Session, start: dt.datetime, end: dt.datetime) -> list[dict[str, Any]]:
    """Per agency: transfer attempts and agency talk of the journeys that arrived in the period
    (callbacks included: the agency was called all the same)."""
    is_attempt = Leg.kind == "transfer_attempt"
    is_talk = Leg.kind == "agency_talk"
    answered = and_(is_attempt, Leg.result == "answered")
    result = session.execute(
        select(
            Leg.agency_id,
            _count(is_attempt).label("transfers"),
            _count(answered).label("answered"),
            _count(and_(is_attempt, Leg.result == "no_answer")).label("no_answer"),
            _count(and_(is_attempt, Leg.result == "busy")).label("busy"),
            _count(and_(is_attempt, Leg.result == "failed")).label("failed"),
            _count(and_(is_attempt, Leg.result == "cancelled")).label("cancelled"),
            _count(and_(is_attempt, Leg.fallback == True)).label("fallbacks"),  # noqa: E712
            _avg(Leg.ring_seconds, answered).label("answer_time"),
            func.max(case((answered, Leg.ring_seconds), else_=None)).label("max_answer_time"),
            func.coalesce(func.sum(case((is_talk, Leg.duration_seconds), else_=None)), 0.0).label(
                "talk"
            ),
        )
        .where(
            Leg.kind.in_(("transfer_attempt", "agency_talk")),
            Leg.call_started_at >= start,
            Leg.call_started_at < end,
            Leg.agency_id.is_not(None),
        )
        .group_by(Leg.agency_id)
    ).all()
    agencies = {a.id: a for a in session.scalars(select(Agency))}
    rows = []
    for r in result:
        agency = agencies.get(r.agency_id)
        rows.append(
            {
                "code": agency.code if agency else "?",
                "name": agency.name if agency else "?",
                "transfers": int(r.transfers),
                "answered": int(r.answered),
                "no_answers": int(r.no_answer) + int(r.busy) + int(r.failed),
                "no_answer": int(r.no_answer),
                "busy": int(r.busy),
                "failed": int(r.failed),
                "cancelled": int(r.cancelled),
                "fallbacks": int(r.fallbacks),
                "answer_seconds": _r(r.answer_time),
                "max_answer_seconds": _r(r.max_answer_time),
                "talk_seconds": _r(r.talk),
            }
        )
    rows.sort(key=lambda r: r["code"])
    return rows


def _categories(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for category, mine in _by(groups, "category").items():
        folded = _fold(mine)
        if not folded["offered"]:
            continue
        rows.append(
            {
                "category": category,
                "offered": folded["offered"],
                "answered": folded["answered"],
                "abandoned": folded["abandoned"],
                "asa_seconds": folded["asa_seconds"],
                "aht_seconds": folded["aht_seconds"],
            }
        )
    rows.sort(key=lambda r: (-r["offered"], r["category"]))
    return rows


def _hourly(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    first_sl = SERVICE_LEVELS[0][0]
    by_hour = _by(groups, "hour")
    rows = []
    for h in range(24):
        folded = _fold(by_hour.get(h, []))
        within = folded["service_levels"][0]["answered_within"]
        rows.append(
            {
                "hour": h,
                "offered": folded["offered"],
                "answered": folded["answered"],
                "abandoned": folded["abandoned"],
                f"within_{first_sl}": within,
                "service_level_percent": _pct(within, folded["offered"]),
                "asa_seconds": folded["asa_seconds"],
            }
        )
    return rows


# --------------------------------------------------------------------------------------------
# The same groups from the per-hour roll-ups


def _rollups_usable(options: ReportOptions) -> bool:
    """Whether the roll-ups answer this report exactly.

    An hour of UTC is one local hour only in a zone whose offset is whole hours (all of
    Indonesia's), and short abandoned calls are kept per whole second of duration, which
    decides "shorter than the threshold" only for a whole-second threshold up to
    ``rollups.SHORT_MAX``. Otherwise the rows are read.
    """
    threshold = float(options.short_abandon_seconds)
    return (
        options.utc_offset_minutes() % 60 == 0
        and threshold.is_integer()
        and threshold <= rollups.SHORT_MAX
    )


_MICRO = 1_000_000


def _rolled_groups(
    session: Session,
    start: dt.datetime,
    end: dt.datetime,
    options: ReportOptions,
    kinds: tuple[str, ...] = ("all", "category", "operator"),
) -> dict[str, list[dict[str, Any]]]:
    """The groups of :func:`_call_groups`, per dimension (``kinds``), from the roll-ups of the
    period's whole hours and the calls of its partial hours (none for a whole-hour zone)."""
    offset = options.utc_offset_minutes()
    threshold = int(options.short_abandon_seconds)
    first, last = rollups.hours(start, end)
    hour = local_hour(CallRollup.hour, literal(offset, Integer()))
    is_short = cast(CallRollup.short_second < threshold, Integer)
    keys = (
        CallRollup.kind,
        CallRollup.direction,
        hour,
        CallRollup.category,
        CallRollup.operator_id,
        CallRollup.outcome,
        is_short,
    )
    statement = (
        select(
            *keys,
            *(func.sum(getattr(CallRollup, name)) for name in rollups.CALL_SUMS),
            func.max(CallRollup.answer_max),
        )
        .where(_rollup_rows(kinds, first, last))
        .group_by(*keys)
    )
    merged: dict[tuple[Any, ...], list[Any]] = {}
    for row in session.execute(statement):
        kind = row[0].removesuffix("_day")
        key = (kind, row[1], int(row[2]), row[3], row[4], row[5], int(row[6]))
        values = [int(v or 0) for v in row[7:-1]] + [row[-1]]
        have = merged.get(key)
        if have is not None:  # the same group from day rows and from hour rows
            maximum = (
                values[-1]
                if have[-1] is None
                else (have[-1] if values[-1] is None else max(have[-1], values[-1]))
            )
            values = [x + y for x, y in zip(have[:-1], values[:-1], strict=True)] + [maximum]
        merged[key] = values
    for a, b in rollups.edge_ranges(start, end):
        where = (Call.started_at >= a, Call.started_at < b, Call.test.is_(False))
        for call in rollups.call_rows(session, where):
            for key, (sums, maximum) in rollups.call_contribution(call).items():
                h, kind, direction, category, operator_id, outcome, bucket = key
                if kind not in kinds:
                    continue
                local = (h.hour + offset // 60) % 24
                group_key = (
                    kind,
                    direction,
                    local,
                    category,
                    operator_id,
                    outcome,
                    int(bucket < threshold),
                )
                have = merged.get(group_key)
                if have is None:
                    merged[group_key] = list(sums) + [maximum]
                else:
                    merged[group_key] = [x + y for x, y in zip(have[:-1], sums, strict=True)] + [
                        maximum
                        if have[-1] is None
                        else have[-1]
                        if maximum is None
                        else max(have[-1], maximum)
                    ]
    out: dict[str, list[dict[str, Any]]] = {kind: [] for kind in kinds}
    for key, values in merged.items():
        kind, direction, local, category, operator_id, outcome, short_flag = key
        n, answer_us, talk_us, requeued, *within, maximum = values
        if not n:
            continue
        answered = outcome == "answered"
        short_abandon = outcome in ABANDONED and short_flag == 1
        group: dict[str, Any] = {
            "direction": direction,
            "hour": local,
            "category": category,
            "operator_id": operator_id if kind == "operator" else None,
            "all": n,
            "short": n if short_abandon else 0,
            "answered": n if answered else 0,
            "abandoned_ivr": n if outcome == "abandoned_ivr" and not short_abandon else 0,
            "abandoned_queue": n if outcome == "abandoned_queue" and not short_abandon else 0,
            "unanswered": n if outcome == "unanswered" else 0,
            "dropped": n if outcome == "dropped" else 0,
            # Whole microseconds, summed exactly (see rollups): a Fraction keeps them exact
            # until the figure is rounded for display.
            "answer_sum": Fraction(answer_us, _MICRO) if answered else 0,
            "talk_sum": Fraction(talk_us, _MICRO) if answered else 0,
            "answer_max": maximum if answered else None,
            "requeued": 0 if short_abandon else requeued,
        }
        for (seconds, _target), count in zip(SERVICE_LEVELS, within, strict=True):
            group[f"within_{seconds}"] = count if answered else 0
        group["offered"] = n - group["short"]
        out[kind].append(group)
    return out


def _rollup_rows(kinds: tuple[str, ...], first: dt.datetime, last: dt.datetime) -> Any:
    """Which roll-up rows hold the whole hours ``[first, last)``: hour rows for the hourly
    dimension; for the others, day rows for the whole UTC days and hour rows around them."""
    in_hours = and_(CallRollup.hour >= first, CallRollup.hour < last)
    hourly = [k for k in kinds if k not in rollups.DAY_KINDS]
    daily = [k for k in kinds if k in rollups.DAY_KINDS]
    day_start, day_end = rollups.whole_days(first, last)
    parts = []
    if hourly:
        parts.append(and_(CallRollup.kind.in_(hourly), in_hours))
    if daily and day_start < day_end:
        parts.append(
            and_(
                CallRollup.kind.in_(daily),
                in_hours,
                or_(CallRollup.hour < day_start, CallRollup.hour >= day_end),
            )
        )
        parts.append(
            and_(
                CallRollup.kind.in_([rollups.DAY_KINDS[k] for k in daily]),
                CallRollup.hour >= day_start,
                CallRollup.hour < day_end,
            )
        )
    elif daily:
        parts.append(and_(CallRollup.kind.in_(daily), in_hours))
    return or_(*parts)


def _rolled_agencies(
    session: Session, start: dt.datetime, end: dt.datetime
) -> list[dict[str, Any]]:
    """:func:`_agencies` from the agency roll-ups of the whole hours and the legs of the
    partial ones."""
    first, last = rollups.hours(start, end)
    statement = (
        select(
            AgencyRollup.agency_id,
            *(func.sum(getattr(AgencyRollup, name)) for name in rollups.AGENCY_SUMS),
            func.max(AgencyRollup.ring_max),
        )
        .where(AgencyRollup.hour >= first, AgencyRollup.hour < last)
        .group_by(AgencyRollup.agency_id)
    )
    merged: rollups.Contribution = {}
    for row in session.execute(statement):
        merged[(row[0],)] = ([int(v or 0) for v in row[1:-1]], row[-1])
    for a, b in rollups.edge_ranges(start, end):
        legs = rollups.leg_rows(session, (Leg.call_started_at >= a, Leg.call_started_at < b))
        for key, (sums, maximum) in rollups.leg_contribution_of(legs).items():
            have = merged.get(key[1:])
            if have is None:
                merged[key[1:]] = (sums, maximum)
            else:
                merged[key[1:]] = (
                    [x + y for x, y in zip(have[0], sums, strict=True)],
                    maximum
                    if have[1] is None
                    else have[1]
                    if maximum is None
                    else max(have[1], maximum),
                )
    agencies = {a.id: a for a in session.scalars(select(Agency))}
    rows = []
    for (agency_id,), (sums, ring_max) in merged.items():
        v = dict(zip(rollups.AGENCY_SUMS, sums, strict=True))
        if not v["legs"]:
            continue
        agency = agencies.get(agency_id)
        ring = Fraction(v["ring_us"], _MICRO * v["ring_n"]) if v["ring_n"] else None
        rows.append(
            {
                "code": agency.code if agency else "?",
                "name": agency.name if agency else "?",
                "transfers": v["transfers"],
                "answered": v["answered"],
                "no_answers": v["no_answer"] + v["busy"] + v["failed"],
                "no_answer": v["no_answer"],
                "busy": v["busy"],
                "failed": v["failed"],
                "cancelled": v["cancelled"],
                "fallbacks": v["fallbacks"],
                "answer_seconds": _r(ring),
                "max_answer_seconds": _r(ring_max),
                "talk_seconds": _r(Fraction(v["talk_us"], _MICRO)),
            }
        )
    rows.sort(key=lambda r: r["code"])
    return rows


def _callbacks(session: Session, start: dt.datetime, end: dt.datetime) -> dict[str, Any]:
    counts = dict(
        session.execute(
            select(Callback.state, func.count())
            .where(Callback.created_at >= start, Callback.created_at < end)
            .group_by(Callback.state)
        ).all()
    )
    return {
        "created": sum(int(v) for v in counts.values()),
        "pending": int(counts.get("pending", 0)),
        "ringing": int(counts.get("ringing", 0)),
        "done": int(counts.get("done", 0)),
        "failed": int(counts.get("failed", 0)),
        "open_now": int(
            session.scalar(select(func.count()).where(Callback.state.in_(("pending", "ringing"))))
            or 0
        ),
    }


def _repeat_callers(
    session: Session, offered_filter: ColumnElement[bool], top: int
) -> dict[str, Any]:
    """Numbers that called more than once in the period: how many, their calls, the top ones.

    One grouped scan; window functions carry the totals on the top rows. This table stays on
    the calls themselves: whether a number called twice in the period is not a sum of what
    each hour holds (two calls in two different hours), and a roll-up per number and hour
    would hold about one row per call. It is most of the monthly report's time now.
    """
    per_number = (
        select(Call.caller_number.label("number"), func.count().label("calls"))
        .where(offered_filter, Call.caller_number != "")
        .group_by(Call.caller_number)
        .having(func.count() > 1)
        .subquery()
    )
    rows = session.execute(
        select(
            per_number.c.number,
            per_number.c.calls,
            func.count().over().label("numbers"),
            func.sum(per_number.c.calls).over().label("total"),
        )
        .order_by(per_number.c.calls.desc(), per_number.c.number)
        .limit(top)
    ).all()
    return {
        "numbers": int(rows[0].numbers) if rows else 0,
        "calls": int(rows[0].total) if rows else 0,
        "top": [{"number": r.number, "calls": int(r.calls)} for r in rows],
    }
