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

``--db postgresql`` runs the same load on a private PostgreSQL cluster started for the run
(Debian's PostgreSQL, fsync and synchronous commit on: a 201 means on disk, as on SQLite).
``--baseline`` first runs a round with one alert per transaction (``--commit-batch 1``: no
group commit), then the round with the settings given, and prints the ratio of the two.

    .venv/bin/python benchmarks/alerts.py                  # 1,000/s for 60 s (the goal)
    .venv/bin/python benchmarks/alerts.py --db postgresql --baseline
    .venv/bin/python benchmarks/alerts.py --rate 200 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import glob
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
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


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a process and its children (the intake processes)."""
    total = cpu_seconds(pid)
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            with contextlib.suppress(OSError):
                total += cpu_seconds(int(child))
    return total


def enrol(db_url: str, count: int) -> dict[str, str]:
    """Enrol ``count`` devices directly in the database; device id → token."""
    from dispatcher.calllog import db, store_incidents

    engine = db.make_engine(db_url)
    db.upgrade(engine)
    sessions = db.make_sessionmaker(engine)
    tokens = {}
    now = dt.datetime.now(dt.UTC)
    with db.transaction(sessions) as session:
        for i in range(count):
            device_id = f"bench-{i:05d}"
            tokens[device_id] = store_incidents.new_token()
            store_incidents.add_device(session, device_id, token=tokens[device_id],
                                       callback_number="081234567890", now=now)
    engine.dispose()
    return tokens


def store_history(db_url: str, tokens: dict[str, str], count: int) -> None:
    """``count`` alerts stored before the run, as a center has after months of service: the
    alert path's lookups must not grow with the table."""
    from dispatcher.alerts import storage
    from dispatcher.alerts.intake import AlertRequest, Location
    from dispatcher.calllog import db

    engine = db.make_engine(db_url)
    sessions = db.make_sessionmaker(engine)
    with sessions() as session:
        seen = {d: storage.device_credentials(session, d) for d in tokens}
    devices = list(tokens)
    now = dt.datetime.now(dt.UTC) - dt.timedelta(days=90)
    for first in range(0, count, 500):
        batch = [(AlertRequest(str(uuid.uuid4()), devices[n % len(devices)], "panic",
                               Location(1.4756, 125.1736, 15.0, None), "081234567890", None),
                  seen[devices[n % len(devices)]])
                 for n in range(first, min(count, first + 500))]
        with db.transaction(sessions) as session:
            storage.commit_alerts(session, batch, now)
    engine.dispose()


def _as_postgres(*argv: str) -> list[str]:
    # initdb and the server refuse to run as root.
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else list(argv)


@contextlib.contextmanager
def postgres_cluster() -> Iterator[str]:
    """A private PostgreSQL cluster on a free loopback port, with the durability settings of
    production (fsync, synchronous_commit on); yields the URL of an empty database."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise SystemExit("PostgreSQL is not installed (apt-get install postgresql)")
    bin_dir = os.path.dirname(found[-1])
    # Its own directory: the server's user must be able to reach it.
    root = Path(tempfile.mkdtemp(prefix="siaga-bench-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    data, port = root / "data", free_port()
    subprocess.run(_as_postgres(f"{bin_dir}/initdb", "-D", str(data), "-U", "postgres",
                                "-A", "trust", "-E", "UTF8"), check=True, capture_output=True)
    subprocess.run(_as_postgres(
        f"{bin_dir}/pg_ctl", "-D", str(data), "-l", str(root / "server.log"), "-w",
        "-t", "60", "-o", f"-p {port} -c listen_addresses=127.0.0.1 -k {root}", "start"),
        check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_postgres(f"{bin_dir}/pg_ctl", "-D", str(data), "-m", "fast", "-w",
                                    "stop"), check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def start_server(workdir: Path, db_url: str, rate: float, devices: int, commit_batch: int,
                 intake_processes: int = 0) -> tuple[subprocess.Popen[bytes], int]:
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
         "--rate-burst", "50", "--rate-per-second", str(max(1.0, per_device * 4)),
         "--commit-batch", str(commit_batch), "--intake-processes", str(intake_processes)],
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
        self.polls = 0  # feed requests the operator's console made
        self.missed = 0  # events the feed said it no longer kept when the console asked
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
            self.polls += 1
            now = time.monotonic()
            doc = json.loads(body)
            self.missed += doc["missed"]
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


@dataclass
class Round:
    """One round's figures."""

    label: str
    sent: int
    elapsed: float
    committed: int
    failed: dict[int, str]
    stored: int
    commit_lat: list[float]
    notify_lat: list[float]
    server_cpu: float
    client_cpu: float
    polls: int = 0
    missed: int = 0  # events the feed no longer kept when the console asked
    transactions: int = 0  # the measured load's alert batches committed

    @property
    def lost(self) -> int:
        """Alerts without a 2xx, or never notified."""
        return self.sent - len(self.notify_lat)


def run_round(label: str, workdir: Path, db_url: str, args: argparse.Namespace,
              commit_batch: int) -> Round:
    """Enrol the devices, start a server, send the load, stop the server, count the rows."""
    from sqlalchemy import create_engine, text

    workdir.mkdir()
    tokens = enrol(db_url, args.devices)
    if args.stored:
        store_history(db_url, tokens, args.stored)
    proc, port = start_server(workdir, db_url, args.rate, args.devices, commit_batch,
                              args.intake_processes)
    try:
        # A server runs for days: its first requests (SQL compiled and cached, code paths
        # warmed) are not what the center sees in an earthquake. Warm it, then measure.
        warm = Load(port, tokens, min(args.rate, 200.0), args.warmup, args.connections)
        asyncio.run(warm.run(args.drain))
        warmed = len(warm.committed)
        load = Load(port, tokens, args.rate, args.seconds, args.connections)
        load_began = dt.datetime.now(dt.UTC)
        server_cpu0, client_cpu0 = tree_cpu_seconds(proc.pid), time.process_time()
        began = time.monotonic()
        asyncio.run(load.run(args.drain))
        elapsed = time.monotonic() - began
        server_cpu = tree_cpu_seconds(proc.pid) - server_cpu0
        client_cpu = time.process_time() - client_cpu0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    from sqlalchemy import func, select

    from dispatcher.calllog.models import Alert

    engine = create_engine(db_url)
    with engine.connect() as con:
        stored = (con.execute(text("select count(*) from alerts")).scalar_one() - warmed
                  - args.stored)
        # Every alert of a batch is stamped with the batch's one time: distinct stamps
        # since the load began are its transactions.
        transactions = con.execute(select(func.count(func.distinct(Alert.received_at)))
                                   .where(Alert.received_at >= load_began)).scalar_one()
    engine.dispose()
    return Round(label, load.sent, elapsed, len(load.committed), load.failed, stored,
                 [load.committed[n] - load.due[n] for n in load.committed],
                 [load.notified[n] - load.due[n] for n in load.notified],
                 server_cpu, client_cpu, load.polls, load.missed, transactions)


def report(r: Round, args: argparse.Namespace) -> None:
    """Print one round's figures."""
    print(f"[{r.label}] alerts: {r.sent} sent at {args.rate:g}/s for {args.seconds:g} s "
          f"({r.sent / r.elapsed:.0f}/s achieved over {r.elapsed:.1f} s incl. drain), "
          f"{args.devices} devices, {args.connections} connections, {os.cpu_count()} CPUs "
          f"shared, database {args.db} holding {args.stored} earlier alerts")
    print(f"  committed (2xx): {r.committed}   refused/failed: {len(r.failed)}   "
          f"rows in the database: {r.stored} (after the warm-up's), in {r.transactions} "
          f"transactions ({r.stored / max(1, r.transactions):.1f} alerts each)")
    for name, lat in (("POST -> committed (201):  ", r.commit_lat),
                      ("POST -> operator notified:", r.notify_lat)):
        print(f"  {name}   p50 {pct(lat, 50):7.1f} ms   p95 {pct(lat, 95):7.1f} ms   "
              f"p99 {pct(lat, 99):7.1f} ms   max {pct(lat, 100):7.1f} ms")
    print(f"  lost (no 2xx, or never notified): {r.lost}")
    print(f"  CPU: server {r.server_cpu:.1f} s ({r.server_cpu / max(1, r.sent) * 1000:.2f} ms "
          f"per alert, all threads), this load generator {r.client_cpu:.1f} s, over "
          f"{r.elapsed:.1f} s")
    print(f"  the operators' feed: {r.polls} requests ({r.polls / max(1, r.sent):.2f} per "
          "alert; with intakes, answered by the intake from its mirror of the writer's "
          f"feed), {r.missed} events missed")
    if r.failed:
        print(f"  first failures: {list(r.failed.items())[:3]}")
    p99 = pct(r.notify_lat, 99)
    verdict = "met" if p99 <= GOAL_P99_MS and r.lost == 0 else "NOT met"
    print(f"  goal p99 <= {GOAL_P99_MS:g} ms and 0 lost: {verdict}")


def _values(text: str, kind: type, name: str) -> list:  # type: ignore[type-arg]
    try:
        return [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SystemExit(f"{name}: a comma-separated list, got {text!r}") from None


def summary(results: list[tuple[str, float, int, Round, float]]) -> None:
    """One table of every round of a matrix run; ratios against one process (0 intakes) at
    the same rate and database."""
    print()
    print("notification latency (POST due -> operator's feed), ms; ratio = this p99 / the "
          "p99 of one process at the same rate and database")
    print(f"{'database':10} {'rate/s':>7} {'intakes':>7} {'p50':>8} {'p95':>8} {'p99':>8} "
          f"{'ratio':>6} {'lost':>5} {'server CPU':>11} {'ms CPU/alert':>12} "
          f"{'generator CPU':>14} {'load avg':>8}")
    single = {(db, rate): pct(r.notify_lat, 99) for db, rate, n, r, _ in results if n == 0}
    for db, rate, n, r, load in results:
        p99 = pct(r.notify_lat, 99)
        base = single.get((db, rate))
        ratio = f"{p99 / base:.2f}" if base else "-"
        print(f"{db:10} {rate:7.0f} {n:7d} {pct(r.notify_lat, 50):8.1f} "
              f"{pct(r.notify_lat, 95):8.1f} {p99:8.1f} {ratio:>6} {r.lost:5d} "
              f"{r.server_cpu / r.elapsed * 100:10.0f}% {r.server_cpu / r.sent * 1000:12.2f} "
              f"{r.client_cpu / r.elapsed * 100:13.0f}% {load:8.1f}")
    print("(CPU: share of one core over the round, the server's with its intake processes; "
          f"the machine has {os.cpu_count()} cores, shared by the server, its intakes, this "
          "generator and whatever else runs: the load average is the 1-minute one at the "
          "round's end)")


def main() -> int:
    """Run the load (after a baseline round if asked) and print the figures.

    ``--rate``, ``--intake-processes`` and ``--db`` take comma-separated lists: every
    combination is one round, and a table of all of them ends the run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", default="1000", help="alerts per second (a list: 600,800,1000)")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to send")
    parser.add_argument("--devices", type=int, default=500, help="enrolled devices used")
    parser.add_argument("--connections", type=int, default=64, help="keep-alive connections")
    parser.add_argument("--drain", type=float, default=10.0,
                        help="seconds to wait for late notifications at the end")
    parser.add_argument("--warmup", type=float, default=3.0,
                        help="seconds of alerts (at most 200/s) before the measured load")
    parser.add_argument("--stored", type=int, default=0,
                        help="alerts already in the database before the run (its history)")
    parser.add_argument("--db", default="sqlite", help="sqlite, postgresql, or both: "
                        "sqlite,postgresql")
    parser.add_argument("--commit-batch", type=int, default=None,
                        help="alerts per transaction at most (default: the server's)")
    parser.add_argument("--intake-processes", default="0",
                        help="intake processes (0: the server's process alone); a list: 0,2")
    parser.add_argument("--baseline", action="store_true",
                        help="first a round with one alert per transaction, then the ratio")
    args = parser.parse_args()
    rates = _values(args.rate, float, "--rate")
    intakes = _values(args.intake_processes, int, "--intake-processes")
    dbs = _values(args.db, str, "--db")
    if any(d not in ("sqlite", "postgresql") for d in dbs):
        parser.error("--db: sqlite or postgresql")
    if (not rates or min(rates) <= 0 or args.seconds <= 0 or args.warmup <= 0
            or max(rates) * args.seconds > 200_000 or not intakes or min(intakes) < 0):
        parser.error("rate, seconds and warm-up must be positive, at most 200,000 alerts "
                     "in all")
    from dispatcher.alerts.settings import AlertSettings

    batch = args.commit_batch or AlertSettings.commit_batch
    rounds: list[tuple[str, int, str, float, int]] = []
    for db_kind in dbs:
        for rate in rates:
            for n in intakes:
                if args.baseline:
                    rounds.append(("one alert per transaction", 1, db_kind, rate, n))
                rounds.append((f"group commit: batch <= {batch}, {db_kind}, {rate:g}/s, "
                               f"{n} intake processes", batch, db_kind, rate, n))
    print(f"load average before the run {os.getloadavg()[0]:.2f}")
    results: list[tuple[str, float, int, Round, float]] = []
    with tempfile.TemporaryDirectory(prefix="siaga-bench-") as tmp:
        for i, (label, round_batch, db_kind, rate, n) in enumerate(rounds):
            with contextlib.ExitStack() as stack:
                workdir = Path(tmp) / f"round{i}"
                if db_kind == "postgresql":
                    db_url = stack.enter_context(postgres_cluster())
                else:
                    db_url = f"sqlite:///{Path(tmp) / f'siaga{i}.db'}"
                round_args = argparse.Namespace(**{**vars(args), "rate": rate,
                                                   "intake_processes": n, "db": db_kind})
                r = run_round(label, workdir, db_url, round_args, round_batch)
                report(r, round_args)
                print(f"  load average after the round {os.getloadavg()[0]:.2f}", flush=True)
                results.append((db_kind, rate, n, r, os.getloadavg()[0]))
    if args.baseline and len(results) == 2:
        before, after = results[0][3], results[1][3]
        cpu_ratio = (before.server_cpu / before.sent) / max(after.server_cpu / after.sent, 1e-9)
        print(f"ratio (group commit / one per transaction): notification p99 "
              f"{pct(before.notify_lat, 99) / max(pct(after.notify_lat, 99), 1e-9):.1f}x "
              f"lower, server CPU per alert {cpu_ratio:.2f}x lower, "
              f"lost {before.lost} -> {after.lost}")
    if len(results) > 1 and not args.baseline:
        summary(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
