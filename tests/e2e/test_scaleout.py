"""Scale-out on one machine: the SIP edge (Kamailio) in front of two real Asterisk nodes.

Each node is on its own loopback address with its own ports (see tests/scaleout.py for why).
Staff phones register at the edge; every node reaches them through it. `siaga up` on a
topology, with the brain, is test_scaleout_brain.py.
"""

from __future__ import annotations

import os
import signal
import socket
import time
import uuid
from collections.abc import Iterator

import pytest

from dialplans.contract import NODE_STAFF_QUALIFY_SECONDS
from dispatcher.cluster.remote import boot_of
from dispatcher.topology import EDGE_SOURCE_HEADER
from pbx.phone.phone import Call, Phone, PhoneError
from pbx.provision import AsteriskInstall
from tests.e2e.hotline_helpers import getvar
from tests.harness import PATIENCE, wait_for
from tests.phones import PhoneFactory
from tests.scaleout import TEST_FLOOD_REQUESTS, ScaleOut, start_scaleout

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
        # The citizen hung up first: the node's BYE to the operator passed the edge, which
        # must have let the desk go (else no node could ring this operator again).
        phones.stack.wait_until(lambda: scaleout.desk_dialogs() == 0, 10,
                                "the edge to free the operator's desk")
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


def test_given_every_node_marked_down_when_a_citizen_calls_then_a_working_node_takes_it(
        scaleout: ScaleOut, phones: PhoneFactory) -> None:
    """Saturated nodes answer the edge's pings late and can be marked down together (seen
    at 400 calls over two nodes: 16 citizens told 503). While one node still works, a
    citizen is never told "no": with both nodes marked down and node a frozen (SIGSTOP, it
    answers nothing), every call still reaches node b's IVR, whichever node the edge's last
    resort tries first (it turns from call to call: a is tried first at least once in
    three calls)."""
    from pbx.kamailio import rpc

    sock = scaleout.edge.paths.rpc_socket
    frozen = scaleout.nodes["a"].proc
    assert frozen is not None
    citizen = phones.citizen()
    # The edge's pings would mark the nodes up again within a second: paused for the test.
    rpc(sock, "dispatcher.ping_active", [0])
    try:
        rpc(sock, "dispatcher.set_state", ["ip", 1, "all"])
        wait_for(lambda: len(states := scaleout.states()) == 2
                 and not any(s.up for s in states.values()), 5 * PATIENCE,
                 "the edge to mark both nodes down")
        for name in scaleout.nodes:  # each node's AMI watch, opened before a freezes
            scaleout.ami(name)
        os.kill(frozen.pid, signal.SIGSTOP)
        try:
            landed = []
            for _ in range(3):
                call, node = call_through_edge(scaleout, citizen, timeout=20)
                assert call.status_code == 200, call.status_code
                landed.append(node)
                call.hangup()
                call.wait_disconnected(10)
        finally:
            os.kill(frozen.pid, signal.SIGCONT)
        assert landed == ["b"] * 3, landed
        assert not any(s.up for s in scaleout.states().values()), scaleout.states()
        log = scaleout.edge_log()
        assert "trying every node as a last resort" in log, log
        assert f"last resort: hotline node sip:{scaleout.node_address('a')} failed" in log, log
    finally:
        rpc(sock, "dispatcher.ping_active", [1])
    scaleout.wait_up("a", "b")


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
