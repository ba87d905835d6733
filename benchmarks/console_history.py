"""The call card's history read: how long the caller's history and flag take to read from a
call log of realistic size (SQLite, the default database).

Fills a fresh call log with ``--calls`` calls over 30 days from ``--numbers`` numbers (a few
numbers call very often: the repeat callers the flag is for), marks some calls as pranks,
then reads ``caller_history`` for ``--reads`` random numbers — the read every ringing card
makes — and the supervisors' ``flagged_numbers`` list a few times. Prints p50/p95/max.

    .venv/bin/python benchmarks/console_history.py
    .venv/bin/python benchmarks/console_history.py --calls 500000 --numbers 50000
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sqlalchemy import insert  # noqa: E402

from dispatcher.calllog import db  # noqa: E402
from dispatcher.calllog.models import Call, CallDisposition  # noqa: E402
from dispatcher.console.history import caller_history, flagged_numbers  # noqa: E402
from dispatcher.console.settings import ConsoleSettings  # noqa: E402

NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)


def fill(sessions, calls: int, numbers: int, rng: random.Random) -> list[str]:  # noqa: ANN001
    """Insert the calls (a heavy tail: 1 % of numbers make a fifth of the calls)."""
    pool = [f"0812{n:08d}" for n in range(numbers)]
    heavy = pool[: max(1, numbers // 100)]
    rows, marks = [], []
    for i in range(calls):
        number = rng.choice(heavy) if rng.random() < 0.2 else rng.choice(pool)
        at = NOW - dt.timedelta(seconds=rng.uniform(0, 30 * 86400))
        rows.append({"linkedid": f"{i}.1", "caller_number": number, "dialed": "112",
                     "started_at": at.replace(tzinfo=None), "outcome": "answered",
                     "direction": "inbound", "caller_name": "", "queue_passes": 1,
                     "source": "ami", "test": False})
        if rng.random() < 0.01:
            marks.append({"linkedid": f"{i}.1", "caller_number": number,
                          "disposition": "prank", "author": "201",
                          "at": at.replace(tzinfo=None)})
    with db.transaction(sessions) as session:
        for start in range(0, len(rows), 10_000):
            session.execute(insert(Call), rows[start:start + 10_000])
        if marks:
            session.execute(insert(CallDisposition), marks)
    return pool


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--numbers", type=int, default=20_000)
    parser.add_argument("--reads", type=int, default=500)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    settings = ConsoleSettings()
    with tempfile.TemporaryDirectory(prefix="siaga-history-") as tmp:
        engine = db.make_engine(f"sqlite:///{tmp}/calllog.db")
        db.upgrade(engine)
        sessions = db.make_sessionmaker(engine)
        started = time.perf_counter()
        pool = fill(sessions, args.calls, args.numbers, rng)
        print(f"filled {args.calls} calls from {args.numbers} numbers in "
              f"{time.perf_counter() - started:.1f} s")
        heavy = pool[: max(1, args.numbers // 100)]
        timings, flagged = [], 0
        for _ in range(args.reads):
            number = rng.choice(heavy) if rng.random() < 0.2 else rng.choice(pool)
            t0 = time.perf_counter()
            with db.transaction(sessions) as session:
                doc = caller_history(session, number, NOW, settings, "current")
            timings.append((time.perf_counter() - t0) * 1000)
            flagged += bool(doc["flag"]["flagged"])
        print(f"caller_history x{args.reads}: p50 {percentile(timings, 50):.2f} ms, "
              f"p95 {percentile(timings, 95):.2f} ms, max {max(timings):.2f} ms, "
              f"mean {statistics.mean(timings):.2f} ms ({flagged} flagged)")
        lists = []
        for _ in range(3):
            t0 = time.perf_counter()
            with db.transaction(sessions) as session:
                listed = flagged_numbers(session, NOW, settings)
            lists.append((time.perf_counter() - t0) * 1000)
        print(f"flagged_numbers x3: {', '.join(f'{t:.0f}' for t in lists)} ms "
              f"({len(listed)} numbers listed)")
        engine.dispose()


if __name__ == "__main__":
    main()
