"""``siaga up`` on a config with a topology: the parts of it this machine carries.

Each machine runs what has one of its addresses: the edge (Kamailio) when the edge's address
is local, and every node whose SIP address is local, each supervised (restarted with
back-off when it dies, stopped on SIGTERM). On one machine with loopback addresses that is
everything; on several, the same config and the same command on each machine.

The brain (:mod:`dispatcher.cluster`: one AMI connection per node, one merged live model,
the call log on PostgreSQL, the wallboard, API and metrics) runs beside the edge. It is
never needed for a call to reach an operator: each node's dialplan carries hotline calls on
its own (fail-open), and the edge keeps an operator to one call across nodes. A brain whose
database does not answer yet is retried with back-off while the edge and nodes run on.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable
from typing import Any

from twisted.application.service import MultiService
from twisted.logger import globalLogBeginner, textFileLogObserver

from dispatcher.config.model import Center
from dispatcher.heap import freeze_startup_heap
from dispatcher.logs import json_lines_observer
from dispatcher.topology import node_center, share_secrets

__all__ = ["is_local_address", "local_parts", "run_topology"]


def is_local_address(host: str) -> bool:
    """True when this machine has ``host`` (a socket can be bound to it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        try:
            s.bind((host, 0))
        except OSError:
            return False
    return True


def local_parts(center: Center, is_local: Callable[[str], bool] = is_local_address
                ) -> tuple[bool, list[str]]:
    """Whether the edge runs here, and the names of the nodes that do."""
    assert center.topology is not None
    topo = center.topology
    return is_local(topo.edge.host), [n.name for n in topo.nodes if is_local(n.sip_host)]


def start_brain(center: Center, install: Any, asterisks: dict[str, Any],  # noqa: ANN401
                services: MultiService, reactor: Any) -> str:  # noqa: ANN401
    """Add the brain over every node to ``services`` (after the nodes this machine runs, so
    it stops before them), started once its database answers; the line that says where it
    is."""
    from dispatcher.brain import BrainStarter, brain_prepared
    from dispatcher.credentials import ensure_credentials

    starter = BrainStarter(reactor, brain_prepared(center, install,
                                                   ensure_credentials(center)), asterisks)
    starter.setName("brain-starter")
    starter.setServiceParent(services)
    http = center.http
    return (f"  brain: AMI to {len(center.topology.nodes) if center.topology else 0} nodes, "
            f"call log {center.database_url.split('@')[-1]} (started once it answers), "
            f"wallboard http://{http.host}:{http.port}/wallboard")


def run_topology(center: Center, rootfs: str | None = None, log_format: str = "text") -> int:
    """Start the local parts of the topology and run until SIGINT/SIGTERM; the exit code."""
    from twisted.internet import reactor

    from dispatcher.app import prepare
    from dispatcher.topology import prepare_edge
    from pbx.asterisk import AsteriskService, stale_pid
    from pbx.kamailio import EdgeError, KamailioService
    from pbx.provision import ProvisionError, ready

    assert center.topology is not None
    os.umask(0o077)
    edge_here, nodes_here = local_parts(center)
    if not edge_here and not nodes_here:
        print(f"siaga: none of the topology's addresses is on this machine (edge "
              f"{center.topology.edge.host}, nodes "
              f"{', '.join(n.sip_host for n in center.topology.nodes)})", file=sys.stderr)
        return 1
    services = MultiService()
    lines = []
    asterisks: dict[str, AsteriskService] = {}
    install = None
    if nodes_here:
        try:
            install = ready(rootfs)
        except ProvisionError as exc:
            print(f"siaga: {exc}", file=sys.stderr)
            return 1
        for name in nodes_here:
            node = center.topology.node(name)
            nc = node_center(center, node)
            share_secrets(center, nc)
            prepared = prepare(nc, install)
            asterisks[name] = AsteriskService(
                reactor, reactor, install, prepared.asterisk_conf, prepared.asterisk_binds,
                prepared.asterisk_out, adopt_pid=stale_pid(nc.run_dir / "run"))
            asterisks[name].setName(f"node-{name}")
            asterisks[name].setServiceParent(services)
            lines.append(f"  node {name}: SIP {node.sip_host}:{node.sip_port}, "
                         f"AMI {node.ami_host}:{node.ami_port}, files in {nc.state_dir}")
    if edge_here:
        try:
            edge = prepare_edge(center)
        except EdgeError as exc:
            print(f"siaga: {exc}", file=sys.stderr)
            return 1
        KamailioService(reactor, reactor, edge).setServiceParent(services)
        topo = center.topology
        lines.insert(0, f"  edge: SIP {topo.edge.host}:{topo.edge.port} (citizens call "
                        f"here), log {edge.out_path}")
        brain_line = start_brain(center, install, asterisks, services, reactor)
        lines.append(brain_line)

    observer = (json_lines_observer(sys.stdout) if log_format == "json"
                else textFileLogObserver(sys.stdout))
    globalLogBeginner.beginLoggingTo([observer])
    reactor.addSystemEventTrigger("before", "shutdown", services.stopService)

    def started() -> None:
        services.startService()
        print(f"{center.name}: scale-out parts on this machine\n" + "\n".join(lines)
              + "\nStop with Ctrl-C.", flush=True)
        freeze_startup_heap()

    reactor.callWhenRunning(started)
    reactor.run()
    return 0
