"""Benchmark: a /metrics scrape and a backup/restore, on a call log of a given size (SQLite).

Fills a call log with ``--calls`` journeys over one month (the report benchmark's generator),
then times:

* a scrape as the server does it: today's summary read from the call log (the reports' own
  SQL, over the busiest day's calls), then every metric collected from a live model with
  ``--queued`` callers waiting and rendered by prometheus_client;
* ``siaga backup``'s work (SQLite online backup, ``--recordings`` recording files of 480 kB,
  i.e. 30 s of 8 kHz 16-bit audio, checksummed) and a restore of it.

    .venv/bin/python benchmarks/ops.py                  # 200,000 calls, 100 recordings
    .venv/bin/python benchmarks/ops.py --calls 1000000  # a big city's month

Measured on the 2-core development machine (shared): 200,000 calls (211 MB, 6,151 calls on
the scraped day): database read median 185 ms, collect+render 0.45 ms; backup of 259 MB in
1.6 s, restore 1.4 s. 1,000,000 calls (1,058 MB, 31,367 calls that day): read median
163 ms (worst 561 ms), collect+render 0.34 ms; backup of 1,154 MB (with 200 recordings) in
4.5 s, restore 6.0 s.

Alerts are not generated: a scrape reads alert figures from in-memory counters, never from
the database, so stored alerts do not change its cost.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402
from report import generate  # noqa: E402

from dialplans.contract import QUEUE_NAME  # noqa: E402
from dispatcher.backup.archive import backup, restore  # noqa: E402
from dispatcher.calllog import db  # noqa: E402
from dispatcher.config.loader import load_center  # noqa: E402
from dispatcher.metrics.collector import CenterCollector, Sources, today_summary  # noqa: E402
from pbx.ami.model import LiveModel  # noqa: E402

EXAMPLE = Path(__file__).resolve().parents[1] / "config" / "siaga.example.yaml"


def live_model(queued: int, now: float) -> LiveModel:
    """A model with ``queued`` callers waiting, each on a channel of its own."""
    model = LiveModel(lambda: now)
    for i in range(queued):
        uid = f"{now:.0f}.{i}"
        model.handle({"Event": "Newchannel", "Uniqueid": uid, "Linkedid": uid,
                      "Channel": f"PJSIP/anon-{i}", "ChannelStateDesc": "Up"})
        model.handle({"Event": "QueueCallerJoin", "Queue": QUEUE_NAME, "Uniqueid": uid,
                      "Channel": f"PJSIP/anon-{i}", "Position": str(i + 1)})
    return model


def time_scrapes(path: str, state: Path, day: dt.date, queued: int, runs: int) -> None:
    """Median and worst scrape, split into the database read and the rest."""
    center = load_center(EXAMPLE, state_dir=state)
    now = dt.datetime.combine(day, dt.time(20), ZoneInfo("Asia/Jakarta")).timestamp()
    model = live_model(queued, now)
    engine = db.make_engine(f"sqlite:///{path}")
    sessions = db.make_sessionmaker(engine)
    reads, renders = [], []
    body = b""
    today = None
    for _ in range(runs):
        t0 = time.perf_counter()
        with db.transaction(sessions) as session:
            today = today_summary(session, now)
        t1 = time.perf_counter()
        registry = CollectorRegistry(auto_describe=False)
        registry.register(CenterCollector(Sources(model, center, lambda: now), today))
        body = generate_latest(registry)
        renders.append(time.perf_counter() - t1)
        reads.append(t1 - t0)
    engine.dispose()
    assert today is not None
    print(f"scrape on {day} ({today['offered']:,} calls offered that day, {queued} waiting): "
          f"database read median {statistics.median(reads) * 1000:.1f} ms (worst "
          f"{max(reads) * 1000:.1f} ms), collect+render median "
          f"{statistics.median(renders) * 1000:.2f} ms; {len(body):,} bytes")


def time_backup(path: str, state: Path, recordings: int) -> None:
    """One backup and one restore of the file at ``path`` and the recordings."""
    folder = state / "recordings"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(recordings):
        (folder / f"{i}.wav").write_bytes(os.urandom(480_000))
    work = Path(tempfile.mkdtemp(prefix="siaga-bench-backup-"))
    try:
        db_mb = os.path.getsize(path) / 1e6
        t0 = time.perf_counter()
        manifest = backup(f"sqlite:///{path}", state, work / "backup")
        took = time.perf_counter() - t0
        print(f"backup: database {db_mb:.1f} MB + {recordings} recordings "
              f"({recordings * 0.48:.1f} MB) = {manifest.size / 1e6:.1f} MB in {took:.2f} s "
              f"({manifest.size / 1e6 / took:.0f} MB/s)")
        t0 = time.perf_counter()
        restore(work / "backup", work / "restored", f"sqlite:///{work / 'restored-db.db'}")
        print(f"restore (checksums, database, recordings): {time.perf_counter() - t0:.2f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    """Generate, time, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--month", default="2026-10", help="the generated month, YYYY-MM")
    parser.add_argument("--queued", type=int, default=50, help="callers waiting at the scrape")
    parser.add_argument("--recordings", type=int, default=100)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    month = dt.date.fromisoformat(args.month + "-01")
    work = Path(tempfile.mkdtemp(prefix="siaga-bench-ops-"))
    try:
        path = str(work / "siaga.db")
        t0 = time.perf_counter()
        generate(path, args.calls, 1, month)
        print(f"generated {args.calls:,} calls in {time.perf_counter() - t0:.1f} s")
        time_scrapes(path, work / "state", month.replace(day=15), args.queued, args.runs)
        time_backup(path, work / "state", args.recordings)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
