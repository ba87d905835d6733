"""Scale-out on one machine: the SIP edge (Kamailio) in front of two real Asterisk nodes.

Each node is on its own loopback address with its own ports (see tests/scaleout.py for why).
Staff phones register at the edge; every node reaches them through it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy import create_engine, text

from dialplans.contract import NODE_STAFF_QUALIFY_SECONDS
from dispatcher.cluster.remote import boot_of
from dispatcher.config.loader import load_center
from dispatcher.config.model import Center
from dispatcher.credentials import ensure_credentials
from dispatcher.topology import EDGE_SOURCE_HEADER, edge_paths, node_center
from pbx.asterisk import stale_pid
from pbx.kamailio import EdgeError, node_states
from pbx.phone.phone import Call, Phone, PhoneError
from pbx.provision import AsteriskInstall
from tests.db.conftest import PostgresServer, postgres_server  # noqa: F401,F811 (a fixture)
from tests.e2e.hotline_helpers import getvar, operator_then_citizen
from tests.e2e.test_callbacks_hostile import wallboard
from tests.harness import PATIENCE, SiagaProcess, wait_for
from tests.phones import PhoneFactory
from tests.scaleout import (
    NODE_HOSTS,
    TEST_FLOOD_REQUESTS,
    ScaleOut,
    start_scaleout,
    write_topology_config,
)

pytestmark = pytest.mark.asterisk

FAILOVER_GOAL_S = 5.0  # the bound, printed beside the measure


@pytest.fixture(scope="module")
def scaleout(tmp_path_factory: pytest.TempPathFactory,
             asterisk_install: AsteriskInstall) -> Iterator[ScaleOut]:
    """Two Asterisk nodes and the edge in front of them, for this module's tests."""
    running = start_scaleout(tmp_path_factory.mktemp("scaleout"), asterisk_install)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def phone_directory(scaleout: ScaleOut):  # noqa: ANN201 (tests.phones.Directory)
    """Citizens call the edge; staff credentials are the center's (shared by every node)."""
    from tests.phones import Credentials, Directory

    node = scaleout.nodes["a"]
    return Directory(
        server=scaleout.edge_address, hotline=scaleout.center.hotline[0],
        operators=[Credentials(op.extension, node.password(op.extension))
                   for op in scaleout.center.operators])


def call_through_edge(scaleout: ScaleOut, citizen: Phone, timeout: float = 10.0,
                      **headers: str) -> tuple[Call, str]:
    """The citizen calls the hotline at the edge; wait until a node's IVR answered. Returns
    the call and the name of the node that took it."""
    before = {n: len(scaleout.hotline_channels(n)) for n in scaleout.nodes
              if scaleout.nodes[n].proc is not None and scaleout.nodes[n].proc.poll() is None}
    call = citizen.call(scaleout.center.hotline[0], headers=headers or None)
    call.wait_confirmed(timeout)
    landed = wait_for(lambda: [n for n in before
                               if len(scaleout.hotline_channels(n)) > before[n]],
                      5, "the call's channel on a node")
    return call, landed[0]  # type: ignore[index]


def reachable_on(scaleout: ScaleOut, node: str, extension: str) -> bool:
    """True when a node sees a staff extension's contact (at the edge) as reachable."""
    return " Avail " in scaleout.ami(node).command(f"pjsip show aor {extension}")


def test_given_an_operator_registered_at_the_edge_when_calls_land_on_either_node_then_it_rings(
        scaleout: ScaleOut, phones: PhoneFactory) -> None:
    """One operator registers once, at the edge: hotline calls spread over both nodes and
    each node rings that operator through the edge, with audio both ways; the node learns
    the citizen's own address from the edge (not a forged one from the caller)."""
    op = phones.directory.operator(1)
    operator = phones.extension(op.user, op.password, server=scaleout.edge_address,
                                name="operator-edge")
    # Each node pings the extension at the edge; the edge answers while the phone is
    # registered there.
    registered_at = time.monotonic()
    phones.stack.wait_until(lambda: all(reachable_on(scaleout, n, op.user)
                                        for n in scaleout.nodes),
                            4 * NODE_STAFF_QUALIFY_SECONDS + 5,
                            "both nodes to see the operator registered at the edge")
    print(f"\noperator registered at the edge: reachable from both nodes after "
          f"{time.monotonic() - registered_at:.2f} s (nodes ping every "
          f"{NODE_STAFF_QUALIFY_SECONDS} s)")
    citizen = phones.citizen()
    heard_on: set[str] = set()
    for attempt in range(6):
        forged = {EDGE_SOURCE_HEADER: "203.0.113.9:5060"} if attempt == 0 else {}
        call, node = call_through_edge(scaleout, citizen, **forged)
        channel = scaleout.hotline_channels(node)[-1]["Channel"]
        assert getvar(scaleout.ami(node), channel, "SIAGA_FROM") == f"127.0.0.1:{citizen.port}"
        if node not in heard_on:
            call.send_dtmf("1")  # an agency's key: straight to the queue
            op_call = operator.answer(15)
            heard = phones.two_way_audio(call, op_call)
            assert heard.both, (node, heard)
            heard_on.add(node)
        call.hangup()
        call.wait_disconnected(10)
        if heard_on == set(scaleout.nodes):
            break
    assert heard_on == {"a", "b"}


def most_at_once(calls: list[Call]) -> int:
    """The most of these calls that were up (offered, ringing or talking) at one time."""
    edges = sorted([(c.created_at, 1) for c in calls]
                   + [(c.disconnected_at, -1) for c in calls if c.disconnected_at is not None])
    most = now = 0
    for _at, step in edges:
        now += step
        most = max(most, now)
    return most


def desk_refusals(scaleout: ScaleOut, extension: str) -> int:
    """How many times the edge refused a node's call to this operator (busy elsewhere)."""
    return scaleout.edge_log().count(f"operator {extension} busy with a call from another node")


def one_on_each_node(scaleout: ScaleOut, phones: PhoneFactory) -> dict[str, Call]:
    """Two citizens' hotline calls, one on each node (in their IVR)."""
    held: dict[str, Call] = {}
    for attempt in range(8):
        call, node = call_through_edge(scaleout, phones.citizen(name=f"citizen-{attempt}"))
        if node in held:
            call.hangup()
            call.wait_disconnected(10)
            continue
        held[node] = call
        if len(held) == 2:
            return held
    raise AssertionError(f"the edge sent every call to {set(held)}")


def test_given_one_free_operator_when_both_nodes_ring_at_once_then_one_call_reaches_them(
        scaleout: ScaleOut, phones: PhoneFactory) -> None:
    """One desk across nodes: two citizens reach the queue at the same instant, one on each
    node, while one operator is free and the other is absent. Both nodes ring the free
    operator; the edge lets one call through and answers the other node 486 (busy), so the
    operator's phone never holds two calls. The second citizen waits in its node's queue
    and is put through once the operator is free again."""
    op = phones.directory.operator(1)
    absent = scaleout.center.operators[1].extension
    wait_for(lambda: not any(reachable_on(scaleout, n, absent) for n in scaleout.nodes),
             4 * NODE_STAFF_QUALIFY_SECONDS + 5, f"operator {absent} absent on both nodes")
    operator = phones.extension(op.user, op.password, server=scaleout.edge_address,
                                name="operator-one-desk")
    phones.stack.wait_until(lambda: all(reachable_on(scaleout, n, op.user)
                                        for n in scaleout.nodes),
                            4 * NODE_STAFF_QUALIFY_SECONDS + 5,
                            "both nodes to see the operator registered at the edge")
    held = one_on_each_node(scaleout, phones)
    refused_before = desk_refusals(scaleout, op.user)
    for call in held.values():  # an agency's key: straight to the queue, both at once
        call.send_dtmf("1")
    first = operator.wait_incoming(15)

    def offered() -> list[Call]:
        return [c for c in operator.calls if c.direction == "incoming"]

    # The other node rang too: refused at the edge (it retries every second while its
    # citizen waits), or, were the desk not one, put through as a second call.
    phones.stack.wait_until(lambda: desk_refusals(scaleout, op.user) > refused_before
                            or most_at_once(offered()) > 1, 10,
                            "the second node's call to the busy desk")
    assert most_at_once(offered()) == 1, [(c.remote_uri, c.state) for c in offered()]
    first.answer()
    first.wait_confirmed(10)
    # The citizen the operator did not get is still waiting; the operator ends the first.
    first.hangup()
    first.wait_disconnected(10)
    waiting = phones.stack.wait_until(
        lambda: [c for c in held.values() if c.disconnected_at is None]
        if sum(c.disconnected_at is not None for c in held.values()) == 1 else None,
        10, "the first citizen's call to end with the operator's hang-up")[0]
    second = operator.answer(15)
    heard = phones.two_way_audio(waiting, second)
    assert heard.both, heard
    assert most_at_once(offered()) == 1
    waiting.hangup()
    waiting.wait_disconnected(10)


def test_given_staff_registration_at_the_edge_when_a_stranger_tries_then_refused(
        scaleout: ScaleOut, phones: PhoneFactory) -> None:
    """The edge registers the center's accounts only, each with its own password, and a
    staff phone registered there is reached from the nodes alone: a stranger who calls its
    extension through the edge is refused and the phone never rings."""
    op = phones.directory.operator(2)
    with pytest.raises(PhoneError) as wrong:
        phones.extension(op.user, op.password[::-1] + "x", server=scaleout.edge_address,
                         name="wrong-password")
    assert "refused: 403" in str(wrong.value) or "refused: 401" in str(wrong.value), wrong.value
    with pytest.raises(PhoneError) as stranger:
        phones.extension("9999", "whatever-password", server=scaleout.edge_address,
                         name="stranger-register")
    assert "refused: 403" in str(stranger.value), stranger.value
    operator = phones.extension(op.user, op.password, server=scaleout.edge_address,
                                name="operator-2-edge")
    citizen = phones.citizen()
    call = citizen.call(op.user)
    call.wait_disconnected(10)
    assert call.confirmed_at is None
    assert call.status_code == 404, (call.status_code, call.reason)
    assert operator.incoming_waiting == 0


def test_given_the_edge_when_a_citizen_calls_what_is_not_the_hotline_then_refused(
        scaleout: ScaleOut, phones: PhoneFactory) -> None:
    """At the edge strangers reach the hotline numbers and nothing else; at a node, a
    stranger who bypasses the edge reaches nothing at all."""
    citizen = phones.citizen()
    operator_ext = scaleout.center.operators[0].extension
    call = citizen.call(operator_ext)
    call.wait_disconnected(10)
    assert call.status_code == 404, (call.status_code, call.reason)
    direct = phones._keep(Phone(phones.stack, "direct-citizen",
                                server=scaleout.node_address("a")))
    bypass = direct.call(scaleout.center.hotline[0])
    bypass.wait_disconnected(10)
    assert bypass.confirmed_at is None
    assert bypass.status_code in (401, 403), (bypass.status_code, bypass.reason)


def node_boot(scaleout: ScaleOut, name: str) -> tuple[str, str]:
    """When a node's Asterisk started, as CoreStatus says it to the brain."""
    response = scaleout.ami(name).action("CoreStatus")
    assert response is not None
    return boot_of(response.keys)


def test_given_a_node_killed_when_citizens_call_then_the_survivor_takes_them_and_the_node_rejoins(
        scaleout: ScaleOut, phones: PhoneFactory) -> None:
    """kill -9 node a: every call placed from then on is answered (by b); once the edge has
    marked a down, no call even tries it. Node a restarted: the edge sees it and sends it
    calls again, nothing else restarted."""
    citizen = phones.citizen()
    scaleout.wait_up("a", "b")
    victim = scaleout.nodes["a"]
    assert victim.proc is not None
    booted = node_boot(scaleout, "a")
    assert all(booted) and node_boot(scaleout, "a") == booted
    killed_at = time.monotonic()
    os.kill(victim.proc.pid, signal.SIGKILL)
    victim.proc.wait(10)
    marked_down_at: float | None = None
    answered: list[tuple[float, float, str]] = []  # (since the kill, set-up time, node)
    after_marked = 0
    deadline = time.monotonic() + 30 * PATIENCE
    while after_marked < 3:
        assert time.monotonic() < deadline, f"calls after the kill: {answered}"
        started = time.monotonic()
        call, node = call_through_edge(scaleout, citizen)
        assert call.status_code == 200 and node == "b", (call.status_code, node)
        assert call.confirmed_at is not None
        answered.append((call.confirmed_at - killed_at, call.confirmed_at - started, node))
        call.hangup()
        call.wait_disconnected(10)
        if marked_down_at is None:
            state = scaleout.states().get("a")
            if state is not None and not state.up:
                marked_down_at = time.monotonic()
        else:
            after_marked += 1
    assert marked_down_at is not None
    down_s = marked_down_at - killed_at
    print(f"\nfailover: node a marked down {down_s:.2f} s after kill -9 "
          f"(goal {FAILOVER_GOAL_S:.0f} s); calls after the kill "
          + ", ".join(f"answered at +{t:.2f} s (set-up {d * 1000:.0f} ms)"
                      for t, d, _ in answered))

    victim.start()
    scaleout.wait_up("a")
    # What the brain tells a restarted node by when it is not its supervisor.
    assert node_boot(scaleout, "a") not in (booted, ("", "")), booted
    back = []
    for _ in range(4):
        call, node = call_through_edge(scaleout, citizen)
        back.append(node)
        call.hangup()
        call.wait_disconnected(10)
        if node == "a":
            break
    assert "a" in back, back


def options_flood(edge: tuple[str, int], source: str, count: int) -> int:
    """Send ``count`` OPTIONS from ``source`` to the edge as fast as possible; how many
    were answered."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((source, 0))
        port = s.getsockname()[1]
        for i in range(count):
            call_id = uuid.uuid4().hex
            s.sendto((f"OPTIONS sip:{edge[0]}:{edge[1]} SIP/2.0\r\n"
                      f"Via: SIP/2.0/UDP {source}:{port};branch=z9hG4bK{call_id[:12]};rport\r\n"
                      f"Max-Forwards: 70\r\nFrom: <sip:flood@{source}>;tag={i}\r\n"
                      f"To: <sip:{edge[0]}>\r\nCall-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\n"
                      "Content-Length: 0\r\n\r\n").encode(), edge)
        answered = 0
        s.settimeout(1.0)
        try:
            while True:
                if s.recv(4096).startswith(b"SIP/2.0 200"):
                    answered += 1
        except TimeoutError:
            pass
    return answered


def register_raw(edge: tuple[str, int], source: str, user: str) -> int | None:
    """One REGISTER for ``user`` from ``source``, no credentials; the answer's status code,
    or None when the edge says nothing within a second."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((source, 0))
        port = s.getsockname()[1]
        call_id = uuid.uuid4().hex
        s.sendto((f"REGISTER sip:{edge[0]}:{edge[1]} SIP/2.0\r\n"
                  f"Via: SIP/2.0/UDP {source}:{port};branch=z9hG4bK{call_id[:12]};rport\r\n"
                  f"Max-Forwards: 70\r\nFrom: <sip:{user}@{edge[0]}>;tag={call_id[:8]}\r\n"
                  f"To: <sip:{user}@{edge[0]}>\r\nCall-ID: {call_id}\r\n"
                  f"CSeq: 1 REGISTER\r\nContact: <sip:{user}@{source}:{port}>\r\n"
                  "Expires: 60\r\nContent-Length: 0\r\n\r\n").encode(), edge)
        s.settimeout(1.0)
        try:
            while True:
                answer = s.recv(4096)
                code = int(answer.split(b" ", 2)[1])
                if code >= 200:
                    return code
        except TimeoutError:
            return None


def test_given_refused_registrations_from_one_address_when_it_goes_on_then_it_is_blocked(
        scaleout: ScaleOut) -> None:
    """The center's `security` rule at the edge: after `block_after` refused registrations
    an address gets no answer to a REGISTER at all; another address still does."""
    topo = scaleout.center.topology
    assert topo is not None
    edge = (topo.edge.host, topo.edge.port)
    limit = scaleout.center.security.block_after
    answers = [register_raw(edge, "127.0.0.3", f"99{i:02d}") for i in range(limit + 2)]
    assert answers == [403] * limit + [None, None], answers
    assert register_raw(edge, "127.0.0.4", "9999") == 403


def test_given_a_flood_from_one_address_when_a_citizen_calls_then_the_flood_is_dropped(
        scaleout: ScaleOut, phones: PhoneFactory) -> None:
    """pike at the edge: past the flood limit one address gets no answers at all, while a
    citizen from another address still reaches the hotline."""
    topo = scaleout.center.topology
    assert topo is not None
    sent = TEST_FLOOD_REQUESTS * 5
    answered = options_flood((topo.edge.host, topo.edge.port), "127.0.0.2", sent)
    assert 0 < answered < sent, answered
    citizen = phones.citizen()
    call, _node = call_through_edge(scaleout, citizen)
    call.hangup()
    call.wait_disconnected(10)


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


def nodes_on_board(center: Center) -> dict[str, bool]:
    """The brain's wallboard: each node's name and whether it is up ({} while the brain
    does not answer)."""
    try:
        board = wallboard(SimpleNamespace(center=center))  # type: ignore[arg-type]
    except OSError:
        return {}
    return {n["name"]: n["up"] for n in board.get("nodes", [])}


def test_given_a_topology_when_siaga_up_runs_then_edge_and_nodes_are_supervised(
        tmp_path: Path, phones: PhoneFactory, postgres_server: PostgresServer) -> None:  # noqa: F811
    """`siaga up` on a topology config runs the edge, both nodes (all addresses are this
    machine's) and the brain over them (one call log on PostgreSQL, the wallboard with the
    nodes); a node killed -9 with a citizen waiting in its queue is shown down, restarted,
    rejoins the edge and the brain by itself, and that citizen's journey is closed as cut
    with a callback owed, while the citizen waiting on the other node is untouched; the edge
    killed -9 is restarted too; the supervisor killed -9 and started again adopts the nodes
    and replaces the edge; SIGTERM stops everything."""
    database = f"brain_{uuid.uuid4().hex[:8]}"
    postgres_server.admin(f"CREATE DATABASE {database}")
    url = postgres_server.url(database)
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
    try:
        wait_for(lambda: states() == {"a": True, "b": True}, 30, "both nodes up at the edge")
        wait_for(lambda: nodes_on_board(center) == {"a": True, "b": True}, 30,
                 f"the brain's wallboard to show both nodes up:\n{output()}")
        hotline_call()
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
        killed = stale_pid(node_a.run_dir / "run")
        assert killed is not None
        os.kill(killed, signal.SIGKILL)
        killed_at = time.monotonic()
        # The brain loses node a's AMI at once (the process is gone): the board says so
        # until the node is back.
        wait_for(lambda: nodes_on_board(center).get("a") is False, 10,
                 "the wallboard to show node a down")
        shown_down_s = time.monotonic() - killed_at
        # Restarted by the supervisor (1 s later). Whether the edge saw it down in between
        # depends on where its pings fell (a quick restart may answer the next one): the
        # edge's side of a loss is the module's failover test.
        wait_for(lambda: stale_pid(node_a.run_dir / "run") not in (None, killed), 30,
                 "node a restarted")
        wait_for(lambda: states().get("a") is True, 30, "node a up at the edge")
        wait_for(lambda: nodes_on_board(center) == {"a": True, "b": True}, 30,
                 "node a back on the brain's wallboard")
        rejoined_s = time.monotonic() - killed_at
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
              "waiting citizen's journey closed as dropped and owed a callback")
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
        killed = stale_pid(node_a.run_dir / "run")
        assert killed is not None
        os.kill(killed, signal.SIGKILL)
        wait_for(lambda: nodes_on_board(center).get("a") is False, 10,
                 "the wallboard to show node a down again")
        status, receipt = post_alert(center, token, ALERT_PHONE)
        assert status == 201, receipt
        taken, ringing = operator_then_citizen(operator, mobile, 40, 30)
        assert NODE_HOSTS["b"] in taken.remote_uri, taken.remote_uri
        heard = phones.two_way_audio(ringing, taken)
        assert heard.both, heard
        taken.hangup()
        ringing.wait_disconnected(10)
        for phone in (operator, mobile):  # unregistered while the edge still runs
            phone.close()
        wait_for(lambda: nodes_on_board(center) == {"a": True, "b": True}, 30,
                 "node a back on the brain's wallboard again")
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
