"""Supervisor reports: figures aggregated in SQL, rendered as HTML, CSV or JSON.

:func:`build_report` returns a plain data structure (dicts, lists, numbers, strings), the same
for the ``siaga report`` command and for an HTTP resource; :func:`render` turns it into a
document. Bahasa Indonesia by default, English on request.

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

import csv
import datetime as dt
import io
import json
import math
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from sqlalchemy import (
    Integer,
    and_,
    case,
    cast,
    func,
    literal,
    not_,
    select,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import ColumnElement, FunctionElement

from dispatcher.calllog.models import Agency, Call, Callback, Leg, Operator

SERVICE_LEVELS = ((15, 90.0), (20, 95.0))  # (seconds, target percent), NENA-STA-020.1
ABANDONED = ("abandoned_ivr", "abandoned_queue")
FAILED_TRANSFER = ("no_answer", "busy", "failed")


@dataclass(frozen=True)
class ReportOptions:
    """What a report covers: local dates ``start``..``end`` inclusive, in ``timezone``."""

    start: dt.date
    end: dt.date
    timezone: str = "Asia/Jakarta"
    short_abandon_seconds: float = 5.0
    language: str = "id"
    top_repeat_callers: int = 10

    MAX_DAYS = 400  # a report over more than a year is a mistake, not a request

    @classmethod
    def parse(
        cls,
        start: str,
        end: str,
        language: str = "id",
        timezone: str = "Asia/Jakarta",
        short_abandon_seconds: str | float = 5.0,
    ) -> ReportOptions:
        """Options from untrusted text (a query string): raises ValueError with a reason."""
        try:
            first, last = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
        except (TypeError, ValueError):
            raise ValueError("dates must be YYYY-MM-DD") from None
        if last < first:
            raise ValueError("the period ends before it starts")
        if (last - first).days >= cls.MAX_DAYS:
            raise ValueError(f"the period is longer than {cls.MAX_DAYS} days")
        if language not in TEXT:
            raise ValueError(f"language must be one of {', '.join(sorted(TEXT))}")
        try:
            ZoneInfo(timezone)
        except (ValueError, KeyError, OSError):
            raise ValueError("unknown time zone") from None
        try:
            short = float(short_abandon_seconds)
        except (TypeError, ValueError):
            raise ValueError("short abandon threshold must be a number of seconds") from None
        if not 0 <= short <= 600:
            raise ValueError("short abandon threshold must be between 0 and 600 s")
        return cls(first, last, timezone, short, language)

    def utc_bounds(self) -> tuple[dt.datetime, dt.datetime]:
        """The period as ``[start, end)`` in UTC."""
        zone = ZoneInfo(self.timezone)
        start = dt.datetime.combine(self.start, dt.time(), zone)
        end = dt.datetime.combine(self.end + dt.timedelta(days=1), dt.time(), zone)
        return start.astimezone(dt.UTC), end.astimezone(dt.UTC)

    def utc_offset_minutes(self) -> int:
        """The zone's offset at the start of the period (Indonesian zones have no DST)."""
        offset = dt.datetime.combine(self.start, dt.time(12), ZoneInfo(self.timezone)).utcoffset()
        return int(offset.total_seconds() // 60) if offset else 0


# --------------------------------------------------------------------------------------------
# SQL helpers that differ between SQLite and PostgreSQL


class local_hour(FunctionElement[int]):
    """The hour of day (0-23) of a UTC timestamp column, shifted by whole minutes.

    ``local_hour(column, literal(minutes))``.
    """

    type = Integer()
    # Not cached: the SQLite form inlines a whole-hour offset, which a cached statement would
    # then reuse for another zone. Reports are rare; compiling them each time costs nothing.
    inherit_cache = False
    name = "local_hour"


@compiles(local_hour, "sqlite")
def _local_hour_sqlite(element: local_hour, compiler: Any, **kw: Any) -> str:
    # SQLAlchemy stores SQLite timestamps as "YYYY-MM-DD HH:MM:SS.ffffff": cutting the hour
    # (and minute) out of the text costs far less per row than strftime() parsing it.
    column, minutes = list(element.clauses)
    col = compiler.process(column, **kw)
    value = getattr(minutes, "value", None)
    if isinstance(value, int) and value % 60 == 0:
        # Whole-hour zones (all of Indonesia's): the hour alone decides.
        return f"((CAST(substr({col}, 12, 2) AS INTEGER) + {value // 60 % 24 + 24}) % 24)"
    offset = compiler.process(minutes, **kw)
    return (
        f"((((CAST(substr({col}, 12, 2) AS INTEGER) * 60 + CAST(substr({col}, 15, 2) AS INTEGER)"
        f" + {offset}) % 1440) + 1440) % 1440 / 60)"
    )


@compiles(local_hour, "postgresql")
def _local_hour_postgresql(element: local_hour, compiler: Any, **kw: Any) -> str:
    column, minutes = list(element.clauses)
    return (
        f"CAST(EXTRACT(HOUR FROM {compiler.process(column, **kw)} "
        f"+ make_interval(mins => CAST({compiler.process(minutes, **kw)} AS INTEGER))) AS INTEGER)"
    )


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
    session: Session, options: ReportOptions, now: dt.datetime | None = None
) -> dict[str, Any]:
    """Compute every figure of the report for ``options`` (blocking: run off the reactor).

    The period's calls are read in one grouped scan (by local hour, category and answering
    operator, a few thousand groups at most); the summary, the hourly, per-category and
    per-operator tables are sums of those groups. Agencies come from the transfer legs (one
    index range), repeat callers from one more grouped scan.
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
    groups = _call_groups(session, in_period, short, options)
    inbound = [g for g in groups if g["direction"] == "inbound"]
    outbound = [g for g in groups if g["direction"] == "outbound"]
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
        "operators": _operators(session, inbound),
        "agencies": _agencies(session, start, end),
        "categories": _categories(inbound),
        "hourly": _hourly(inbound),
        "callbacks": _callbacks(session, start, end),
        "repeat_callers": _repeat_callers(session, offered_filter, options.top_repeat_callers),
    }


def summary(session: Session, options: ReportOptions) -> dict[str, Any]:
    """The report's summary row alone (offered, answered, service levels...) for the
    period: what live figures such as the metrics need, by the report's own definitions."""
    start, end = options.utc_bounds()
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

    One grouped scan; window functions carry the totals on the top rows.
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


# --------------------------------------------------------------------------------------------
# Rendering

TEXT: dict[str, dict[str, str]] = {
    "id": {
        "title": "Laporan Kinerja Layanan Panggilan Darurat",
        "period": "Periode",
        "timezone": "Zona waktu",
        "generated": "Dibuat",
        "summary": "Ringkasan",
        "offered": "Panggilan masuk",
        "answered": "Dijawab operator",
        "abandoned": "Ditinggalkan penelepon",
        "abandoned_ivr": "… di menu IVR",
        "abandoned_queue": "… di antrean",
        "unanswered": "Tidak terjawab (antrean habis waktu)",
        "dropped": "Terputus karena gangguan",
        "short_abandons_excluded": "Panggilan singkat dikecualikan (< {n} dtk)",
        "requeued": "Masuk antrean lebih dari sekali",
        "asa": "Rata-rata waktu jawab (ASA)",
        "aht": "Rata-rata durasi penanganan (AHT)",
        "max_answer": "Waktu jawab terlama",
        "service_level": "Tingkat layanan (NENA-STA-020.1)",
        "within": "Dijawab ≤ {s} dtk",
        "target": "Target",
        "met": "Tercapai",
        "not_met": "Tidak tercapai",
        "outbound": "Panggilan keluar (panggilan balik)",
        "operators": "Per operator",
        "operator": "Operator",
        "talk_time": "Total waktu bicara",
        "agencies": "Per instansi",
        "agency": "Instansi",
        "transfers": "Transfer",
        "agency_answer": "Rata-rata waktu jawab instansi",
        "agency_answered": "Dijawab instansi",
        "no_answers": "Tidak dijawab/sibuk/gagal",
        "fallbacks": "Dialihkan ke cadangan",
        "categories": "Per kategori IVR",
        "category": "Kategori",
        "no_category": "(tanpa kategori)",
        "hourly": "Distribusi per jam",
        "hour": "Jam",
        "callbacks": "Panggilan balik",
        "created": "Dibuat",
        "pending": "Menunggu",
        "ringing": "Berdering",
        "done": "Selesai",
        "failed": "Gagal",
        "open_now": "Belum selesai saat ini",
        "repeat_callers": "Penelepon berulang",
        "numbers": "Nomor",
        "calls": "Panggilan",
        "number": "Nomor",
        "seconds": "dtk",
        "none": "—",
        "notes": (
            "Panggilan dihitung pada jam kedatangannya. Waktu jawab diukur dari panggilan tiba di "
            "pusat hingga tersambung ke operator (termasuk menu IVR). Tingkat layanan = panggilan "
            "yang dijawab dalam batas waktu dibagi panggilan masuk."
        ),
        "cat.police": "Polisi",
        "cat.fire": "Pemadam kebakaran",
        "cat.health": "Kesehatan/ambulans",
        "cat.disaster": "Bencana",
        "cat.public_order": "Ketertiban umum",
        "cat.transport": "Perhubungan",
        "cat.unknown": "Tidak memilih",
        "cat.operator": "Langsung ke operator",
        "cat.panic": "Tombol panik",
        "cat.callback": "Panggilan balik",
    },
    "en": {
        "title": "Emergency Call Center Performance Report",
        "period": "Period",
        "timezone": "Time zone",
        "generated": "Generated",
        "summary": "Summary",
        "offered": "Calls offered",
        "answered": "Answered by an operator",
        "abandoned": "Abandoned by the caller",
        "abandoned_ivr": "… in the IVR menu",
        "abandoned_queue": "… in the queue",
        "unanswered": "Unanswered (queue timed out)",
        "dropped": "Dropped by a fault",
        "short_abandons_excluded": "Short abandons excluded (< {n} s)",
        "requeued": "Queued more than once",
        "asa": "Average speed of answer (ASA)",
        "aht": "Average handle time (AHT)",
        "max_answer": "Longest answer time",
        "service_level": "Service level (NENA-STA-020.1)",
        "within": "Answered ≤ {s} s",
        "target": "Target",
        "met": "Met",
        "not_met": "Not met",
        "outbound": "Outbound calls (callbacks)",
        "operators": "Per operator",
        "operator": "Operator",
        "talk_time": "Total talk time",
        "agencies": "Per agency",
        "agency": "Agency",
        "transfers": "Transfers",
        "agency_answer": "Mean agency answer time",
        "agency_answered": "Answered by the agency",
        "no_answers": "No answer/busy/failed",
        "fallbacks": "Fell back",
        "categories": "Per IVR category",
        "category": "Category",
        "no_category": "(no category)",
        "hourly": "Hourly distribution",
        "hour": "Hour",
        "callbacks": "Callbacks",
        "created": "Created",
        "pending": "Pending",
        "ringing": "Ringing",
        "done": "Done",
        "failed": "Failed",
        "open_now": "Still open now",
        "repeat_callers": "Repeat callers",
        "numbers": "Numbers",
        "calls": "Calls",
        "number": "Number",
        "seconds": "s",
        "none": "—",
        "notes": (
            "Calls count in the hour they arrived. Answer time runs from arrival at the center "
            "to connection with an operator (IVR menu included). Service level = calls answered "
            "within the limit divided by calls offered."
        ),
        "cat.police": "Police",
        "cat.fire": "Fire",
        "cat.health": "Health/ambulance",
        "cat.disaster": "Disaster",
        "cat.public_order": "Public order",
        "cat.transport": "Transport",
        "cat.unknown": "No choice",
        "cat.operator": "Straight to an operator",
        "cat.panic": "Panic button",
        "cat.callback": "Callback",
    },
}


def _environment() -> jinja2.Environment:
    templates = resources.files("dispatcher.calllog") / "templates"
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates)),
        autoescape=jinja2.select_autoescape(["html", "j2"], default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env


def hourly_chart(
    hourly: list[dict[str, Any]], width: int = 720, height: int = 220
) -> dict[str, Any]:
    """Geometry of the hourly SVG bar chart (offered vs answered per hour)."""
    # Whole-call gridlines: a step of 1, 2, 5, 10, 20, 50... giving at most 5 lines.
    highest = max([h["offered"] for h in hourly] + [1])
    step = 1
    while highest / step > 5:
        for factor in (2, 2.5, 2):
            step = int(step * factor)
            if highest / step <= 5:
                break
    top = step * math.ceil(highest / step)
    left, bottom, right, upper = 40, 24, 8, 10
    plot_w, plot_h = width - left - right, height - bottom - upper
    slot = plot_w / 24
    bars = []
    for h in hourly:
        offered_h = plot_h * h["offered"] / top
        answered_h = plot_h * h["answered"] / top
        x = left + slot * h["hour"]
        bars.append(
            {
                "hour": h["hour"],
                "x": round(x + slot * 0.1, 1),
                "w": round(slot * 0.8, 1),
                "offered_y": round(upper + plot_h - offered_h, 1),
                "offered_h": round(offered_h, 1),
                "answered_y": round(upper + plot_h - answered_h, 1),
                "answered_h": round(answered_h, 1),
                "offered": h["offered"],
                "answered": h["answered"],
                "label_x": round(x + slot / 2, 1),
            }
        )
    ticks = [
        {"value": value, "y": round(upper + plot_h - plot_h * value / top, 1)}
        for value in range(0, top + 1, step)
    ]
    return {
        "width": width,
        "height": height,
        "left": left,
        "base_y": upper + plot_h,
        "right": width - right,
        "bars": bars,
        "ticks": ticks,
    }


def render_html(report: dict[str, Any]) -> str:
    """The report as a self-contained HTML page (inline CSS and SVG, no scripts)."""
    language = report.get("language", "id")
    text = TEXT.get(language, TEXT["id"])
    template = _environment().get_template("report.html.j2")
    return template.render(r=report, t=text, lang=language, chart=hourly_chart(report["hourly"]))


def render_json(report: dict[str, Any]) -> str:
    """The report as JSON (UTF-8 text, stable key order)."""
    return json.dumps(report, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


# A cell a spreadsheet would read as a formula (or as the start of one: a tab or CR is
# skipped by some, leaving the formula behind).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# Plain numbers stay readable and sortable as numbers: +62 caller numbers, -1, 12.5.
_PLAIN_NUMBER = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?")
_LINE_BREAKS = re.compile(r"[\r\n\x0b\x0c\x85\u2028\u2029]")


def csv_safe(value: object) -> str:
    """A CSV cell that no spreadsheet runs as a formula.

    A value starting with ``=``, ``+``, ``-``, ``@``, tab or CR gets a leading single quote
    (shown as text, not evaluated) unless it is a plain number such as ``+6281234567`` or
    ``-3``, which a spreadsheet reads as a number and never as a formula. Line breaks inside
    a value become spaces.
    """
    text = "" if value is None else str(value)
    if text.startswith(_FORMULA_START) and not _PLAIN_NUMBER.fullmatch(text):
        text = "'" + text
    # The writer quotes cells holding its own line ending ("\n") only: a lone CR would
    # end the row in a spreadsheet and start a forged one.
    return _LINE_BREAKS.sub(" ", text)


class _SafeWriter:
    """``csv.writer`` whose every cell goes through :func:`csv_safe`."""

    def __init__(self, out: io.StringIO) -> None:
        self._writer = csv.writer(out, lineterminator="\n")

    def writerow(self, row: list[Any]) -> None:
        self._writer.writerow([csv_safe(cell) for cell in row])


def render_csv(report: dict[str, Any]) -> str:
    """The report as CSV in long form: ``section,item,metric,value`` (one figure per line).

    Caller numbers come from callers: every cell is made safe to open in a spreadsheet
    (:func:`csv_safe`).
    """
    out = io.StringIO()
    writer = _SafeWriter(out)
    writer.writerow(["section", "item", "metric", "value"])
    writer.writerow(["period", "", "from", report["period"]["from"]])
    writer.writerow(["period", "", "to", report["period"]["to"]])
    writer.writerow(["period", "", "timezone", report["period"]["timezone"]])
    for key, value in report["summary"].items():
        if key == "service_levels":
            for sl in value:
                item = f"{sl['seconds']}s"
                for metric in ("answered_within", "percent", "target_percent", "met"):
                    writer.writerow(["service_level", item, metric, _cell(sl[metric])])
        else:
            writer.writerow(["summary", "", key, _cell(value)])
    for section, key in (("operators", "code"), ("agencies", "code"), ("categories", "category")):
        for row in report[section]:
            for metric, value in row.items():
                if metric != key:
                    writer.writerow([section, row[key], metric, _cell(value)])
    for row in report["hourly"]:
        for metric, value in row.items():
            if metric != "hour":
                writer.writerow(["hourly", f"{row['hour']:02d}", metric, _cell(value)])
    for metric, value in report["callbacks"].items():
        writer.writerow(["callbacks", "", metric, _cell(value)])
    writer.writerow(["repeat_callers", "", "numbers", report["repeat_callers"]["numbers"]])
    writer.writerow(["repeat_callers", "", "calls", report["repeat_callers"]["calls"]])
    for row in report["repeat_callers"]["top"]:
        writer.writerow(["repeat_callers", row["number"], "calls", row["calls"]])
    return out.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


RENDERERS = {"html": render_html, "csv": render_csv, "json": render_json}


def render(report: dict[str, Any], fmt: str) -> str:
    """Render the report in ``fmt`` (html, csv or json)."""
    try:
        renderer = RENDERERS[fmt]
    except KeyError:
        raise ValueError(f"unknown report format {fmt!r} (html, csv, json)") from None
    return renderer(report)
