"""Faults of the database under a running center (`siaga up`, real Asterisk, SIPp citizens):
PostgreSQL restarted while calls are logged, and SQLite's disk full.

Asterisk's CEL file is the reference: every call it carried must reach the call log, written
live by the server (``source = 'ami'``), not left to a later CEL reconciliation.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.db.conftest import PostgresServer, _as_postgres, postgres_server  # noqa: F401
from tests.e2e.faults_helpers import Citizens, cel_ended, logged_calls, metric
from tests.harness import PATIENCE, SiagaProcess, running_center, wait_for

pytestmark = pytest.mark.asterisk

CALLS_PER_SECOND = 50
BURST_CALLS = 250  # five seconds of calls at 50/s; PostgreSQL restarts in the middle


def closed_live(url: str, linkedids: set[str]) -> bool:
    """Every one of ``linkedids`` is in the call log, ended, written by the live server."""
    calls = logged_calls(url)
    return all(lid in calls and calls[lid][0] != "in_progress" and calls[lid][1]
               and calls[lid][2] == "ami" for lid in linkedids)


def missing(url: str, linkedids: set[str]) -> dict[str, Any]:
    """The calls of ``linkedids`` the log lacks or holds unfinished, for a failure message."""
    calls = logged_calls(url)
    return {lid: calls.get(lid) for lid in sorted(linkedids)
            if lid not in calls or calls[lid][0] == "in_progress" or calls[lid][2] != "ami"}


@pytest.fixture
def pg_database(postgres_server: PostgresServer) -> Iterator[str]:  # noqa: F811
    """A fresh, empty database on the session's PostgreSQL; its URL."""
    name = f"siaga_faults_{os.getpid()}"
    postgres_server.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    postgres_server.admin(f'CREATE DATABASE "{name}"')
    try:
        yield postgres_server.url(name)
    finally:
        postgres_server.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def restart_postgres(server: PostgresServer) -> None:
    """``pg_ctl restart -m fast``: every connection is terminated, the server is down for
    the restart, then takes connections again."""
    # -l again (pg_ctl does not remember it): the new server's output must not hold a pipe
    # of ours open.
    subprocess.run(_as_postgres(os.path.join(server.bin_dir, "pg_ctl"), "-D", server.data_dir,
                                "-l", server.log, "-m", "fast", "-w", "-t", "60", "restart"),
                   check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=90)


def test_given_calls_at_50_per_second_when_postgresql_restarts_then_no_journey_is_lost(
        postgres_server: PostgresServer, pg_database: str, tmp_path: Path) -> None:  # noqa: F811
    """250 citizens at 50 calls/s, each 1 s in the IVR; PostgreSQL restarted (fast) once the
    log holds 40 of them. Every call still succeeds (Asterisk never waits for the server);
    the writer says it holds the journeys, then that they are written; every call CEL says
    ended is in the log, ended, written live. The reactor's largest lag is printed (measured
    by the server's own probe), not bounded: machines are noisy."""
    with running_center(tmp_path, database={"url": pg_database}) as server:
        citizens = Citizens(server)
        try:
            burst = citizens.call(BURST_CALLS, CALLS_PER_SECOND, hold_ms=1000)
            wait_for(lambda: len(logged_calls(pg_database)) >= 40, 30,
                     "the first calls in the log")
            restarted_at = time.monotonic()
            restart_postgres(postgres_server)
            restart_s = time.monotonic() - restarted_at
            assert citizens.wait(burst) == 0, citizens.output(burst)
            ended = cel_ended(server, server.center.hotline[0])
            assert len(ended) == BURST_CALLS, f"CEL shows {len(ended)} ended hotline calls"
            wait_for(lambda: closed_live(pg_database, ended), 30,
                     "every call CEL saw to be in the log, ended, written live")
            out = server.output()
            assert "the call log database is unavailable" in out, \
                "the restart never reached the writer: the test proved nothing"
            assert "the call log database is back" in out
            # The callbacks owed to the citizens who hung up in the menu are stored too.
            assert "not persisted" not in out, [
                line for line in out.splitlines() if "not persisted" in line][:3]
            print(f"\nfault: PostgreSQL restart took {restart_s:.1f} s during "
                  f"{BURST_CALLS} calls at {CALLS_PER_SECOND}/s; all {len(ended)} journeys "
                  f"logged live; reactor lag max "
                  f"{metric(server, 'siaga_reactor_lag_max_seconds'):.3f} s; write failures "
                  f"{metric(server, 'siaga_calllog_write_failures'):.0f}", file=sys.stderr)
        finally:
            citizens.close()


# -- SQLite on a full disk -----------------------------------------------------------------


class TinyDisk:
    """A tmpfs of a few megabytes holding the center's SQLite database, filled to the last
    byte on demand and freed again."""

    def __init__(self, path: Path, size_mb: int = 16) -> None:
        self.path = path
        path.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0755", "tmpfs",
                        str(path)], check=True, capture_output=True)
        self.filler = path / "filler"

    def fill(self) -> None:
        """Write zeros until the disk refuses (ENOSPC), down to the last byte."""
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for size in (1 << 20, 65536, 4096, 512, 1):
                try:
                    while True:
                        os.write(fd, b"\0" * size)
                except OSError:
                    pass
        finally:
            os.close(fd)
        assert shutil.disk_usage(self.path).free < 4096

    def free(self) -> None:
        """The database returns: the filler goes."""
        self.filler.unlink()

    def unmount(self) -> None:
        """Unmount (lazily: a process that still holds a file there keeps it alive)."""
        subprocess.run(["umount", "-l", str(self.path)], check=False, capture_output=True)


def post_alert(server: SiagaProcess, token: str, device_id: str, alert_id: str
               ) -> tuple[int, dict[str, Any], str]:
    """POST an alert to the center's API; status, JSON body, Content-Type."""
    http = server.center.http
    body = json.dumps({"alert_id": alert_id, "device_id": device_id, "type": "fire",
                       "location": {"lat": 1.44, "lon": 125.19, "accuracy_m": 9}}).encode()
    req = urllib.request.Request(f"http://{http.host}:{http.port}/api/v1/alerts", data=body,
                                 method="POST")
    req.add_header("Content-Type", "application/json")
    req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10 * PATIENCE) as resp:
            return resp.status, json.loads(resp.read()), resp.headers["Content-Type"]
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), exc.headers["Content-Type"]


def stored_alert_ids(url: str) -> set[str]:
    """Alert ids in the database (plain SQL)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as con:
            return {r[0] for r in con.execute(text("SELECT alert_id FROM alerts"))}
    finally:
        engine.dispose()


def checkpoint(db_file: Path) -> None:
    """Fold SQLite's WAL into the database and truncate it: from now on every write must
    grow a file, so a full disk refuses it (a WAL already long would be rewritten in place)."""
    import sqlite3

    con = sqlite3.connect(db_file, timeout=30)
    try:
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    finally:
        con.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_given_sqlite_disk_full_when_alerts_and_calls_come_then_503_calls_flow_and_backlog_kept(
        tmp_path: Path) -> None:
    """The center's SQLite on a 16 MB tmpfs, filled to the last byte. An app's alert gets
    503 with a JSON reason and is not stored (never a 201 for an alert not stored); ten
    citizens' calls still succeed (Asterisk needs no database: fail-open). The disk is freed:
    every one of those calls reaches the log, written by the live server from its held
    backlog, and the app's retry of the same alert gets 201 and is stored once."""
    disk = TinyDisk(tmp_path / "disk")
    db_file = disk.path / "siaga.db"
    url = f"sqlite:///{db_file}"
    try:
        (tmp_path / "center").mkdir()
        with running_center(tmp_path / "center", database={"url": url}) as server:
            citizens = Citizens(server)
            try:
                token = enrol(server, "fault-app")
                checkpoint(db_file)
                disk.fill()
                alert_id = str(uuid.uuid4())
                status, doc, kind = post_alert(server, token, "fault-app", alert_id)
                assert status == 503 and kind.startswith("application/json"), (status, doc)
                assert doc["error"] == "storage_unavailable" and doc["reason"], doc

                calls = citizens.call(10, 10, hold_ms=1000)
                assert citizens.wait(calls) == 0, citizens.output(calls)
                ended = cel_ended(server, server.center.hotline[0])
                assert len(ended) == 10
                wait_for(lambda: "the call log database is unavailable" in server.output(),
                         30, "the writer to meet the full disk")
                assert not set(logged_calls(url)) & ended, "a call was written on a full disk"
                assert alert_id not in stored_alert_ids(url)

                disk.free()
                wait_for(lambda: closed_live(url, ended), 30,
                         "the held journeys to be written once the disk has room")
                assert "the call log database is back" in server.output()
                assert "not persisted" not in server.output()
                status, retried, _ = post_alert(server, token, "fault-app", alert_id)
                assert status == 201, retried
                assert alert_id in stored_alert_ids(url)
                print(f"\nfault: disk full: alert 503 {doc!r}; 10 calls carried; "
                      f"{len(ended)} journeys written after the disk was freed",
                      file=sys.stderr)
            finally:
                citizens.close()
    finally:
        disk.unmount()


def enrol(server: SiagaProcess, device_id: str) -> str:
    """`siaga device add` on the center's config and state; the device's token."""
    out = subprocess.run(
        [str(Path(sys.executable).parent / "siaga"), "device", "add", device_id,
         "--config", str(server.config), "--state-dir", str(server.state_dir),
         "--callback-number", "081299", "--json"],
        check=True, capture_output=True, text=True)
    return json.loads(out.stdout)["token"]
