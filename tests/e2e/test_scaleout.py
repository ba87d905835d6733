"""Scale-out on one machine: the SIP edge (Kamailio) in front of two real Asterisk nodes.

Isolation: each node runs on its own loopback address (127.0.0.x) with its own ports and its
own state directory under the center's; the edge has an address of its own. Loopback
addresses need no privileges, no network namespaces and no veth pairs, every process here
(pjsua2 phones on 127.0.0.1 included) reaches every other, and a node's identity to the
others is its address, as on separate machines: the nodes tell the edge from a stranger by
its address alone. A network namespace would also isolate a node's failure of the network,
which this test does not need: a node is lost by ``kill -9``.

Operators register directly at each node in this version (staff registration through the
edge is to come): operator 1 at node a, operator 2 at node b.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from dispatcher.app import prepare
from dispatcher.config import Center, load_center
from dispatcher.topology import EDGE_SOURCE_HEADER, node_center, share_secrets
from pbx.kamailio import EdgeError, NodeState, PreparedEdge, node_states, prepare_edge
from pbx.phone.phone import Call, Phone
from pbx.provision import AsteriskInstall
from tests.e2e.hotline_helpers import getvar
from tests.harness import EXAMPLE_CONFIG, PATIENCE, AmiWatch, RunningAsterisk, wait_for
from tests.phones import PhoneFactory

pytestmark = pytest.mark.asterisk

EDGE_HOST = "127.0.0.10"
NODE_HOSTS = {"a": "127.0.0.11", "b": "127.0.0.12"}
# The edge's defaults (dispatcher.topology.Edge): a ping a second, a node silent for 1 s is
# given up.
FAILOVER_GOAL_S = 5.0


def free_port_at(host: str, kind: int) -> int:
    """A port nobody uses on ``host`` right now."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def write_topology_config(path: Path) -> Path:
    """The example city with a topology: the edge and two nodes on their own addresses."""
    doc = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    doc["selftest"] = {**(doc.get("selftest") or {}), "enabled": False}
    # Never connected in this test (no brain runs): a topology requires the shared log.
    doc["database"] = {"url": "postgresql://siaga@127.0.0.1/siaga"}
    doc["topology"] = {
        "edge": {"bind": EDGE_HOST, "port": free_port_at(EDGE_HOST, socket.SOCK_DGRAM)},
        "nodes": [{"name": name,
                   "sip": {"bind": host, "port": free_port_at(host, socket.SOCK_DGRAM)},
                   "ami": {"bind": host, "port": free_port_at(host, socket.SOCK_STREAM)}}
                  for name, host in NODE_HOSTS.items()],
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    return path


@dataclass
class ScaleOut:
    """The edge and its nodes, running."""

    center: Center
    nodes: dict[str, RunningAsterisk]
    edge: PreparedEdge
    edge_proc: subprocess.Popen[bytes] | None = None
    watches: dict[str, AmiWatch] = field(default_factory=dict)

    @property
    def edge_address(self) -> str:
        """host:port citizens call."""
        assert self.center.topology is not None
        return f"{self.center.topology.edge.host}:{self.center.topology.edge.port}"

    def node_address(self, name: str) -> str:
        """host:port of a node's SIP transport."""
        return self.nodes[name].sip_address

    def start_edge(self) -> None:
        """Start Kamailio in the foreground, as the supervisor does."""
        out = self.edge.out_path.open("ab")
        self.edge_proc = subprocess.Popen(list(self.edge.argv), stdout=out,
                                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                          start_new_session=True)
        out.close()

    def edge_log(self) -> str:
        """What Kamailio printed."""
        return self.edge.out_path.read_text(errors="replace")[-3000:]

    def states(self) -> dict[str, NodeState]:
        """The nodes as the edge's dispatcher sees them ({} while it does not answer)."""
        if self.edge_proc is not None and self.edge_proc.poll() is not None:
            raise RuntimeError(f"Kamailio exited {self.edge_proc.returncode}:\n"
                               f"{self.edge_log()}")
        try:
            return {s.name: s for s in node_states(self.edge.paths.rpc_socket, timeout=1)}
        except EdgeError:  # not up yet, or busy
            return {}

    def wait_up(self, *names: str, timeout: float = 15.0) -> None:
        """Wait until the edge marks these nodes up."""
        def up() -> bool:
            states = self.states()
            return all(n in states and states[n].up for n in names)
        wait_for(up, timeout, f"the edge to mark {names} up (now {self.states()})")

    def ami(self, name: str) -> AmiWatch:
        """A watch on a node's AMI (reopened after the node restarted)."""
        watch = self.watches.get(name)
        if watch is None or watch.ended:
            watch = self.watches[name] = self.nodes[name].ami()
        return watch

    def hotline_channels(self, name: str) -> list[dict[str, str]]:
        """Citizens' channels (the anonymous endpoint: calls from the edge) on a node."""
        return [e for e in self.ami(name).matching("Newchannel")
                if e.get("Channel", "").startswith("PJSIP/anonymous-")]

    def stop(self) -> None:
        """Stop the edge and every node."""
        if self.edge_proc is not None and self.edge_proc.poll() is None:
            self.edge_proc.terminate()
            try:
                self.edge_proc.wait(10)
            except subprocess.TimeoutExpired:
                self.edge_proc.kill()
                self.edge_proc.wait(5)
        for node in self.nodes.values():
            node.stop()


@pytest.fixture(scope="module")
def scaleout(tmp_path_factory: pytest.TempPathFactory,
             asterisk_install: AsteriskInstall) -> Iterator[ScaleOut]:
    """Two Asterisk nodes and the edge in front of them, for this module's tests."""
    folder = tmp_path_factory.mktemp("scaleout")
    center = load_center(write_topology_config(folder / "center.yaml"), folder / "state")
    assert center.topology is not None
    nodes: dict[str, RunningAsterisk] = {}
    for node in center.topology.nodes:
        nc = node_center(center, node)
        share_secrets(center, nc)
        nodes[node.name] = RunningAsterisk(prepare(nc, asterisk_install))
    running = ScaleOut(center, nodes, prepare_edge(center))
    try:
        for node in nodes.values():
            node.start()
        running.start_edge()
        running.wait_up(*nodes)
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


def test_given_two_nodes_when_citizens_call_the_edge_then_calls_land_on_both_and_reach_operators(
        scaleout: ScaleOut, phones: PhoneFactory) -> None:
    """Hotline calls at the edge are spread over both nodes; on each the IVR answers and the
    node's operator is rung and talks with the citizen; the node learns the citizen's own
    address from the edge (not a forged one from the caller)."""
    ops = {"a": phones.extension(phones.directory.operator(1).user,
                                 phones.directory.operator(1).password,
                                 server=scaleout.node_address("a"), name="operator-a"),
           "b": phones.extension(phones.directory.operator(2).user,
                                 phones.directory.operator(2).password,
                                 server=scaleout.node_address("b"), name="operator-b")}
    citizen = phones.citizen()
    seen: set[str] = set()
    for attempt in range(4):
        forged = {EDGE_SOURCE_HEADER: "203.0.113.9:5060"} if attempt == 0 else {}
        call, node = call_through_edge(scaleout, citizen, **forged)
        channel = scaleout.hotline_channels(node)[-1]["Channel"]
        assert getvar(scaleout.ami(node), channel, "SIAGA_FROM") == f"127.0.0.1:{citizen.port}"
        if node not in seen:
            call.send_dtmf("1")  # an agency's key: straight to the queue
            op_call = ops[node].answer(15)
            if not seen:
                heard = phones.two_way_audio(call, op_call)
                assert heard.both, heard
            seen.add(node)
        call.hangup()
        call.wait_disconnected(10)
        if seen == set(scaleout.nodes):
            break
    assert seen == {"a", "b"}


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


def test_given_a_node_killed_when_citizens_call_then_the_survivor_takes_them_and_the_node_rejoins(
        scaleout: ScaleOut, phones: PhoneFactory) -> None:
    """kill -9 node a: every call placed from then on is answered (by b); once the edge has
    marked a down, no call even tries it. Node a restarted: the edge sees it and sends it
    calls again, nothing else restarted."""
    citizen = phones.citizen()
    scaleout.wait_up("a", "b")
    victim = scaleout.nodes["a"]
    assert victim.proc is not None
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
    back = []
    for _ in range(4):
        call, node = call_through_edge(scaleout, citizen)
        back.append(node)
        call.hangup()
        call.wait_disconnected(10)
        if node == "a":
            break
    assert "a" in back, back
