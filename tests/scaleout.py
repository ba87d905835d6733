"""Two Asterisk nodes and the SIP edge (Kamailio) in front of them, on one machine.

Isolation: each node runs on its own loopback address (127.0.0.x) with its own ports and its
own state directory under the center's; the edge has an address of its own. Each pytest-xdist
worker has its own addresses (see :func:`_worker_base`). Loopback
addresses need no privileges, no network namespaces and no veth pairs, every process here
(pjsua2 phones on 127.0.0.1 included) reaches every other, and a node knows the edge from a
stranger by its address alone, as on separate machines. A network namespace would also
isolate a node's network failure, which the tests do not need: a node is lost by kill -9.

Used by tests/e2e/test_scaleout.py and benchmarks/scaleout.py.
"""

from __future__ import annotations

import os
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from dispatcher.app import prepare
from dispatcher.config.loader import load_center
from dispatcher.config.model import Center
from dispatcher.topology import node_center, prepare_edge, share_secrets
from pbx.kamailio import EdgeError, NodeState, PreparedEdge, node_states
from pbx.provision import AsteriskInstall
from tests import ports
from tests.harness import EXAMPLE_CONFIG, AmiWatch, RunningAsterisk, wait_for


def _worker_base() -> int:
    """The last octet of the edge's address: 10 in a plain run (and the benchmarks), 20, 30..
    in pytest-xdist worker gw0, gw1..; so two workers' topologies never share an address
    (a node tells the edge from a stranger by its address alone)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    return 20 + 10 * int(worker[2:]) if worker.startswith("gw") else 10


EDGE_HOST = f"127.0.0.{_worker_base()}"
NODE_HOSTS = {"a": f"127.0.0.{_worker_base() + 1}", "b": f"127.0.0.{_worker_base() + 2}"}
# Requests from one source address in the edge's flood window (``topology.edge.flood``):
# above the default, so a test's quick succession of calls from the phones' one address is
# not taken for a flood; a real flood (hundreds) still is.
TEST_FLOOD_REQUESTS = 60


def free_port_at(host: str, kind: int) -> int:
    """A port on ``host`` for a server about to start (see :mod:`tests.ports`)."""
    return ports.free_port(kind, host)


def write_topology_config(path: Path, flood_requests: int = TEST_FLOOD_REQUESTS,
                          database_url: str = "postgresql://siaga@127.0.0.1:1/siaga",
                          sections: dict[str, object] | None = None) -> Path:
    """The example city with a topology: the edge and two nodes on their own addresses.

    ``database_url``: the brain's call log (``siaga up`` runs the brain beside the edge).
    The default reaches no server: a topology requires PostgreSQL, and tests that start
    the nodes themselves run no brain. The console listens on a free port of its own.
    ``sections`` change the example as :func:`tests.harness.write_test_config`'s do (the
    capacity benchmark's desks and queue).
    """
    doc = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    for name, value in (sections or {}).items():
        old = doc.get(name)
        doc[name] = {**old, **value} if isinstance(old, dict) and isinstance(value, dict) \
            else value
    doc["selftest"] = {**(doc.get("selftest") or {}), "enabled": False}
    doc["database"] = {"url": database_url}
    doc["http"] = {**(doc.get("http") or {}), "bind": "127.0.0.1",
                   "port": free_port_at("127.0.0.1", socket.SOCK_STREAM)}
    doc["topology"] = {
        "edge": {"bind": EDGE_HOST, "port": free_port_at(EDGE_HOST, socket.SOCK_DGRAM),
                 "flood": {"requests": flood_requests, "seconds": 2}},
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
        # Its argv starts with setsid: Kamailio leads a session of its own.
        self.edge_proc = subprocess.Popen(list(self.edge.argv), stdout=out,
                                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        out.close()

    def edge_log(self) -> str:
        """What Kamailio printed."""
        return self.edge.out_path.read_text(errors="replace")[-3000:]

    def desk_dialogs(self) -> int:
        """The operators' calls the edge holds now (its dialog module tracks those only:
        each one makes its desk busy for every node)."""
        from pbx.kamailio import rpc

        stats = rpc(self.edge.paths.rpc_socket, "stats.get_statistics",
                    ["dialog:"], timeout=2)
        for item in stats if isinstance(stats, list) else []:
            name, _, value = str(item).partition(" = ")
            if name == "dialog:active_dialogs":
                return int(value)
        raise RuntimeError(f"no active_dialogs in the edge's statistics: {stats!r}")

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


def start_scaleout(folder: Path, install: AsteriskInstall, **config: object) -> ScaleOut:
    """Render the example city's topology in ``folder``, start both nodes and the edge, and
    wait until the edge sees both nodes up. Stopped with :meth:`ScaleOut.stop`."""
    center = load_center(write_topology_config(folder / "center.yaml", **config),
                         folder / "state")
    assert center.topology is not None
    nodes: dict[str, RunningAsterisk] = {}
    for node in center.topology.nodes:
        nc = node_center(center, node)
        share_secrets(center, nc)
        nodes[node.name] = RunningAsterisk(prepare(nc, install))
    running = ScaleOut(center, nodes, prepare_edge(center))
    try:
        for node in nodes.values():
            node.start()
        running.start_edge()
        running.wait_up(*nodes)
    except BaseException:
        running.stop()
        raise
    return running
