"""Benchmark: the supervisors' monthly report over a million calls on SQLite.

Generates ``--calls`` journeys (default 1,000,000) spread over ``--months`` months (default 1:
the whole million in the reported month, the hardest case) into a SQLite file built by the
real migrations, with the legs the reports read (menu, queue, operator talk, transfer attempts
with fallbacks, agency talk) and callbacks. Then times ``report_figures.build_report`` for the last
month, through SQLAlchemy as ``siaga report`` runs it, and prints the figure (goal: <= 1 s).

    .venv/bin/python benchmarks/report.py                      # 1,000,000 calls, one month
    .venv/bin/python benchmarks/report.py --months 12          # a year of history
    .venv/bin/python benchmarks/report.py --db /tmp/r.db --keep  # reuse the file next time

Bulk loading goes around the ORM (plain sqlite3 ``executemany`` with the indexes dropped and
rebuilt after): it measures the report, not the writer.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dispatcher.calllog import db, report_figures, report_period  # noqa: E402

FMT = "%Y-%m-%d %H:%M:%S.%f"  # how SQLAlchemy stores DateTime in SQLite
CATEGORIES = ["police", "fire", "health", "disaster", "public_order", "transport", None]
CATEGORY_WEIGHTS = [30, 8, 30, 5, 10, 7, 10]
AGENCIES = ["police", "fire", "health", "disaster", "public_order", "transport"]
# Calls per hour of day (local): quiet at night, busy late morning and evening.
HOUR_WEIGHTS = [2, 1, 1, 1, 1, 2, 4, 6, 8, 9, 10, 10, 9, 8, 8, 8, 9, 10, 11, 10, 8, 6, 4, 3]
OPERATORS = 40
TZ_OFFSET = dt.timedelta(hours=7)


def ts(value: dt.datetime) -> str:
    """A naive-UTC timestamp in SQLAlchemy's SQLite text format."""
    return value.strftime(FMT)


def generate(path: str, calls: int, months: int, end_month: dt.date, seed: int = 7) -> None:
    """Fill a fresh database at ``path`` with ``calls`` journeys over ``months`` months."""
    rng = random.Random(seed)
    url = f"sqlite:///{path}"
    db.upgrade(url)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    indexes = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type='index' AND sql IS NOT NULL"
    ).fetchall()
    for name, _sql in indexes:
        conn.execute(f'DROP INDEX "{name}"')
    conn.executemany(
        "INSERT INTO operators (id, code, name, active) VALUES (?, ?, ?, 1)",
        [(i, f"op{200 + i}", f"Operator {i}") for i in range(1, OPERATORS + 1)],
    )
    conn.executemany(
        "INSERT INTO agencies (id, code, name, active) VALUES (?, ?, ?, 1)",
        [(i, code, code) for i, code in enumerate(AGENCIES, 1)],
    )
    # Months ending with end_month, local midnight boundaries expressed in UTC.
    first = end_month
    for _ in range(months - 1):
        first = (first.replace(day=1) - dt.timedelta(days=1)).replace(day=1)
    start_local = dt.datetime.combine(first, dt.time())
    next_month = (end_month.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    span_days = (next_month - first).days
    numbers = [f"08{rng.randrange(10**9, 10**10)}" for _ in range(max(1, calls * 6 // 10))]

    call_rows, leg_rows, callback_rows = [], [], []
    leg_id = 0
    t_start = time.perf_counter()
    for call_id in range(1, calls + 1):
        day = rng.randrange(span_days)
        hour = rng.choices(range(24), HOUR_WEIGHTS)[0]
        local = start_local + dt.timedelta(days=day, hours=hour, seconds=rng.random() * 3600)
        started = local - TZ_OFFSET
        category = rng.choices(CATEGORIES, CATEGORY_WEIGHTS)[0]
        menu = rng.uniform(3, 20)
        roll = rng.random()
        answered_at = ended = queued_at = None
        answer_s = queue_s = talk_s = None
        answered_by = None
        passes = 0
        legs: list[tuple] = []
        if roll < 0.06:  # abandoned in the menu, half of them short
            outcome = "abandoned_ivr"
            duration = rng.uniform(0.5, 4.9) if rng.random() < 0.5 else rng.uniform(5, menu)
            legs.append(("ivr", 0.0, duration, None, None, None, None, False))
        else:
            queued_at = started + dt.timedelta(seconds=menu)
            passes = 2 if rng.random() < 0.03 else 1
            wait = rng.expovariate(1 / 8.0)
            legs.append(("ivr", 0.0, menu, None, None, None, None, False))
            if roll < 0.16:
                outcome = "abandoned_queue"
                duration = menu + wait
                legs.append(("queue_wait", menu, duration, "abandoned", None, None, None, False))
            elif roll < 0.19:
                outcome = "unanswered"
                duration = menu + 60.0
                legs.append(("queue_wait", menu, duration, "exited", None, None, None, False))
            elif roll < 0.20:
                outcome = "dropped"
                duration = menu + wait
                legs.append(("queue_wait", menu, duration, "exited", None, None, None, False))
            else:
                outcome = "answered"
                answer_s = menu + wait
                talk_s = 30 + rng.expovariate(1 / 90.0)
                answered_by = rng.randrange(1, OPERATORS + 1)
                answered_at = started + dt.timedelta(seconds=answer_s)
                duration = answer_s + talk_s
                legs.append(("queue_wait", menu, answer_s, "answered", None, None, None, False))
                legs.append(
                    ("operator_talk", answer_s, duration, None, answered_by, None, None, False)
                )
                if rng.random() < 0.25:  # handed to an agency
                    agency = rng.randrange(1, len(AGENCIES) + 1)
                    at = answer_s + rng.uniform(20, 60)
                    if rng.random() < 0.15:  # no answer, then the fallback
                        legs.append(
                            ("transfer_attempt", at, at + 30, "no_answer", None, agency, None, True)
                        )
                        at += 31
                    ring = rng.uniform(2, 25)
                    legs.append(
                        ("transfer_attempt", at, at + ring, "answered", None, agency, ring, False)
                    )
                    legs.append(
                        ("agency_talk", at + ring, duration, None, None, agency, None, False)
                    )
            queue_s = sum(leg[2] - leg[1] for leg in legs if leg[0] == "queue_wait")
        ended = started + dt.timedelta(seconds=duration)
        started_text = ts(started)
        call_rows.append(
            (
                call_id,
                f"{1700000000 + call_id}.{call_id}",
                "inbound",
                rng.choice(numbers),
                "",
                "112",
                ts(started),
                ts(queued_at) if queued_at else None,
                ts(answered_at) if answered_at else None,
                ts(ended),
                category,
                "id",
                outcome,
                16,
                answered_by,
                passes,
                answer_s,
                queue_s,
                talk_s,
                duration,
                "ami",
            )
        )
        for seq, (kind, a, b, result, op, agency, ring, fallback) in enumerate(legs):
            leg_id += 1
            leg_rows.append(
                (
                    leg_id,
                    call_id,
                    seq,
                    kind,
                    "",
                    "",
                    op,
                    agency,
                    None,
                    started_text,
                    ts(started + dt.timedelta(seconds=a)),
                    ts(started + dt.timedelta(seconds=b)),
                    result,
                    ring,
                    b - a,
                    fallback,
                )
            )
        if outcome.startswith("abandoned") and rng.random() < 0.3:
            state = rng.choice(["done", "done", "failed", "pending"])
            callback_rows.append(
                (
                    call_rows[-1][3],
                    state,
                    "abandoned",
                    call_id,
                    0,
                    ts(ended),
                    ts(ended),
                    ts(ended) if state != "pending" else None,
                )
            )
        if len(call_rows) >= 50_000:
            _flush(conn, call_rows, leg_rows, callback_rows)
    _flush(conn, call_rows, leg_rows, callback_rows)
    generated = time.perf_counter() - t_start
    t_index = time.perf_counter()
    for _name, sql in indexes:
        conn.execute(sql)
    conn.execute("ANALYZE")
    conn.commit()
    conn.close()
    print(
        f"generated {calls:,} calls and {leg_id:,} legs in {generated:.1f} s, "
        f"indexed in {time.perf_counter() - t_index:.1f} s "
        f"({os.path.getsize(path) / 1e6:.0f} MB)"
    )


def _flush(conn: sqlite3.Connection, calls: list, legs: list, callbacks: list) -> None:
    conn.executemany(
        "INSERT INTO calls (id, linkedid, direction, caller_number, caller_name, dialed, "
        "started_at, queued_at, answered_at, ended_at, category, language, outcome, "
        "hangup_cause, answered_by_id, queue_passes, answer_seconds, queue_seconds, "
        "talk_seconds, duration_seconds, source) "
        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        calls,
    )
    conn.executemany(
        "INSERT INTO legs (id, call_id, seq, kind, channel, uniqueid, operator_id, agency_id, "
        "queue, call_started_at, started_at, ended_at, result, ring_seconds, duration_seconds, "
        "fallback) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        legs,
    )
    conn.executemany(
        "INSERT INTO callbacks (number, state, reason, origin_call_id, attempts, created_at, "
        "updated_at, done_at) VALUES (?,?,?,?,?,?,?,?)",
        callbacks,
    )
    calls.clear()
    legs.clear()
    callbacks.clear()


def time_report(path: str, month: dt.date, runs: int) -> list[float]:
    """Seconds per run of the monthly report (fresh connection pool, warm OS cache)."""
    last_day = (month.replace(day=28) + dt.timedelta(days=4)).replace(day=1) - dt.timedelta(1)
    options = report_period.ReportOptions(month.replace(day=1), last_day)
    engine = db.make_engine(f"sqlite:///{path}")
    sessions = db.make_sessionmaker(engine)
    times = []
    data = None
    for _ in range(runs):
        with sessions() as session:
            t0 = time.perf_counter()
            data = report_figures.build_report(session, options)
            times.append(time.perf_counter() - t0)
    engine.dispose()
    assert data is not None
    s = data["summary"]
    print(
        f"report {options.start}..{options.end}: offered {s['offered']:,}, answered "
        f"{s['answered']:,}, abandoned {s['abandoned']:,}, ASA {s['asa_seconds']} s, "
        f"SL15 {s['service_levels'][0]['percent']} %, operators {len(data['operators'])}, "
        f"agencies {len(data['agencies'])}, repeat numbers {data['repeat_callers']['numbers']:,}"
    )
    return times


def main() -> int:
    """Generate, time, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--months", type=int, default=1)
    parser.add_argument("--month", default="2026-10", help="the reported (last) month, YYYY-MM")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--db", help="SQLite file (default: a temporary file)")
    parser.add_argument("--keep", action="store_true", help="reuse/keep the --db file")
    args = parser.parse_args()
    month = dt.date.fromisoformat(args.month + "-01")
    path = args.db or os.path.join(tempfile.mkdtemp(prefix="siaga-bench-"), "report.db")
    try:
        if not (args.keep and os.path.exists(path)):
            if os.path.exists(path):
                os.remove(path)
            generate(path, args.calls, args.months, month)
        times = time_report(path, month, args.runs)
    finally:
        if not args.keep and os.path.exists(path):
            os.remove(path)
    print(
        f"monthly report: median {statistics.median(times):.3f} s, best {min(times):.3f} s, "
        f"worst {max(times):.3f} s over {len(times)} runs (goal <= 1 s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
