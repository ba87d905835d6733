"""Alerts under load: POST → committed → operator notification, on loopback.

Starts the API server (``python -m dispatcher.api.standalone``, no Asterisk: the callbacks stay
owed in the database) on a fresh SQLite database with ``--devices`` enrolled devices, then
sends ``--rate`` alerts per second for ``--seconds`` seconds, spread over the devices, on
keep-alive connections. An operator's console is played by one long-polling client of
``/api/v1/incidents/feed``. Prints, for every alert:

* POST → 201: the alert, its incident and the callback owed are committed (the 201 is sent
  only then);
* POST → notification: the operators' feed delivered the new incident;
* lost: alerts without a 2xx, plus 2xx alerts never notified within ``--drain`` seconds.

Times are measured from the moment each POST was due (the schedule), so a client or server
falling behind shows as latency instead of hiding (no coordinated omission).

    .venv/bin/python benchmarks/alerts.py                  # 1,000/s for 60 s (the goal)
    .venv/bin/python benchmarks/alerts.py --rate 200 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

GOAL_P99_MS = 50.0


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def enrol(db_url: str, count: int) -> dict[str, str]:
    """Enrol ``count`` devices directly in the database; device id → token."""
    from dispatcher.calllog import db, store

    engine = db.make_engine(db_url)
    db.upgrade(engine)
    sessions = db.make_sessionmaker(engine)
    tokens = {}
    now = dt.datetime.now(dt.UTC)
    with db.transaction(sessions) as session:
        for i in range(count):
            device_id = f"bench-{i:05d}"
            tokens[device_id] = store.new_token()
            store.add_device(session, device_id, token=tokens[device_id],
                             callback_number="081234567890", now=now)
    engine.dispose()
    return tokens


def start_server(workdir: Path, db_url: str, rate: float, devices: int
                 ) -> tuple[subprocess.Popen[bytes], int]:
    """The API server in a child process; returns it and its port."""
    import yaml

    doc = yaml.safe_load((REPO / "config" / "siaga.example.yaml").read_text())
    doc["sip"] = {"bind": "127.0.0.1", "port": free_port()}
    doc["ami"] = {"bind": "127.0.0.1", "port": free_port()}
    doc["http"] = {"bind": "127.0.0.1", "port": free_port()}
    config = workdir / "siaga.yaml"
    config.write_text(yaml.safe_dump(doc))
    per_device = rate / devices
    log = (workdir / "server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "dispatcher.api.standalone", "--config", str(config),
         "--state-dir", str(workdir / "state"), "--db", db_url, "--port", "0",
         # Each device sends rate/devices per second; the limit sits well above it.
         "--rate-burst", "50", "--rate-per-second", str(max(1.0, per_device * 4))],
        stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = (workdir / "server.log").read_text(errors="replace")
        match = re.search(r"LISTENING (\d+)", text)
        if match:
            return proc, int(match.group(1))
        if proc.poll() is not None:
            raise SystemExit(f"server exited:\n{text}")
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("server did not start")


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One HTTP/1.1 response with a Content-Length."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        if line.lower().startswith("content-length:"):
            length = int(line.split(":", 1)[1])
    body = await reader.readexactly(length) if length else b""
    return status, body


class Load:
    """The alert senders and the feed watcher."""

    def __init__(self, port: int, tokens: dict[str, str], rate: float, seconds: float,
                 connections: int) -> None:
        self.port = port
        self.tokens = list(tokens.items())
        self.rate = rate
        self.total = int(rate * seconds)
        self.connections = connections
        self.due: dict[int, float] = {}  # alert number → when its POST was due
        self.committed: dict[int, float] = {}  # alert number → 201 seen
        self.incident_of: dict[int, int] = {}  # incident id → alert number
        self.notified: dict[int, float] = {}  # alert number → feed delivered it
        self.failed: dict[int, str] = {}
        self.sent = 0
        self.done = asyncio.Event()

    def request(self, n: int) -> bytes:
        device_id, token = self.tokens[n % len(self.tokens)]
        body = json.dumps({
            "alert_id": str(uuid.uuid4()), "device_id": device_id, "type": "panic",
            "location": {"lat": 1.4756, "lon": 125.1736, "accuracy_m": 15},
            "callback_number": "081234567890"}).encode()
        return (f"POST /api/v1/alerts HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Content-Type: application/json\r\nAuthorization: Bearer {token}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode() + body

    async def sender(self, queue: asyncio.Queue[int]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        while True:
            n = await queue.get()
            if n < 0:
                break
            try:
                writer.write(self.request(n))
                status, body = await read_response(reader)
            except (OSError, asyncio.IncompleteReadError) as exc:
                self.failed[n] = f"connection: {exc}"
                writer.close()
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                continue
            now = time.monotonic()
            if status in (200, 201):
                self.committed[n] = now
                self.incident_of[json.loads(body)["incident_id"]] = n
            else:
                self.failed[n] = f"{status} {body[:100]!r}"
        writer.close()

    async def watcher(self) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        after = 0
        pending: dict[int, float] = {}  # incident seen in the feed before its 201 arrived
        while not self.done.is_set():
            writer.write(f"GET /api/v1/incidents/feed?after={after}&wait=1 HTTP/1.1\r\n"
                         "Host: 127.0.0.1\r\n\r\n".encode())
            status, body = await read_response(reader)
            now = time.monotonic()
            doc = json.loads(body)
            for event in doc["events"]:
                if event["event"] == "alert_received":
                    pending[event["incident_id"]] = now
            after = doc["last"]
            for incident_id in list(pending):
                n = self.incident_of.get(incident_id)
                if n is not None:
                    self.notified[n] = pending.pop(incident_id)
        writer.close()

    async def run(self, drain: float) -> None:
        queue: asyncio.Queue[int] = asyncio.Queue()
        senders = [asyncio.create_task(self.sender(queue)) for _ in range(self.connections)]
        watcher = asyncio.create_task(self.watcher())
        start = time.monotonic() + 0.2
        for n in range(self.total):
            due = start + n / self.rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self.due[n] = due
            queue.put_nowait(n)
            self.sent += 1
        for _ in senders:
            queue.put_nowait(-1)
        await asyncio.gather(*senders)
        deadline = time.monotonic() + drain
        while len(self.notified) < len(self.committed) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        self.done.set()
        await watcher


def pct(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) in milliseconds."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))] * 1000


def main() -> int:
    """Run the load and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="alerts per second")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to send")
    parser.add_argument("--devices", type=int, default=500, help="enrolled devices used")
    parser.add_argument("--connections", type=int, default=64, help="keep-alive connections")
    parser.add_argument("--drain", type=float, default=10.0,
                        help="seconds to wait for late notifications at the end")
    args = parser.parse_args()
    if args.rate <= 0 or args.seconds <= 0 or args.rate * args.seconds > 200_000:
        parser.error("rate and seconds must be positive, at most 200,000 alerts in all")

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="siaga-bench-") as tmp:
        workdir = Path(tmp)
        db_url = f"sqlite:///{workdir / 'siaga.db'}"
        tokens = enrol(db_url, args.devices)
        proc, port = start_server(workdir, db_url, args.rate, args.devices)
        try:
            load = Load(port, tokens, args.rate, args.seconds, args.connections)
            server_cpu0, client_cpu0 = cpu_seconds(proc.pid), time.process_time()
            began = time.monotonic()
            asyncio.run(load.run(args.drain))
            elapsed = time.monotonic() - began
            server_cpu = cpu_seconds(proc.pid) - server_cpu0
            client_cpu = time.process_time() - client_cpu0
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        from sqlalchemy import create_engine, text

        with create_engine(db_url).connect() as con:
            stored = con.execute(text("select count(*) from alerts")).scalar_one()

    commit_lat = [load.committed[n] - load.due[n] for n in load.committed]
    notify_lat = [load.notified[n] - load.due[n] for n in load.notified]
    lost = load.sent - len(load.notified)
    cpu = os.cpu_count()
    print(f"alerts: {load.sent} sent at {args.rate:g}/s for {args.seconds:g} s "
          f"({load.sent / elapsed:.0f}/s achieved over {elapsed:.1f} s incl. drain), "
          f"{args.devices} devices, {args.connections} connections, {cpu} CPUs shared")
    print(f"  committed (2xx): {len(load.committed)}   refused/failed: {len(load.failed)}   "
          f"rows in the database: {stored}")
    print(f"  POST -> committed (201):     p50 {pct(commit_lat, 50):7.1f} ms   "
          f"p99 {pct(commit_lat, 99):7.1f} ms   max {pct(commit_lat, 100):7.1f} ms")
    print(f"  POST -> operator notified:   p50 {pct(notify_lat, 50):7.1f} ms   "
          f"p99 {pct(notify_lat, 99):7.1f} ms   max {pct(notify_lat, 100):7.1f} ms")
    print(f"  lost (no 2xx, or never notified): {lost}")
    print(f"  CPU: server {server_cpu:.1f} s ({server_cpu / max(1, load.sent) * 1000:.2f} ms "
          f"per alert, all threads), this load generator {client_cpu:.1f} s, over "
          f"{elapsed:.1f} s; load average before the run {load_before:.2f}")
    if load.failed:
        sample = list(load.failed.items())[:3]
        print(f"  first failures: {sample}")
    p99 = pct(notify_lat, 99)
    verdict = "met" if p99 <= GOAL_P99_MS and lost == 0 else "NOT met"
    print(f"  goal p99 <= {GOAL_P99_MS:g} ms and 0 lost: {verdict}"
          f" (median of commit latencies {statistics.median(commit_lat) * 1000:.1f} ms)"
          if commit_lat else "  nothing committed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
