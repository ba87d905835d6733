"""`siaga up` on a topology: the edge, both nodes and the brain over them, supervised.

The brain (one AMI connection and live model per node, one call log on a real PostgreSQL,
the wallboard with the nodes) is watched through what an operator sees: the wallboard, the
call log, a callback owed, an alert called back. Each node is on its own loopback address
(see tests/scaleout.py); this module starts its own `siaga up`, not the shared topology of
test_scaleout.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
from sqlalchemy import create_engine, text

from dialplans.contract import (
    NODE_STAFF_QUALIFY_SECONDS,
    PAUSE,
    PAUSE_REASONS,
    QUEUE_NAME,
    UNPAUSE,
)
from dispatcher.config.loader import load_center
from dispatcher.config.model import Center
from dispatcher.credentials import ensure_credentials
from dispatcher.topology import edge_paths, node_center
from pbx.asterisk import stale_pid
from pbx.kamailio import EdgeError, node_states
from pbx.phone.phone import Call, Phone
from tests.browser import chromium
from tests.db.conftest import PostgresServer, postgres_server  # noqa: F401,F811 (a fixture)
from tests.e2e.hotline_helpers import operator_then_citizen
from tests.e2e.test_callbacks_hostile import wallboard
from tests.e2e.test_console_actions import Console
from tests.e2e.test_console_card import log_in
from tests.harness import PATIENCE, SiagaProcess, open_push_stream, wait_for
from tests.phones import PhoneFactory
from tests.scaleout import NODE_HOSTS, write_topology_config

pytestmark = pytest.mark.asterisk


def child_with(parent: int, needle: str) -> int | None:
    """The pid of ``parent``'s child whose command line holds ``needle``, if any."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent and needle in cmdline:
            return int(entry.name)
    return None


def _cmdline(entry: Path) -> bytes:
    try:
        return (entry / "cmdline").read_bytes()
    except OSError:
        return b""


def kill_all_with(needle: str) -> None:
    """SIGKILL every process whose command line holds ``needle`` (this test's own paths)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                if needle in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    os.kill(int(entry.name), signal.SIGKILL)
            except OSError:
                continue


def brain_calls(url: str) -> dict[str, tuple[str, str, bool]]:
    """linkedid -> (caller, outcome, ended) of every call in the brain's log (plain SQL)."""
    engine = create_engine(url)
    try:
        with engine.connect() as con:
            rows = con.execute(text("SELECT linkedid, caller_number, outcome, ended_at "
                                    "FROM calls"))
            return {r[0]: (r[1], r[2], r[3] is not None) for r in rows}
    finally:
        engine.dispose()


def brain_owed(url: str) -> dict[str, str]:
    """Origin linkedid -> number of every callback owed (plain SQL)."""
    engine = create_engine(url)
    try:
        with engine.connect() as con:
            rows = con.execute(text(
                "SELECT c.linkedid, b.number FROM callbacks b JOIN calls c"
                " ON c.id = b.origin_call_id WHERE b.state IN ('pending', 'ringing')"))
            return {r[0]: r[1] for r in rows}
    finally:
        engine.dispose()


# The disaster agency's duty phone stands in for the citizen's mobile an alert calls back
# (a center without a trunk dials the callback number as one of its own endpoints).
ALERT_PHONE = "339"


def node_cli(center: Center, node: str, command: str) -> str:
    """A CLI command through a node's control socket."""
    assert center.topology is not None
    return SiagaProcess.cli(SimpleNamespace(center=node_center(  # type: ignore[arg-type]
        center, center.topology.node(node))), command)


def enrol_device(config: Path, url: str, device_id: str, number: str) -> str:
    """``siaga device add`` on the brain's database; the app's token."""
    siaga = Path(sys.executable).parent / "siaga"
    out = subprocess.run([str(siaga), "device", "add", "--db", url, device_id,
                          "--callback-number", number, "--json"],
                         check=True, capture_output=True, text=True)
    return str(json.loads(out.stdout)["token"])


def post_alert(center: Center, token: str, number: str) -> tuple[int, dict[str, object]]:
    """A panic alert to the brain's API; the status and the JSON answer."""
    body = json.dumps({"alert_id": str(uuid.uuid4()), "device_id": "e2e-app",
                       "type": "panic", "callback_number": number,
                       "location": {"lat": 1.44, "lon": 125.19, "accuracy_m": 8}}).encode()
    req = urllib.request.Request(
        f"http://{center.http.host}:{center.http.port}/api/v1/alerts", data=body,
        method="POST", headers={"Content-Type": "application/json",
                                "Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def paused_on(center: Center, node: str, extension: str) -> str | None:
    """The pause reason of ``extension``'s queue member on ``node``, from that node's own
    ``queue show`` (None: not paused, or not listed)."""
    member = re.compile(rf"\(PJSIP/{re.escape(extension)}[) ]")  # "(PJSIP/202)", "(... from"
    for line in node_cli(center, node, f"queue show {QUEUE_NAME}").splitlines():
        if member.search(line):
            found = re.search(r"\(paused:([^ )]*)", line)
            return found.group(1) if found else None
    return None


def nodes_on_board(center: Center) -> dict[str, bool]:
    """The brain's wallboard: each node's name and whether it is up ({} while the brain
    does not answer)."""
    try:
        board = wallboard(SimpleNamespace(center=center))  # type: ignore[arg-type]
    except OSError:
        return {}
    return {n["name"]: n["up"] for n in board.get("nodes", [])}


class ConsolePush:
    """A logged-in console page's push stream (/events), read over HTTP/1.0 (no chunking)
    and applied as push.js does: the snapshot, then each delta in sequence."""

    def __init__(self, center: Center, extension: str, password: str) -> None:
        self.sock = open_push_stream(center.http.host, center.http.port, extension,
                                     password, http_version="1.0")
        self.buffer = b""
        self.views: dict[str, dict[str, object]] = {}
        self.seq = -1

    def read(self) -> dict[str, dict[str, object]]:
        """The views as the page has them now."""
        self.sock.setblocking(False)
        try:
            while chunk := self.sock.recv(65536):
                self.buffer += chunk
        except BlockingIOError:
            pass
        finally:
            self.sock.setblocking(True)
        if b"\r\n\r\n" in self.buffer and self.seq < 0 and not self.views:
            head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
            assert b" 200 " in head.split(b"\r\n")[0], head
        while b"\n\n" in self.buffer:
            block, _, self.buffer = self.buffer.partition(b"\n\n")
            fields = dict(line.split(": ", 1) for line in block.decode().split("\n")
                          if ": " in line)
            if "data" not in fields:
                continue
            data = json.loads(fields["data"])
            if fields.get("event") == "snapshot":
                self.views, self.seq = dict(data["views"]), data["seq"]
            elif fields.get("event") == "delta":
                assert data["seq"] == self.seq + 1, (data["seq"], self.seq)
                doc = {**self.views.get(data["view"], {}), **data["set"]}
                for key in data["unset"]:
                    doc.pop(key, None)
                self.views[data["view"]], self.seq = doc, data["seq"]
        return self.views

    def nodes_down(self) -> set[str] | None:
        """The nodes the console's shared view says are down (None: no snapshot yet)."""
        console = self.read().get("console")
        if console is None:
            return None
        return {str(n["name"]) for n in console.get("nodes", [])  # type: ignore[attr-defined]
                if not n["up"]}

    def close(self) -> None:
        self.sock.close()


def test_given_a_topology_when_siaga_up_runs_then_edge_and_nodes_are_supervised(
        tmp_path: Path, phones: PhoneFactory, postgres_server: PostgresServer) -> None:  # noqa: F811
    """`siaga up` on a topology config runs the edge, both nodes (all addresses are this
    machine's) and the brain over them (one call log on PostgreSQL, the wallboard with the
    nodes), the brain once its database exists (it is created after the start); a node
    killed -9 with a citizen waiting in its queue is shown down, restarted, rejoins the
    edge and the brain by itself, and that citizen's journey is closed as cut with a
    callback owed, while the citizen waiting on the other node is untouched; an alert
    posted while a node is down is called back by the other; the edge killed -9 is
    restarted too; the supervisor killed -9 and started again adopts the nodes and
    replaces the edge; SIGTERM stops everything."""
    database = f"brain_{uuid.uuid4().hex[:8]}"
    url = postgres_server.url(database)  # created only once siaga up runs (below)
    config = write_topology_config(tmp_path / "center.yaml", database_url=url)
    state = tmp_path / "state"
    center = load_center(config, state_dir=state)
    assert center.topology is not None
    siaga = Path(sys.executable).parent / "siaga"
    runs: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start() -> subprocess.Popen[bytes]:
        out_path = tmp_path / f"siaga.{len(runs) + 1}.out"
        with out_path.open("wb") as out:
            proc = subprocess.Popen([str(siaga), "up", "--config", str(config), "--state-dir",
                                     str(state)], stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        runs.append((proc, out_path))
        return proc

    socket_path = edge_paths(center).rpc_socket
    edge_config = str(edge_paths(center).config)
    node_a = node_center(center, center.topology.node("a"))

    def output() -> str:
        return runs[-1][1].read_text(errors="replace")[-3000:]

    def states() -> dict[str, bool]:
        assert runs[-1][0].poll() is None, output()
        try:
            return {s.name: s.up for s in node_states(socket_path, timeout=1)}
        except EdgeError:
            return {}

    def hotline_call() -> None:
        call = citizen.call(center.hotline[0])
        call.wait_confirmed(10)
        call.hangup()
        call.wait_disconnected(10)

    citizen = phones._keep(Phone(phones.stack, "citizen-up", server=(
        f"{center.topology.edge.host}:{center.topology.edge.port}")))
    proc = start()
    waiting: list[Call] = []
    browsers = contextlib.ExitStack()
    try:
        # The database is not there yet (a machine that boots PostgreSQL after the center):
        # the edge and the nodes carry calls, the brain is tried again until it answers.
        wait_for(lambda: "the brain cannot start yet" in output(), 30,
                 "the brain to find its database missing")
        wait_for(lambda: states() == {"a": True, "b": True}, 30, "both nodes up at the edge")
        hotline_call()
        postgres_server.admin(f"CREATE DATABASE {database}")
        wait_for(lambda: nodes_on_board(center) == {"a": True, "b": True}, 30,
                 f"the brain's wallboard to show both nodes up:\n{output()}")
        hotline_call()
        # An operator goes for a meal with the feature code, dialled on node b (a staff
        # phone's own calls go to a node): the brain repeats the pause on node a, and the
        # return (*47) too. Else node a would go on ringing an empty desk.
        coder = center.operators[2].extension
        edge_address = f"{center.topology.edge.host}:{center.topology.edge.port}"
        staff = phones.extension(coder, ensure_credentials(center).password(coder),
                                 server=edge_address, name="op-codes")
        meal = next(n for n, reason in PAUSE_REASONS.items() if reason == "meal")
        node_b_sip = f"{NODE_HOSTS['b']}:{center.topology.node('b').sip_port}"
        for code, want in ((f"{PAUSE}{meal}", "meal"), (UNPAUSE, None)):
            dialled = time.monotonic()
            staff.call(f"sip:{code}@{node_b_sip}").wait_disconnected(15)
            wait_for(lambda want=want: paused_on(center, "b", coder) == want, 10,
                     f"{code} to take effect on node b")
            wait_for(lambda want=want: paused_on(center, "a", coder) == want, 10,
                     f"{code} dialled on node b repeated on node a "
                     f"({node_cli(center, 'a', f'queue show {QUEUE_NAME}')})")
            print(f"\nfeature code {code} dialled on node b: node a alike "
                  f"{time.monotonic() - dialled:.2f} s after dialling")
        staff.close()
        # Two citizens wait in the queue (no operator is registered), one on each node
        # (the edge's round robin; the node is the linkedid's prefix).
        for n in range(2):
            caller = phones._keep(Phone(phones.stack, f"08123450090{n}", server=(
                f"{center.topology.edge.host}:{center.topology.edge.port}")))
            call = caller.call(center.hotline[0])
            call.wait_confirmed(10)
            call.send_dtmf("1")
            waiting.append(call)
        def waiting_journeys() -> dict[str, str]:
            return {lid.split("-")[0]: lid for lid, (_number, _outcome, ended)
                    in brain_calls(url).items() if not ended}

        queued = wait_for(lambda: j if len(j := waiting_journeys()) == 2 else None, 20,
                          f"both waiting citizens' journeys in the brain's log "
                          f"({brain_calls(url)})")
        assert set(queued) == {"a", "b"}, queued  # each node names its own calls
        # A second operator (not the alert's, below) goes for a meal from the console while
        # node a is down: node a restarts with every desk open, and the brain must carry
        # the pause to it.
        diner = center.operators[1].extension
        desk = Console(SimpleNamespace(center=center), diner)  # type: ignore[arg-type]
        assert paused_on(center, "a", diner) is None
        killed = stale_pid(node_a.run_dir / "run")
        assert killed is not None
        os.kill(killed, signal.SIGKILL)
        killed_at = time.monotonic()
        # The brain loses node a's AMI at once (the process is gone): the board says so
        # until the node is back.
        wait_for(lambda: nodes_on_board(center).get("a") is False, 10,
                 "the wallboard to show node a down")
        shown_down_s = time.monotonic() - killed_at
        status, _headers, answer = desk.request(
            "POST", "/console/api/desk", json.dumps({"action": "pause", "reason": "meal"})
            .encode(), {"Content-Type": "application/json", "X-Siaga-CSRF": desk.csrf,
                        "Origin": f"http://{center.http.host}:{center.http.port}"})
        assert status == 200, answer
        # Sent while node a was still away (else this test could not tell a carried pause
        # from a broadcast one).
        assert nodes_on_board(center).get("a") is False, "node a was back before the pause"
        assert paused_on(center, "b", diner) == "meal"
        # Restarted by the supervisor (1 s later). Whether the edge saw it down in between
        # depends on where its pings fell (a quick restart may answer the next one): the
        # edge's side of a loss is the module's failover test.
        wait_for(lambda: stale_pid(node_a.run_dir / "run") not in (None, killed), 30,
                 "node a restarted")
        wait_for(lambda: states().get("a") is True, 30, "node a up at the edge")
        wait_for(lambda: nodes_on_board(center) == {"a": True, "b": True}, 30,
                 "node a back on the brain's wallboard")
        rejoined_s = time.monotonic() - killed_at
        # Node a's own queue has the operator on the meal break, as node b does.
        wait_for(lambda: paused_on(center, "a", diner) == "meal", 10,
                 f"operator {diner}'s meal break carried to node a "
                 f"({node_cli(center, 'a', f'queue show {QUEUE_NAME}')})")
        carried_s = time.monotonic() - killed_at
        # The citizen on node a: cut (Q.850 38), closed in the log and owed a callback;
        # the citizen on node b still waits, untouched.
        wait_for(lambda: queued["a"] in brain_owed(url), 30,
                 "a callback owed to the citizen cut off with node a")
        calls = brain_calls(url)
        assert calls[queued["a"]][1:] == ("dropped", True), calls[queued["a"]]
        assert calls[queued["b"]][1:] == ("in_progress", False), calls[queued["b"]]
        assert queued["b"] not in brain_owed(url)
        print(f"\nnode loss: node a shown down on the wallboard {shown_down_s:.2f} s after "
              f"kill -9; restarted and back on the board {rejoined_s:.2f} s after; its "
              "waiting citizen's journey closed as dropped and owed a callback; the "
              f"operator paused meanwhile paused on it {carried_s:.2f} s after")
        for call in waiting:
            call.hangup()

        # An alert while node a is down: its operator-first callback is placed by node b.
        edge_at = f"{center.topology.edge.host}:{center.topology.edge.port}"
        creds = ensure_credentials(center)
        op = center.operators[0].extension
        operator = phones.extension(op, creds.password(op), server=edge_at, name="op-alert")
        mobile = phones.extension(ALERT_PHONE, creds.password(ALERT_PHONE), server=edge_at,
                                  name="citizen-mobile")
        wait_for(lambda: all(" Avail " in node_cli(center, n, f"pjsip show aor {ext}")
                             for ext in (op, ALERT_PHONE) for n in ("a", "b")),
                 4 * NODE_STAFF_QUALIFY_SECONDS + 5, "both phones reachable from both nodes")
        token = enrol_device(config, url, "e2e-app", ALERT_PHONE)
        # A supervisor's page open in Chromium before the node dies: its banner names it.
        from selenium.webdriver.common.by import By

        driver = browsers.enter_context(chromium())
        base = f"http://{center.http.host}:{center.http.port}"
        supervisor = center.supervisors[0]
        log_in(driver, base, supervisor, creds.console_passwords[supervisor])
        # The console itself: the login page's URL (/login?next=/console) ends the same way.
        wait_for(lambda: urlsplit(driver.current_url).path == "/console", 10, "the console")
        driver.get(base + "/supervisor")
        banner = wait_for(lambda: driver.find_elements(By.ID, "nodes-banner"), 10,
                          "the supervisor's page")[0]
        wait_for(lambda: driver.execute_script("return document.body.dataset.seq"), 10,
                 "the supervisor's page's snapshot")
        assert not banner.is_displayed()
        killed = stale_pid(node_a.run_dir / "run")
        assert killed is not None
        os.kill(killed, signal.SIGKILL)
        wait_for(lambda: nodes_on_board(center).get("a") is False, 10,
                 "the wallboard to show node a down again")
        wait_for(lambda: banner.is_displayed() and banner.get_attribute("data-down") == "a",
                 10, "the supervisor's banner naming node a")
        assert "a" in banner.text and not banner.find_elements(By.XPATH, "./*")
        # The operator's console, open while node a is down: its pushed document says so
        # (the pages' banner), and the card of the alert's callback (on node b) appears.
        page = ConsolePush(center, op, creds.console_passwords[op])
        wait_for(lambda: page.nodes_down() == {"a"}, 10,
                 f"the console's view to show node a down ({page.read().get('console')})")
        status, receipt = post_alert(center, token, ALERT_PHONE)
        assert status == 201, receipt
        taken, ringing = operator_then_citizen(operator, mobile, 40, 30)
        assert NODE_HOSTS["b"] in taken.remote_uri, taken.remote_uri

        def card() -> dict[str, object] | None:
            # The alert's call, placed by node b (its journey is in node b's call log).
            shown = (page.read().get("desk") or {}).get("card")
            return shown if shown and shown.get("state") in ("ringing", "talking") \
                and (shown.get("origin") or {}).get("incident_id") == receipt["incident_id"] \
                else None

        shown = wait_for(card, 10, "the operator's card of the call on node b")
        print(f"\nconsole over nodes: node a shown down, card on node b: {shown}")
        assert "desks" not in page.read()  # the floor is the supervisors'
        page.close()
        heard = phones.two_way_audio(ringing, taken)
        assert heard.both, heard
        taken.hangup()
        ringing.wait_disconnected(10)
        for phone in (operator, mobile):  # unregistered while the edge still runs
            phone.close()
        wait_for(lambda: nodes_on_board(center) == {"a": True, "b": True}, 30,
                 "node a back on the brain's wallboard again")
        wait_for(lambda: not banner.is_displayed(), 10, "the banner gone with node a back")
        browsers.close()
        hotline_call()
        hotline_call()  # round robin: one of the two goes to node a
        # The edge itself, killed: restarted, it finds the nodes again and carries calls.
        edge_pid = child_with(proc.pid, edge_config)
        assert edge_pid is not None
        os.kill(edge_pid, signal.SIGKILL)
        wait_for(lambda: child_with(proc.pid, edge_config) not in (None, edge_pid), 10,
                 "Kamailio restarted")
        wait_for(lambda: states() == {"a": True, "b": True}, 15, "both nodes up again")
        hotline_call()
        # The supervisor killed: the nodes and the edge go on without it; the next siaga up
        # adopts the nodes, replaces the edge left behind, and calls go through.
        nodes_before = {n.name: stale_pid(node_center(center, n).run_dir / "run")
                        for n in center.topology.nodes}
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
        proc = start()
        wait_for(lambda: child_with(proc.pid, edge_config) is not None, 30, "a new edge")
        wait_for(lambda: states() == {"a": True, "b": True}, 30, "both nodes up, new edge")
        hotline_call()
        assert {n.name: stale_pid(node_center(center, n).run_dir / "run")
                for n in center.topology.nodes} == nodes_before  # adopted, not restarted
    finally:
        browsers.close()
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(30 * PATIENCE)
        except subprocess.TimeoutExpired:
            kill_all_with(str(state))  # the server hung: leave nothing of this test behind
            raise
    assert code == 0, output()
    for node in center.topology.nodes:
        assert stale_pid(node_center(center, node).run_dir / "run") is None
    assert "Kamailio stopped" in output()
    assert not [p for p in Path("/proc").iterdir() if p.name.isdigit()
                and edge_config.encode() in _cmdline(p)], "a Kamailio was left running"
