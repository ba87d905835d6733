"""Alerts taken by two intake processes on one socket (``http.intake_processes: 2``).

The standalone API server (the code ``siaga up`` runs for alerts) on SQLite, without AMI so
the callbacks stay owed in the database; real HTTP on real sockets. Which intake process
accepted a connection is read from the kernel (the socket's inode in ``/proc/net/tcp`` and in
the processes' file descriptors), so the test knows it sent through both.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.api_process import StandaloneApi, enrol
from tests.e2e.test_faults_alerts import stored
from tests.harness import wait_for, write_test_config

DEVICES = 20
PATIENCE = float(os.environ.get("SIAGA_TEST_PATIENCE", "1"))


class IntakeApi(StandaloneApi):
    """The standalone API server with two intake processes, set by the config file's key."""

    def __init__(self, workdir: Path) -> None:
        self.db_path = workdir / "alerts.db"
        config = write_test_config(workdir / "siaga.yaml",
                                   sections={"http": {"intake_processes": 2}})
        super().__init__(workdir, config, workdir / "state", f"sqlite:///{self.db_path}",
                         ["--rate-burst", "1000", "--rate-per-second", "1000"])

    def intakes(self) -> list[int]:
        """The pids of the intake processes running now."""
        assert self.proc is not None
        kids = []
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            kids += [int(p) for p in (task / "children").read_text().split()]
        return sorted(kids)



def socket_owner(client: socket.socket, pids: list[int]) -> int | None:
    """Which of ``pids`` holds the server's end of ``client``'s connection."""
    here = client.getsockname()
    server_port = client.getpeername()[1]
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1], fields[2]
        if (int(local.split(":")[1], 16) == server_port
                and int(remote.split(":")[1], 16) == here[1]):
            inode = fields[9]
    if inode is None:
        return None
    for pid in pids:
        with contextlib.suppress(OSError):  # a process that just ended
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                if os.readlink(fd) == f"socket:[{inode}]":
                    return pid
    return None


class Connection:
    """One keep-alive HTTP connection to the API."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30 * PATIENCE)
        self.file = self.sock.makefile("rb")

    def request(self, method: str, path: str, body: bytes = b"",
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, object]]:
        self.send(method, path, body, headers)
        return self.answer()

    def send(self, method: str, path: str, body: bytes = b"",
             headers: dict[str, str] | None = None) -> None:
        """Send a request; read its answer with :meth:`answer`."""
        head = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1",
                f"Content-Length: {len(body)}"]
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)

    def answer(self) -> tuple[int, dict[str, object]]:
        """The status and JSON body of the next answer on this connection."""
        status_line = self.file.readline()
        if not status_line:
            raise ConnectionError("closed")
        length = 0
        while (line := self.file.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
        return int(status_line.split()[1]), json.loads(self.file.read(length) or b"{}")

    def post_alert(self, device_id: str, token: str, alert_id: str
                   ) -> tuple[int, dict[str, object]]:
        body = json.dumps({"alert_id": alert_id, "device_id": device_id, "type": "panic",
                           "location": {"lat": 1.4756, "lon": 125.1736}}).encode()
        return self.request("POST", "/api/v1/alerts", body,
                            {"Content-Type": "application/json",
                             "Authorization": f"Bearer {token}"})

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def connections_on_each(api: IntakeApi, per_intake: int) -> dict[int, list[Connection]]:
    """Open connections until each intake process holds ``per_intake`` of them."""
    pids = api.intakes()
    assert len(pids) == 2, pids
    held: dict[int, list[Connection]] = {pid: [] for pid in pids}
    spare: list[Connection] = []

    def enough() -> bool:
        conn = Connection(api.port)
        owner = wait_for(lambda: socket_owner(conn.sock, pids), 10 * PATIENCE,
                         "the connection to be accepted by an intake")
        (held[owner] if len(held[owner]) < per_intake else spare).append(conn)
        return all(len(c) >= per_intake for c in held.values())

    wait_for(enough, 60 * PATIENCE, "connections on both intake processes")
    for conn in spare:
        conn.close()
    return held


@pytest.fixture
def api(tmp_path: Path) -> Iterator[IntakeApi]:
    """The API server of this test (stopped at its end)."""
    server = IntakeApi(tmp_path)
    yield server
    server.stop()


def test_given_two_intake_processes_when_alerts_arrive_through_both_then_each_is_stored_once_and_a_kill_loses_nothing_acknowledged(  # noqa: E501
        api: IntakeApi) -> None:
    """Alerts sent through both intakes are each stored once with their incident and owed
    callback, and the 201 names that incident; a retried alert_id through the other intake
    hears 200 with the same incident; an operator's request (forwarded to the writer's
    process) is answered. Then one intake is SIGKILLed in the middle of a stream of alerts:
    every alert acknowledged is in the database with its incident and callback, the intake
    is started again, and the retries of everything create nothing twice."""
    tokens = enrol(api.db_path, DEVICES, "intake")
    devices = sorted(tokens)
    api.start()
    assert len(api.intakes()) == 2
    held = connections_on_each(api, 2)
    first, second = sorted(held)

    # Through both: stored once each, the answer naming the stored incident.
    sent: dict[tuple[str, str], int] = {}
    for n in range(40):
        pid = (first, second)[n % 2]
        conn = held[pid][n % 2]
        device_id, alert_id = devices[n % DEVICES], str(uuid.uuid4())
        status, doc = conn.post_alert(device_id, tokens[device_id], alert_id)
        assert status == 201 and doc["created"] is True, (status, doc)
        sent[(device_id, alert_id)] = int(doc["incident_id"])  # type: ignore[arg-type]
    rows = stored(api.db_path)
    assert {key: rows[key] for key in sent} == {k: (i, 1, 1) for k, i in sent.items()}
    assert len(rows) == 40

    # A retry through the other intake: 200, the same incident, nothing new.
    (device_id, alert_id), incident_id = next(iter(sent.items()))
    status, doc = held[second][0].post_alert(device_id, tokens[device_id], alert_id)
    assert (status, doc["created"], doc["incident_id"]) == (200, False, incident_id)
    assert len(stored(api.db_path)) == 40

    # An operator's read lands on an intake and is forwarded to the writer's process.
    status, doc = held[first][1].request("GET", f"/api/v1/incidents/{incident_id}")
    assert status == 200 and doc["id"] == incident_id, (status, doc)

    # The operators' feed: a poll from the start is the writer's and lists every incident;
    # long-polls from there, one waiting on each intake, are both woken by an alert sent
    # through one of them (each intake's mirror of the writer's feed).
    status, feed = held[first][1].request("GET", "/api/v1/incidents/feed?after=0")
    assert status == 200 and feed["missed"] == 0, (status, feed)
    assert sorted({e["incident_id"] for e in feed["events"]}) == sorted(  # type: ignore[union-attr]
        set(sent.values()))
    last = feed["last"]
    for pid in (first, second):
        held[pid][1].send("GET", f"/api/v1/incidents/feed?after={last}&wait=30")
    device_id = devices[0]
    status, doc = held[second][0].post_alert(device_id, tokens[device_id], str(uuid.uuid4()))
    assert status == 201, (status, doc)
    for pid in (first, second):
        status, woken = held[pid][1].answer()
        assert status == 200 and [(e["incident_id"], e["event"])  # type: ignore[index]
                                  for e in woken["events"]] == [  # type: ignore[union-attr]
            (doc["incident_id"], "alert_received")], (pid, status, woken)

    # SIGKILL one intake while both take a stream of alerts.
    victim, survivor = first, second
    stream = [(devices[n % DEVICES], str(uuid.uuid4())) for n in range(300)]
    acknowledged: dict[tuple[str, str], int] = {}
    unanswered: list[tuple[str, str]] = []
    killed = False
    for n, (device_id, alert_id) in enumerate(stream):
        conn = held[(victim, survivor)[n % 2]][0]
        if n == 120:
            os.kill(victim, signal.SIGKILL)
            killed = True
        try:
            status, doc = conn.post_alert(device_id, tokens[device_id], alert_id)
        except (OSError, ConnectionError):
            unanswered.append((device_id, alert_id))
            continue
        if 200 <= status < 300:
            acknowledged[(device_id, alert_id)] = int(doc["incident_id"])  # type: ignore[arg-type]
        else:
            unanswered.append((device_id, alert_id))
    assert killed and unanswered, "the kill cut nothing"
    assert len(acknowledged) >= 120
    rows = stored(api.db_path)
    for key, incident_id in acknowledged.items():
        assert rows.get(key) == (incident_id, 1, 1), (key, rows.get(key), incident_id)

    # The pool starts the dead intake again; the apps retry everything.
    wait_for(lambda: len(api.intakes()) == 2 and victim not in api.intakes(), 30 * PATIENCE,
             "the killed intake process to be started again")
    retry = Connection(api.port)
    for device_id, alert_id in stream:
        status, doc = retry.post_alert(device_id, tokens[device_id], alert_id)
        assert status in (200, 201), (status, doc)
        if (device_id, alert_id) in acknowledged:
            assert status == 200 and doc["incident_id"] == acknowledged[(device_id, alert_id)]
    retry.close()
    for conns in held.values():
        for conn in conns:
            conn.close()
    final = stored(api.db_path)
    assert len(final) == 40 + 1 + len(stream)  # the feed's alert too
    with sqlite3.connect(api.db_path) as con:
        assert con.execute("SELECT count(*) FROM incidents").fetchone()[0] == len(final)
        assert con.execute("SELECT count(*) FROM callbacks WHERE reason = 'alert'"
                           ).fetchone()[0] == len(final)


@pytest.mark.asterisk
def test_given_siaga_up_with_two_intake_processes_when_an_app_posts_an_alert_then_it_is_stored_and_the_console_still_answers(  # noqa: E501
        tmp_path: Path) -> None:
    """The whole center (``siaga up``, Asterisk included) with ``http.intake_processes: 2``:
    two intake processes run beside the server; an enrolled app's alert is answered 201 and
    its retry 200 with the same incident; the operator API (forwarded to the server's
    process) shows the incident to the center's own machine, the incident feed (answered by
    the intakes past its start) asks for the operator token, and the console's login page,
    also forwarded, is served."""
    import subprocess
    import sys
    import urllib.request

    from dispatcher.api.service import ensure_operator_token
    from tests.harness import running_center

    with running_center(tmp_path, http={"intake_processes": 2}) as center:
        assert center.proc is not None
        kids = []
        for task in Path(f"/proc/{center.proc.pid}/task").iterdir():
            kids += [int(p) for p in (task / "children").read_text().split()]
        intakes = [pid for pid in kids
                   if b"dispatcher.api.intake_process" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        assert len(intakes) == 2, kids
        out = subprocess.run(
            [str(Path(sys.executable).parent / "siaga"), "device", "add", "intake-app",
             "--config", str(center.config), "--state-dir", str(center.state_dir),
             "--callback-number", "081234567890", "--json"],
            check=True, capture_output=True, text=True)
        token = json.loads(out.stdout)["token"]
        conn = Connection(center.center.http.port)
        alert_id = str(uuid.uuid4())
        status, doc = conn.post_alert("intake-app", token, alert_id)
        assert status == 201 and doc["created"] is True, (status, doc)
        status, again = conn.post_alert("intake-app", token, alert_id)
        assert (status, again["incident_id"]) == (200, doc["incident_id"])
        operator = ensure_operator_token(center.state_dir)
        status, incident = conn.request("GET", f"/api/v1/incidents/{doc['incident_id']}",
                                        headers={"Authorization": f"Bearer {operator}"})
        assert status == 200 and incident["id"] == doc["incident_id"], (status, incident)
        # The feed from the start is the server's; from there on the intake answers it from
        # its mirror, with the center's operator token required there too.
        bearer = {"Authorization": f"Bearer {operator}"}
        status, feed = conn.request("GET", "/api/v1/incidents/feed?after=0", headers=bearer)
        assert status == 200 and doc["incident_id"] in [
            e["incident_id"] for e in feed["events"]], (status, feed)  # type: ignore[union-attr]
        after = f"/api/v1/incidents/feed?after={feed['last']}&wait=0"
        status, refused = conn.request("GET", after)
        assert (status, refused["error"]) == (401, "invalid_credentials"), (status, refused)
        status, answered = conn.request("GET", after, headers=bearer)
        assert (status, answered["events"], answered["missed"]) == (200, [], 0), answered
        conn.close()
        http = center.center.http
        with urllib.request.urlopen(f"http://{http.host}:{http.port}/login",
                                    timeout=10 * PATIENCE) as page:
            assert page.status == 200 and b"<form" in page.read()
