"""Panic apps following their alerts: ``GET /api/v1/alerts/{id}`` polled by many phones.

Each phone with a live alert asks for its state every 3 s (``POLL_MS`` in the app). This
starts the API server (``python -m dispatcher.api.standalone``, SQLite) with ``--phones``
enrolled devices that each raised one alert, then has every phone poll on schedule for
``--seconds`` seconds over keep-alive connections, and prints the latency of the answers
(measured from when each poll was due, so a server falling behind shows), the rate served
and the server's CPU per poll.

    .venv/bin/python benchmarks/panic_status.py                   # 1,000 phones, 30 s
    .venv/bin/python benchmarks/panic_status.py --phones 3000 --seconds 20
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.alerts import (  # noqa: E402 -- after the path is set
    cpu_seconds,
    enrol,
    pct,
    read_response,
    start_server,
)

POLL_S = 3.0


def raise_alerts(db_url: str, tokens: dict[str, str]) -> None:
    """One stored alert per phone, its id the device's id (straight into the database)."""
    from dispatcher.alerts import storage
    from dispatcher.alerts.intake import AlertRequest, Location
    from dispatcher.calllog import db

    engine = db.make_engine(db_url)
    sessions = db.make_sessionmaker(engine)
    now = dt.datetime.now(dt.UTC)
    with db.transaction(sessions) as session:
        batch = []
        for device_id in tokens:
            seen = storage.device_credentials(session, device_id)
            assert seen is not None
            batch.append((AlertRequest(f"alert-{device_id}", device_id, "panic",
                                       Location(1.44, 125.18, 10.0, None), None, None), seen))
        storage.commit_alerts(session, batch, now)
    engine.dispose()


async def phone(port: int, device_id: str, token: str, start: float, end: float,
                offset: float, latencies: list[float], errors: list[int]) -> None:
    """One phone: a keep-alive connection, a poll every POLL_S from ``start + offset``."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = (f"GET /api/v1/alerts/alert-{device_id} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               f"Authorization: Bearer {token}\r\nX-Siaga-Device: {device_id}\r\n\r\n"
               ).encode()
    due = start + offset
    try:
        while due < end:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            writer.write(request)
            status, body = await read_response(reader)
            latencies.append(time.monotonic() - due)
            if status != 200 or json.loads(body)["state"] != "new":
                errors.append(status)
            due += POLL_S
    finally:
        writer.close()


async def run(port: int, tokens: dict[str, str], seconds: float
              ) -> tuple[list[float], list[int], float]:
    """Every phone polls for ``seconds``; latencies (s), errors and the wall time."""
    latencies: list[float] = []
    errors: list[int] = []
    start = time.monotonic() + 1.0
    end = start + seconds
    n = len(tokens)
    await asyncio.gather(*(phone(port, device_id, token, start, end, POLL_S * i / n,
                                 latencies, errors)
                           for i, (device_id, token) in enumerate(tokens.items())))
    return latencies, errors, time.monotonic() - start


def main() -> int:
    """Run the load and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phones", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="siaga-panic-bench-") as tmp:
        workdir = Path(tmp)
        db_url = f"sqlite:///{workdir / 'siaga.db'}"
        tokens = enrol(db_url, args.phones)
        raise_alerts(db_url, tokens)
        proc, port = start_server(workdir, db_url, 1.0, args.phones)
        try:
            cpu_before = cpu_seconds(proc.pid)
            latencies, errors, wall = asyncio.run(run(port, tokens, args.seconds))
            cpu = cpu_seconds(proc.pid) - cpu_before
        finally:
            proc.terminate()
            proc.wait(15)
    polls = len(latencies)
    print(f"phones {args.phones}, one poll each every {POLL_S:g} s, {wall:.1f} s")
    print(f"polls answered {polls} ({polls / wall:.0f}/s), wrong or refused {len(errors)}")
    if latencies:
        print(f"latency from due: p50 {pct(latencies, 50):.1f} ms, p99 {pct(latencies, 99):.1f}"
              f" ms, max {max(latencies) * 1000:.1f} ms")
    print(f"server CPU {cpu:.1f} s ({cpu / max(polls, 1) * 1e6:.0f} µs a poll)")
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main())
