"""The center under hours of mixed load: does memory or the count of open files grow?

One `siaga up` (the example city on free loopback ports, recordings on, the SQLite call log)
carries for ``--minutes`` (default 60):

* hotline calls: SIPp citizens (as in benchmarks/capacity.py: anonymous calls to 112, the
  IVR, the key 0, G.711 speech until the call has lasted ``--hold-seconds``) kept at
  ``--calls`` concurrent calls, placed at ``--calls / --hold-seconds`` calls per second;
  the operators are SIPp too, every desk registered with its password and answering after
  ``--ring-seconds``, echoing the audio;
* panic alerts: ``--alerts`` per second POSTed to /api/v1/alerts on keep-alive connections,
  spread over ``--devices`` enrolled devices; each alert owes a callback, which the server
  runs as it does in a city (operator first: a Local channel at the front of the queue, a
  SIPp desk answers, then the citizen's number is dialled; that number is a panic button's
  endpoint that is not registered, so the citizen never answers and the dialer retries);
  the console's operator cancels each incident ``--incident-seconds`` after its 201 (a
  center's operators handle incidents; without it the owed callbacks would pile up by the
  thousand, which is a staffing question, not a leak);
* console pages: ``--wallboards`` wallboards logged in as a supervisor, each polling
  /wallboard.json every 2 s exactly as wallboard.js does, and ``--feeds`` operator consoles
  long-polling /api/v1/incidents/feed. Plain HTTP clients, not Chromium: the server sees
  the same requests, and a browser per page would take the cores being measured.

Every minute it prints the server's and Asterisk's resident memory (VmRSS) and open file
descriptors (/proc/PID/fd), the calls carried and failed (SIPp's counters: a call that
failed in SIPp, e.g. no answer within 30 s), the alerts committed and refused, and the
pages' requests. At the end: the growth of each RSS from minute 5 to the end (percent), and
the fd change over the same span.

    nice -n 19 .venv/bin/python benchmarks/soak.py --minutes 60 --calls 40 --alerts 5
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import re
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.capacity import (  # noqa: E402
    CITIZEN,
    CITIZENS,
    FIRST_DESK,
    PCAPS,
    SPEECH,
    Operators,
    SippRunner,
    free_udp_port,
    stop,
    tail,
)
from benchmarks.sipp_stats import last_count, pcap_seconds, read_sipp_csv  # noqa: E402

UNREGISTERED_CITIZEN = "902"  # a panic button's endpoint nobody registers in this run


# --tracemalloc: put on the server's PYTHONPATH as sitecustomize.py (the server's code is
# unchanged): tracing starts with the interpreter, and SIGUSR2 writes a snapshot where the
# environment says. A diagnosis run only: tracing slows allocation and takes memory itself.
TRACEMALLOC_HOOK = """
import os, signal, tracemalloc
_out = os.environ.get("SIAGA_SOAK_TRACEMALLOC")
if _out:
    tracemalloc.start(int(os.environ.get("SIAGA_SOAK_TRACEMALLOC_FRAMES", "8")))
    def _dump(_signum, _frame):
        snapshot = tracemalloc.take_snapshot()
        tmp = _out + ".tmp"
        snapshot.dump(tmp)
        os.replace(tmp, _out)
    signal.signal(signal.SIGUSR2, _dump)
"""


# --census: a cheap diagnosis instead (the server keeps its speed). SIGUSR1 writes, as JSON,
# the live objects by type (gc), the interpreter's allocated blocks, and glibc's mallinfo2
# (bytes in use and free-but-kept in malloc's arenas, and mmapped): what grew, Python objects
# or C memory (SQLite's caches, thread arenas), and which.
CENSUS_HOOK = """
import os, signal
_census = os.environ.get("SIAGA_SOAK_CENSUS")
if _census:
    def _count(_signum, _frame):
        import collections, ctypes, gc, json, sys
        class _Mallinfo2(ctypes.Structure):
            _fields_ = [(n, ctypes.c_size_t) for n in (
                "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                "uordblks", "fordblks", "keepcost")]
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _Mallinfo2
        m = libc.mallinfo2()
        types = collections.Counter(type(o).__qualname__ for o in gc.get_objects())
        out = {"blocks": sys.getallocatedblocks(), "objects": sum(types.values()),
               "types": dict(types.most_common(400)),
               "malloc": {"arena": m.arena, "in_use": m.uordblks, "free": m.fordblks,
                          "mmapped": m.hblkhd}}
        with open(_census + ".tmp", "w") as f:
            json.dump(out, f)
        os.replace(_census + ".tmp", _census)
    signal.signal(signal.SIGUSR1, _count)
"""


def ask_for_dump(pid: int, signum: int, path: Path, what: str, timeout: float) -> None:
    """Signal the server's hook and wait until it has written ``path`` (atomically)."""
    path.unlink(missing_ok=True)
    os.kill(pid, signum)
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server wrote no {what}")
        time.sleep(0.2)


def census(pid: int, path: Path, timeout: float = 60.0) -> dict:
    """Ask the server for a census of its memory (``CENSUS_HOOK``); add its memory map's
    resident kilobytes by kind (the heap, anonymous mappings, files)."""
    import signal

    ask_for_dump(pid, signal.SIGUSR1, path, "census", timeout)
    found = json.loads(path.read_text())
    found["map_kb"] = resident_by_kind(pid)
    return found


def resident_by_kind(pid: int) -> dict[str, int]:
    """Resident kB of /proc/PID/smaps by kind of mapping: [heap] (malloc's main arena),
    anonymous (pymalloc's arenas, thread arenas, large blocks), files (code, libraries)."""
    kinds: dict[str, int] = {}
    kind = "anonymous"
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()
        if not head:
            continue
        if not head[0].endswith(":"):  # a mapping's first line: its address range
            name = head[5] if len(head) > 5 else ""
            kind = name if name.startswith("[") else ("file" if name else "anonymous")
        elif head[0] == "Rss:":
            kinds[kind] = kinds.get(kind, 0) + int(head[1])
    return kinds


def print_census_growth(first: dict, last: dict, top: int = 15) -> None:
    """What grew between two censuses: objects by type, malloc's bytes, mappings."""
    mb = 2 ** 20
    print(f"  objects {last['objects'] - first['objects']:+,d} (now {last['objects']:,d}), "
          f"allocated blocks {last['blocks'] - first['blocks']:+,d}")
    m0, m1 = first["malloc"], last["malloc"]
    print("  malloc: " + ", ".join(f"{k} {(m1[k] - m0[k]) / mb:+.1f} MB (now {m1[k] / mb:.1f})"
                                   for k in ("in_use", "free", "mmapped")))
    k0, k1 = first["map_kb"], last["map_kb"]
    print("  resident by mapping: " + ", ".join(
        f"{k} {(k1.get(k, 0) - k0.get(k, 0)) / 1024:+.1f} MB" for k in sorted(k1) if k1[k]))
    grew = sorted(((n - first["types"].get(t, 0), t) for t, n in last["types"].items()),
                  reverse=True)[:top]
    print("  types grown most: " + ", ".join(f"{t} {d:+,d}" for d, t in grew if d > 0))


def traced_snapshot(pid: int, path: Path, timeout: float = 60.0) -> object:
    """Ask the traced server for a tracemalloc snapshot and load it."""
    import signal
    import tracemalloc

    ask_for_dump(pid, signal.SIGUSR2, path, "tracemalloc snapshot", timeout)
    return tracemalloc.Snapshot.load(str(path))


def print_growth(first: object, last: object, top: int = 25) -> None:
    """The allocation sites whose memory grew most between two snapshots."""
    import tracemalloc

    noise = [tracemalloc.Filter(False, tracemalloc.__file__),
             tracemalloc.Filter(False, "<frozen importlib._bootstrap*>")]
    a = first.filter_traces(noise)  # type: ignore[attr-defined]
    b = last.filter_traces(noise)  # type: ignore[attr-defined]
    total = sum(s.size for s in b.statistics("filename")) - sum(
        s.size for s in a.statistics("filename"))
    print(f"\ntraced Python memory grew {total / 2**20:+.1f} MB; largest growth by place "
          "(innermost frames last):")
    for stat in b.compare_to(a, "traceback")[:top]:
        if stat.size_diff <= 0:
            continue
        frames = [f"{Path(f.filename).name}:{f.lineno}" for f in stat.traceback][-4:]
        print(f"  {stat.size_diff / 2**20:+7.2f} MB {stat.count_diff:+8d} blocks  "
              f"{' < '.join(reversed(frames))}")


def proc_figures(pid: int | None) -> tuple[float | None, int | None]:
    """(VmRSS in MB, open file descriptors) of a live process; Nones when it is gone."""
    if pid is None:
        return None, None
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None, None
    return (int(found.group(1)) / 1024 if found else None), fds


def enrol(db_url: str, count: int) -> dict[str, str]:
    """Enrol ``count`` devices in the center's database; device id -> token."""
    from dispatcher.calllog import db, store_incidents

    engine = db.make_engine(db_url)
    sessions = db.make_sessionmaker(engine)
    tokens = {}
    now = dt.datetime.now(dt.UTC)
    with db.transaction(sessions) as session:
        for i in range(count):
            device_id = f"soak-{i:05d}"
            tokens[device_id] = store_incidents.new_token()
            store_incidents.add_device(session, device_id, token=tokens[device_id],
                                       callback_number=UNREGISTERED_CITIZEN, now=now)
    engine.dispose()
    return tokens


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response (Content-Length bodies, as the server sends them)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers.setdefault(name.strip().lower(), value.strip())
    length = int(headers.get("content-length", "0"))
    body = await reader.readexactly(length) if length else b""
    return status, headers, body


class Http:
    """A keep-alive HTTP/1.1 connection that reconnects after an error."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, headers: dict[str, str] | None = None,
                      body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if body or method == "POST":
            head.append(f"Content-Length: {len(body)}")
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        try:
            assert self.reader is not None
            return await read_response(self.reader)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


@dataclass
class Counts:
    """What the HTTP side did so far."""

    alerts_sent: int = 0
    alerts_committed: int = 0
    alerts_failed: int = 0
    alert_errors: dict[str, int] = field(default_factory=dict)
    cancelled: int = 0
    cancel_failed: int = 0
    cancel_errors: dict[str, int] = field(default_factory=dict)
    wallboard_ok: int = 0
    wallboard_failed: int = 0
    feed_ok: int = 0
    feed_failed: int = 0
    feed_events: int = 0
    alert_ms: list[float] = field(default_factory=list)

    def error(self, table: dict[str, int], what: str) -> None:
        table[what] = table.get(what, 0) + 1


class HttpLoad:
    """Alerts, their incidents cancelled by the console, wallboards and feeds."""

    def __init__(self, port: int, tokens: dict[str, str], operator_token: str,
                 console_login: tuple[str, str], args: argparse.Namespace) -> None:
        self.port = port
        self.tokens = list(tokens.items())
        self.operator_token = operator_token
        self.console_login = console_login
        self.args = args
        self.counts = Counts()
        self.stopping = asyncio.Event()
        self.to_cancel: asyncio.Queue[tuple[float, int]] = asyncio.Queue()

    async def alerts(self) -> None:
        queue: asyncio.Queue[int] = asyncio.Queue()
        senders = [asyncio.create_task(self._sender(queue))
                   for _ in range(self.args.alert_connections)]
        start = time.monotonic()
        n = 0
        while not self.stopping.is_set():
            due = start + n / self.args.alerts
            delay = due - time.monotonic()
            if delay > 0:
                try:
                    await asyncio.wait_for(self.stopping.wait(), delay)
                    break
                except TimeoutError:
                    pass
            queue.put_nowait(n)
            n += 1
        for _ in senders:
            queue.put_nowait(-1)
        await asyncio.gather(*senders)

    async def _sender(self, queue: asyncio.Queue[int]) -> None:
        http = Http(self.port)
        c = self.counts
        while (n := await queue.get()) >= 0:
            device_id, token = self.tokens[n % len(self.tokens)]
            body = json.dumps({
                "alert_id": str(uuid.uuid4()), "device_id": device_id, "type": "panic",
                "location": {"lat": 1.4756, "lon": 125.1736, "accuracy_m": 15},
                "callback_number": UNREGISTERED_CITIZEN}).encode()
            c.alerts_sent += 1
            began = time.monotonic()
            try:
                status, _h, reply = await http.request("POST", "/api/v1/alerts", {
                    "Content-Type": "application/json",
                    "Authorization": f"Bearer {token}"}, body)
            except (OSError, asyncio.IncompleteReadError) as exc:
                c.alerts_failed += 1
                c.error(c.alert_errors, f"connection: {type(exc).__name__}")
                continue
            if status in (200, 201):
                c.alerts_committed += 1
                c.alert_ms.append((time.monotonic() - began) * 1000)
                self.to_cancel.put_nowait((time.monotonic() + self.args.incident_seconds,
                                           json.loads(reply)["incident_id"]))
            else:
                c.alerts_failed += 1
                c.error(c.alert_errors, str(status))
        http.close()

    async def canceller(self) -> None:
        """The console's operator: cancel (or close) each incident once its time is up."""
        http = Http(self.port)
        c = self.counts
        auth = {"Authorization": f"Bearer {self.operator_token}",
                "Content-Type": "application/json"}
        while True:
            when, incident_id = await self.to_cancel.get()
            if incident_id < 0:
                break
            if self.stopping.is_set():
                break  # the ones left are open at the end: nobody's time was up
            delay = when - time.monotonic()
            if delay > 0:
                try:
                    await asyncio.wait_for(self.stopping.wait(), delay)
                    break
                except TimeoutError:
                    pass
            for what in ("cancel", "close"):
                try:
                    status, _h, _b = await http.request(
                        "POST", f"/api/v1/incidents/{incident_id}/events", auth,
                        json.dumps({"input": what, "detail": "soak"}).encode())
                except (OSError, asyncio.IncompleteReadError) as exc:
                    status = 0
                    c.error(c.cancel_errors, f"connection: {type(exc).__name__}")
                if status == 200:
                    c.cancelled += 1
                    break
                if status != 409:  # 409: not in a state that input applies to
                    break
            else:
                status = 409
            if status != 200:
                c.cancel_failed += 1
                c.error(c.cancel_errors, str(status))
        http.close()

    async def wallboard(self) -> None:
        """A wallboard on the video wall: log in once, then /wallboard.json every 2 s."""
        http = Http(self.port)
        c = self.counts
        extension, password = self.console_login
        cookie = ""
        while not self.stopping.is_set():
            try:
                if not cookie:
                    form = urlencode({"extension": extension, "password": password,
                                      "next": "/wallboard"}).encode()
                    status, headers, _b = await http.request(
                        "POST", "/login",
                        {"Content-Type": "application/x-www-form-urlencoded"}, form)
                    cookie = headers.get("set-cookie", "").split(";", 1)[0]
                    if status != 302 or not cookie:
                        raise RuntimeError(f"login answered {status}")
                status, _h, body = await http.request("GET", "/wallboard.json",
                                                      {"Cookie": cookie})
                if status == 200:
                    json.loads(body)
                    c.wallboard_ok += 1
                else:
                    c.wallboard_failed += 1
                    cookie = "" if status == 401 else cookie
            except (OSError, asyncio.IncompleteReadError, RuntimeError, ValueError):
                c.wallboard_failed += 1
            try:
                await asyncio.wait_for(self.stopping.wait(), 2.0)
            except TimeoutError:
                pass
        http.close()

    async def feed(self) -> None:
        """An operator's console: long polls of the incidents feed."""
        http = Http(self.port)
        c = self.counts
        auth = {"Authorization": f"Bearer {self.operator_token}"}
        after = 0
        while not self.stopping.is_set():
            try:
                status, _h, body = await http.request(
                    "GET", f"/api/v1/incidents/feed?after={after}&wait=20", auth)
                if status == 200:
                    doc = json.loads(body)
                    c.feed_events += len(doc["events"])
                    after = doc["last"]
                    c.feed_ok += 1
                else:
                    c.feed_failed += 1
                    await asyncio.sleep(1)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                c.feed_failed += 1
                await asyncio.sleep(1)
        http.close()


@dataclass
class Sample:
    """One minute's figures."""

    minute: int
    server_rss: float | None
    server_fds: int | None
    asterisk_rss: float | None
    asterisk_fds: int | None
    carried: int
    failed: int
    current: int


def growth(samples: list[Sample], name: str, since_minute: int) -> str:
    """Percent change of a figure from ``since_minute`` (or the first sample) to the end."""
    base = next((s for s in samples if s.minute >= since_minute), samples[0])
    first, last = getattr(base, name), getattr(samples[-1], name)
    if first is None or last is None or not first:
        return "n/a"
    return f"{(last - first) / first * 100:+.1f} % ({first:.1f} -> {last:.1f} MB, " \
           f"minute {base.minute} -> {samples[-1].minute})"


async def run(args: argparse.Namespace, port: int, load: HttpLoad,
              sample: callable) -> list[Sample]:  # type: ignore[valid-type]
    """The HTTP load and a sample every minute, until the time is up."""
    # Several consoles cancel at once: one connection falls behind a slow (traced) server.
    cancellers = 4
    tasks = [asyncio.create_task(load.alerts())]
    tasks += [asyncio.create_task(load.canceller()) for _ in range(cancellers)]
    tasks += [asyncio.create_task(load.wallboard()) for _ in range(args.wallboards)]
    tasks += [asyncio.create_task(load.feed()) for _ in range(args.feeds)]
    samples: list[Sample] = []
    began = time.monotonic()
    samples.append(sample(0))
    for minute in range(1, int(args.minutes) + 1):
        await asyncio.sleep(max(0.0, began + minute * 60 - time.monotonic()))
        samples.append(sample(minute))
        for task in tasks:
            if task.done() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    load.stopping.set()
    for _ in range(cancellers):
        load.to_cancel.put_nowait((0.0, -1))
    await asyncio.wait_for(asyncio.gather(*tasks), 60)
    return samples


def main() -> None:  # noqa: PLR0915 - one run, told in order
    """Start the center, the load, sample every minute, print the growth."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0, help="how long the load runs")
    parser.add_argument("--calls", type=int, default=40, help="concurrent hotline calls")
    parser.add_argument("--hold-seconds", type=float, default=30.0,
                        help="how long each citizen's call lasts (IVR, queue, operator)")
    parser.add_argument("--ivr-seconds", type=float, default=3.0)
    parser.add_argument("--ring-seconds", type=float, default=1.0)
    parser.add_argument("--alerts", type=float, default=5.0, help="panic alerts per second")
    parser.add_argument("--devices", type=int, default=200,
                        help="enrolled devices the alerts are spread over")
    parser.add_argument("--alert-connections", type=int, default=4)
    parser.add_argument("--incident-seconds", type=float, default=30.0,
                        help="the console cancels each incident this long after its 201")
    parser.add_argument("--wallboards", type=int, default=3)
    parser.add_argument("--feeds", type=int, default=2)
    parser.add_argument("--retention-minutes", type=int, default=60,
                        help="how often the retention pass (with its CEL reconcile) runs: "
                        "the center's default is 60")
    parser.add_argument("--tracemalloc", action="store_true",
                        help="trace the server's allocations (a diagnosis run: slower, "
                        "more memory) and print what grew between snapshots")
    parser.add_argument("--census", action="store_true",
                        help="count the server's objects by type, malloc's bytes and its "
                        "resident mappings (cheap: the server keeps its speed) and print "
                        "what grew between the minutes of --diagnose-at")
    parser.add_argument("--diagnose-at", default="5",
                        help="with --tracemalloc or --census: the minutes (comma-separated) "
                        "at which to look besides the last; each is compared with the one "
                        "before")
    args = parser.parse_args()
    if args.minutes < 1 or args.calls < 1 or args.alerts <= 0:
        parser.error("minutes >= 1, calls >= 1 and alerts > 0")
    try:
        trace_at = {int(m) for m in args.diagnose_at.split(",") if m.strip()}
    except ValueError:
        parser.error("--diagnose-at: whole minutes, comma-separated")
    trace_at = {min(m, int(args.minutes) - 1) for m in trace_at} | {int(args.minutes)}

    from dispatcher.api.service import ensure_operator_token
    from dispatcher.credentials import ensure_credentials
    from pbx.provision import provision
    from tests.harness import SiagaProcess, write_test_config

    install = provision(say=lambda _line: None)
    if install.sipp is None:
        sys.exit("SIPp (sip-tester) is not installed: run `siaga provision`")
    # Desks for the calls, the callbacks' operator legs (8 at most at once) and some spare.
    desks = int(args.calls * 1.1) + 15
    with tempfile.TemporaryDirectory(prefix="siaga-soak-") as tmp:
        config = write_test_config(Path(tmp) / "center.yaml", sections={
            "operators": [{"extension": str(FIRST_DESK + i), "name": f"Desk {i + 1}"}
                          for i in range(desks)],
            "queue": {"announce_seconds": 0, "overflow_seconds": 600},
            "recordings": True,
            "retention": {"every_minutes": args.retention_minutes},
        })
        server = SiagaProcess(config, Path(tmp) / "state")
        snapshot_path = Path(tmp) / "tracemalloc.snapshot"
        census_path = Path(tmp) / "census.json"
        if args.tracemalloc or args.census:
            hook = Path(tmp) / "hook"
            hook.mkdir()
            (hook / "sitecustomize.py").write_text(TRACEMALLOC_HOOK + CENSUS_HOOK)
            os.environ["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(hook), os.environ.get("PYTHONPATH")) if p)
            if args.tracemalloc:
                os.environ["SIAGA_SOAK_TRACEMALLOC"] = str(snapshot_path)
            if args.census:
                os.environ["SIAGA_SOAK_CENSUS"] = str(census_path)
        snapshots: dict[int, object] = {}
        counted: dict[int, dict] = {}
        sipp = SippRunner(install.sipp, install.rootfs)
        operators: Operators | None = None
        citizens = None
        try:
            print(f"starting siaga up with {desks} operator desks ...", flush=True)
            server.start(timeout=180)
            center = server.center
            target = f"{center.sip.host}:{center.sip.port}"
            operators = Operators.for_center(sipp, center, args.ring_seconds)
            tokens = enrol(center.database_url, args.devices)
            supervisor = center.supervisors[0]
            login = (supervisor, ensure_credentials(center).console_passwords[supervisor])
            asterisk_pid = server.asterisk_pid()
            assert server.proc is not None
            server_pid = server.proc.pid

            speech_s = pcap_seconds((install.rootfs or Path("/")).joinpath(
                PCAPS.lstrip("/"), "g711a.pcap").read_bytes())
            left, pieces = max(0.0, args.hold_seconds - args.ivr_seconds - 0.5), []
            while left > 0:
                pieces.append(SPEECH.format(pcaps=PCAPS, ms=max(1, int(min(left, speech_s)
                                                                       * 1000))))
                left -= speech_s
            scenario = CITIZEN.format(ivr_ms=int(args.ivr_seconds * 1000), pcaps=PCAPS,
                                      speech="\n".join(pieces))
            rate = args.calls / args.hold_seconds
            work = sipp.workdir("citizens")
            citizens = sipp.start(work, scenario, [
                "-s", "112", "-i", CITIZENS, "-p", str(free_udp_port(CITIZENS)),
                "-mi", CITIZENS, "-mp", str(free_udp_port(CITIZENS)),
                "-l", str(args.calls), "-r", str(args.calls),
                "-rp", f"{args.hold_seconds * 1000:.0f}",
                "-recv_timeout", "30000", "-trace_stat", "-stf", "stat.csv", "-fd", "10",
                "-trace_err", target])
            print(f"{desks} desks registered; {args.calls} concurrent calls of "
                  f"{args.hold_seconds:g} s ({rate:.2f}/s), {args.alerts:g} alerts/s over "
                  f"{args.devices} devices (incidents cancelled after "
                  f"{args.incident_seconds:g} s), {args.wallboards} wallboards, {args.feeds} "
                  f"incident feeds, for {args.minutes:g} min; server pid {server_pid}, "
                  f"Asterisk pid {asterisk_pid}; load average {os.getloadavg()[0]:.2f}",
                  flush=True)
            load = HttpLoad(center.http.port, tokens, ensure_operator_token(center.state_dir),
                            login, args)

            def sample(minute: int) -> Sample:
                stats = read_sipp_csv((work / "stat.csv").read_text()) \
                    if (work / "stat.csv").exists() else []
                s_rss, s_fds = proc_figures(server_pid)
                a_rss, a_fds = proc_figures(asterisk_pid)
                row = Sample(minute, s_rss, s_fds, a_rss, a_fds,
                             last_count(stats, "SuccessfulCall(C)"),
                             last_count(stats, "FailedCall(C)"),
                             last_count(stats, "CurrentCall"))
                c = load.counts
                fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
                print(f"[{minute:3d} min] server RSS {fmt(s_rss)} MB fds {s_fds}  |  "
                      f"Asterisk RSS {fmt(a_rss)} MB fds {a_fds}  |  calls carried "
                      f"{row.carried} failed {row.failed} up {row.current}, desks answered "
                      f"{operators.answered() if operators else 0}  |  alerts "
                      f"{c.alerts_committed}/{c.alerts_sent} ok, {c.alerts_failed} refused, "
                      f"cancelled {c.cancelled} ({c.cancel_failed} not)  |  wallboard "
                      f"{c.wallboard_ok} ok {c.wallboard_failed} bad, feed {c.feed_ok} polls "
                      f"{c.feed_events} events  |  load {os.getloadavg()[0]:.1f}", flush=True)
                if citizens is not None and citizens.poll() is not None:
                    raise RuntimeError(f"citizens' SIPp exited {citizens.returncode}:\n"
                                       f"{tail(work / 'sipp.out')}")
                if args.tracemalloc and minute in trace_at:
                    before = max(snapshots, default=None)
                    snapshots[minute] = traced_snapshot(server_pid, snapshot_path)
                    if before is not None:
                        print(f"\n-- minute {before} to {minute}:")
                        print_growth(snapshots.pop(before), snapshots[minute])
                if args.census and minute in trace_at:
                    before = max(counted, default=None)
                    counted[minute] = census(server_pid, census_path)
                    if before is not None:
                        print(f"-- minute {before} to {minute}:", flush=True)
                        print_census_growth(counted.pop(before), counted[minute])
                return row

            samples = asyncio.run(run(args, center.http.port, load, sample))
            stop(citizens)
            final = read_sipp_csv((work / "stat.csv").read_text())
        finally:
            stop(citizens)
            if operators is not None:
                operators.close()
            server.stop()
            sipp.close()
    c = load.counts
    alert_ms = sorted(c.alert_ms)
    print(f"\nload: {args.calls} concurrent calls ({args.hold_seconds:g} s each), "
          f"{args.alerts:g} alerts/s, {args.wallboards} wallboards + {args.feeds} feeds, "
          f"{args.minutes:g} min, under nice {os.nice(0)}")
    print(f"calls: {last_count(final, 'SuccessfulCall(C)')} carried, "
          f"{last_count(final, 'FailedCall(C)')} failed (SIPp, at the end)")

    def p(q: float) -> float:
        return alert_ms[min(len(alert_ms) - 1, int(q * len(alert_ms)))] if alert_ms \
            else float("nan")
    print(f"alerts: {c.alerts_sent} sent, {c.alerts_committed} committed, {c.alerts_failed} "
          f"refused {c.alert_errors}; POST->201 p50 {p(0.5):.1f} ms p99 {p(0.99):.1f} ms; "
          f"incidents cancelled/closed {c.cancelled}, not {c.cancel_failed} {c.cancel_errors}, "
          f"left open at the end (their time not up) "
          f"{c.alerts_committed - c.cancelled - c.cancel_failed}")
    print(f"pages: wallboard {c.wallboard_ok} ok {c.wallboard_failed} failed; feed "
          f"{c.feed_ok} polls, {c.feed_events} events")
    since = 5 if samples[-1].minute > 5 else 1
    print(f"server RSS growth from minute {since}: {growth(samples, 'server_rss', since)}")
    print(f"Asterisk RSS growth from minute {since}: {growth(samples, 'asterisk_rss', since)}")
    half = int(samples[-1].minute) // 2
    if half > since:
        # Bounded caches (the incident feed keeps its last 20,000 events) fill in the first
        # minutes; growth in the second half is what a leak would show.
        print(f"second half: server RSS {growth(samples, 'server_rss', half)}, Asterisk RSS "
              f"{growth(samples, 'asterisk_rss', half)}")
    base = next((s for s in samples if s.minute >= since), samples[0])
    for who in ("server", "asterisk"):
        a, b = getattr(base, f"{who}_fds"), getattr(samples[-1], f"{who}_fds")
        print(f"{who} fds: {a} at minute {base.minute} -> {b} at the end "
              f"({'n/a' if a is None or b is None else f'{b - a:+d}'}); "
              f"peak {max((getattr(s, f'{who}_fds') or 0) for s in samples)}")
    peak_rss = max((s.server_rss or 0) for s in samples)
    print(f"server RSS peak {peak_rss:.1f} MB (goal <= 150 MB at 200 calls)")


if __name__ == "__main__":
    main()
