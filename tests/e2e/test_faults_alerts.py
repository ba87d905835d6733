"""Faults on the alert path: the server killed with SIGKILL in the middle of a burst.

The API server runs as ``python -m dispatcher.api.standalone`` (HTTP, the call log writer,
the alert batcher: the code ``siaga up`` runs for alerts) on SQLite, without AMI so the
callbacks stay owed in the database instead of ringing a thousand phones. A 2xx means the
alert, its incident and its callback are committed; what was acknowledged must survive
the kill, and the apps' retries after the restart must create nothing twice.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.e2e.api_process import StandaloneApi, enrol
from tests.harness import write_test_config

REPO = Path(__file__).resolve().parents[2]
DEVICES = 40
BURST = 1000
KILL_AFTER = 400  # acknowledged alerts before the SIGKILL: the burst is still going
CONNECTIONS = 16


class ApiProcess(StandaloneApi):
    """The standalone API server on a SQLite file, without AMI, started and SIGKILLed at will."""

    def __init__(self, workdir: Path) -> None:
        self.db_path = workdir / "alerts.db"
        # Each device sends 25 alerts as fast as the server takes them.
        super().__init__(workdir, write_test_config(workdir / "siaga.yaml"), workdir / "state",
                         f"sqlite:///{self.db_path}",
                         ["--rate-burst", "100", "--rate-per-second", "100"])



@dataclass
class Burst:
    """A thousand alerts from the devices, and what the server answered to each."""

    tokens: dict[str, str]
    alerts: list[tuple[str, str]] = field(default_factory=list)  # (device id, alert id)
    answered: dict[int, tuple[int, dict[str, object]]] = field(default_factory=dict)
    cut: dict[int, str] = field(default_factory=dict)  # no answer: the connection died

    def __post_init__(self) -> None:
        devices = sorted(self.tokens)
        self.alerts = [(devices[n % len(devices)], str(uuid.uuid4())) for n in range(BURST)]

    def request(self, n: int) -> bytes:
        device_id, alert_id = self.alerts[n]
        body = json.dumps({"alert_id": alert_id, "device_id": device_id, "type": "panic",
                           "location": {"lat": 1.4756, "lon": 125.1736, "accuracy_m": 15}
                           }).encode()
        return (f"POST /api/v1/alerts HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Content-Type: application/json\r\n"
                f"Authorization: Bearer {self.tokens[device_id]}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode() + body

    def acknowledged(self) -> dict[int, int]:
        """Alert number → incident id, for every alert answered 2xx."""
        return {n: int(doc["incident_id"]) for n, (status, doc) in self.answered.items()
                if 200 <= status < 300}

    async def send(self, port: int, numbers: list[int],
                   kill_when: int | None = None, kill: object = None) -> None:
        """Send ``numbers`` on keep-alive connections; SIGKILL (``kill()``) once
        ``kill_when`` alerts are acknowledged."""
        queue: asyncio.Queue[int] = asyncio.Queue()
        pending_kill = [kill_when]
        for n in numbers:
            queue.put_nowait(n)

        async def sender() -> None:
            reader = writer = None
            while not queue.empty():
                n = queue.get_nowait()
                try:
                    if writer is None:
                        reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    writer.write(self.request(n))
                    status, body = await _read_response(reader)
                except (OSError, asyncio.IncompleteReadError) as exc:
                    self.cut[n] = repr(exc)
                    if writer is not None:
                        writer.close()
                    reader = writer = None
                    continue
                self.answered[n] = (status, json.loads(body))
                self.cut.pop(n, None)
                if pending_kill[0] is not None and len(self.acknowledged()) >= pending_kill[0]:
                    pending_kill[0] = None
                    kill()  # type: ignore[operator]
            if writer is not None:
                writer.close()

        await asyncio.gather(*(sender() for _ in range(CONNECTIONS)))


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next((int(line.split(":", 1)[1]) for line in lines[1:]
                   if line.lower().startswith("content-length:")), 0)
    return int(lines[0].split()[1]), (await reader.readexactly(length) if length else b"")


def stored(db_path: Path) -> dict[tuple[str, str], tuple[int, int, int]]:
    """(device id, alert id) → (incident id, alerts on that incident, callbacks owed for it)
    for every alert in the database, read with plain sqlite3 (not the server's code)."""
    with sqlite3.connect(db_path) as con:
        rows = con.execute(
            "SELECT d.device_id, a.alert_id, a.incident_id,"
            " (SELECT count(*) FROM alerts a2 WHERE a2.incident_id = a.incident_id),"
            " (SELECT count(*) FROM callbacks c WHERE c.incident_id = a.incident_id"
            "  AND c.reason = 'alert')"
            " FROM alerts a JOIN devices d ON d.id = a.device_id"
            " JOIN incidents i ON i.id = a.incident_id").fetchall()
        total = con.execute("SELECT count(*) FROM alerts").fetchone()[0]
    keyed = {(r[0], r[1]): (r[2], r[3], r[4]) for r in rows}
    assert len(keyed) == total == len(rows), "an alert stored twice or without its incident"
    return keyed


@pytest.fixture
def api(tmp_path: Path) -> Iterator[ApiProcess]:
    """The API server of this test (stopped at its end)."""
    server = ApiProcess(tmp_path)
    yield server
    server.stop()


def test_given_a_burst_of_alerts_when_the_server_is_killed_then_every_acknowledged_one_is_kept(
        api: ApiProcess) -> None:
    """1,000 alerts from 40 apps on 16 connections; SIGKILL once 400 are acknowledged. In
    the database after the restart: every alert answered 2xx, with the incident its answer
    named and one callback owed, none stored twice. The apps then retry everything not
    acknowledged (and, to be sure, everything acknowledged): each answer names one incident
    per alert, the acknowledged ones keep theirs, and the database holds exactly 1,000."""
    burst = Burst(enrol(api.db_path, DEVICES, "fault"))
    api.start()
    killed_at: list[float] = []

    def kill() -> None:
        killed_at.append(time.monotonic())
        api.kill()

    asyncio.run(burst.send(api.port, list(range(BURST)), KILL_AFTER, kill))
    acknowledged = burst.acknowledged()
    refused = {n: a for n, a in burst.answered.items() if not 200 <= a[0] < 300}
    assert killed_at and not refused, refused
    assert KILL_AFTER <= len(acknowledged) < BURST, "the kill came after the burst"
    assert burst.cut, "no request was in flight when the server died"

    api.start()  # the restart: schema check, recovery, listening again
    after_restart = stored(api.db_path)
    for n, incident_id in acknowledged.items():
        assert after_restart.get(burst.alerts[n]) == (incident_id, 1, 1), (
            f"acknowledged alert {n} is {after_restart.get(burst.alerts[n])} in the database,"
            f" answered with incident {incident_id}")
    assert len(after_restart) >= len(acknowledged)

    # The apps retry: each alert id again, the acknowledged ones included.
    burst.answered.clear()
    burst.cut.clear()
    asyncio.run(burst.send(api.port, list(range(BURST))))
    assert not burst.cut, burst.cut
    assert all(200 <= status < 300 for status, _ in burst.answered.values()), \
        {n: a for n, a in burst.answered.items() if not 200 <= a[0] < 300}
    retried = burst.acknowledged()
    assert len(retried) == BURST
    for n, incident_id in acknowledged.items():
        assert retried[n] == incident_id and not burst.answered[n][1]["created"]
    final = stored(api.db_path)
    assert len(final) == BURST
    assert len({incident for incident, _, _ in final.values()}) == BURST
    assert all(alerts == 1 and callbacks == 1 for _, alerts, callbacks in final.values())
    print(f"\nfault: SIGKILL after {len(acknowledged)} of {BURST} alerts acknowledged, "
          f"{len(after_restart)} stored at restart ({len(after_restart) - len(acknowledged)} "
          f"committed but unanswered), {len(final)} after the retries", file=sys.stderr)

