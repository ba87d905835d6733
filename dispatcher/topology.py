"""The ``topology`` section: a SIP edge (Kamailio) in front of several Asterisk nodes.

Without the section the center is one Asterisk, as ever. With it, citizens and trunks call the
edge; the edge's ``dispatcher`` spreads hotline calls over the nodes it finds answering its
OPTIONS pings, and moves a call to another node when one does not answer. Every node runs the
whole center's dialplan (fail-open holds per node) on its own SIP and AMI address.

Parsing lives here, not in config.py, like the self-test's section; a bad value raises
:class:`~dispatcher.yamlnodes.ConfigError` naming the file, the line and the key.
"""

from __future__ import annotations

import ipaddress
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from dialplans import contract
from dispatcher.yamlnodes import Section, Value

if TYPE_CHECKING:
    from dispatcher.config.model import Center, Endpoint
    from pbx.kamailio import EdgePaths, PreparedEdge

__all__ = [
    "EDGE_SOURCE_HEADER",
    "TOPOLOGY_KEYS",
    "Edge",
    "Node",
    "Topology",
    "node_center",
    "parse_topology",
]

TOPOLOGY_KEYS = {"edge", "nodes", "brain"}
# The header with the citizen's own address, set by the edge (defined with the dialplan's
# other shared names).
EDGE_SOURCE_HEADER = contract.EDGE_SOURCE_HEADER
NODE_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,15}$")


@dataclass(frozen=True)
class Edge:
    """The SIP proxy citizens and trunks call, and how it watches the nodes.

    ``ping_seconds``: the interval of its OPTIONS keepalives to each node.
    ``node_timeout_ms``: how long a node may stay silent (no 100 Trying, no reply to a ping)
    before the call is moved to another node and the node is marked down.
    ``flood_requests`` per ``flood_seconds`` from one address: more is dropped (pike).
    """

    host: str
    port: int
    ping_seconds: int = 1
    node_timeout_ms: int = 1000
    flood_requests: int = 30
    flood_seconds: int = 2


@dataclass(frozen=True)
class Node:
    """One Asterisk node: its name, SIP transport and manager interface."""

    name: str
    sip_host: str
    sip_port: int
    ami_host: str
    ami_port: int

    @property
    def sip_uri(self) -> str:
        """Where the edge sends this node's calls and pings."""
        return f"sip:{self.sip_host}:{self.sip_port}"


@dataclass(frozen=True)
class Topology:
    """The edge and two or more nodes.

    ``brain_from``: the address the brain (which runs on the edge's machine) reaches the
    nodes' manager interfaces from; each node's AMI admits it beside loopback. By default
    the edge's own address.
    """

    edge: Edge
    nodes: tuple[Node, ...]
    brain_from: str = ""

    @property
    def brain_address(self) -> str:
        """Where the brain's AMI connections come from."""
        return self.brain_from or self.edge.host

    def node(self, name: str) -> Node:
        """The node with this name."""
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)


def _address(sec: Section, key: str, default: str | None = None) -> str:
    host = sec.text(key, default)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise sec.get(key).error(f"must be an IP address, got {host!r}") from None
    if host in ("0.0.0.0", "::"):
        # The nodes identify the edge by its address, and the edge pings from it: it must
        # be one address, not every one.
        raise sec.get(key).error("must be one address the others reach, not a wildcard")
    return host


def parse_topology(sec: Section, database_url: str, database: Value,
                   transport: str = "udp", transport_value: Value | None = None
                   ) -> Topology | None:
    """The ``topology`` section, or None when absent (the single-node center).

    ``database_url`` is the center's ``database.url`` (``database`` its config value): the
    nodes' calls are logged in one database every brain reaches, so it must be PostgreSQL.
    ``transport`` is ``sip.transport``: the edge speaks UDP to the nodes, so theirs is UDP.
    """
    if sec.value.missing:
        return None
    if transport != "udp":
        where = transport_value if transport_value is not None else sec.value
        raise where.error("must be udp with a topology: the edge reaches the nodes over UDP")
    if not database_url.startswith("postgresql"):
        where = database if not database.missing else sec.value
        raise where.error(
            "a topology of several nodes needs database.url to be a postgresql:// URL "
            "(one call log for every node)")

    edge_sec = sec.section("edge", {"bind", "port", "ping_seconds", "node_timeout_ms",
                                    "flood"})
    if edge_sec.value.missing:
        raise edge_sec.value.error("is required: the SIP proxy's address citizens call")
    flood = edge_sec.section("flood", {"requests", "seconds"})
    edge = Edge(
        host=_address(edge_sec, "bind"),
        port=edge_sec.integer("port", 5060, lo=1, hi=65535),
        ping_seconds=edge_sec.integer("ping_seconds", Edge.ping_seconds, lo=1, hi=60),
        node_timeout_ms=edge_sec.integer("node_timeout_ms", Edge.node_timeout_ms,
                                         lo=200, hi=30_000),
        flood_requests=flood.integer("requests", Edge.flood_requests, lo=2, hi=100_000),
        flood_seconds=flood.integer("seconds", Edge.flood_seconds, lo=1, hi=600),
    )

    nodes_v = sec.get("nodes")
    if nodes_v.missing:
        raise nodes_v.error("is required: two or more Asterisk nodes")
    taken: dict[tuple[str, int], str] = {(edge.host, edge.port): "the edge's SIP port"}
    nodes: list[Node] = []
    for item in nodes_v.items():
        node_sec = Section(item, {"name", "sip", "ami"})
        name_v = node_sec.get("name")
        name = node_sec.text("name", max_len=16)
        if not NODE_NAME_RE.match(name):
            raise name_v.error(
                f"must be 1 to 16 lowercase letters, digits or '-', starting with a letter, "
                f"got {name!r}")
        if any(n.name == name for n in nodes):
            raise name_v.error(f"node {name} is configured twice")
        sip = node_sec.section("sip", {"bind", "port"})
        if sip.value.missing:
            raise sip.value.error("is required: the node's SIP address and port")
        sip_host = _address(sip, "bind")
        sip_port = sip.integer("port", 5060, lo=1, hi=65535)
        ami = node_sec.section("ami", {"bind", "port"})
        if ami.value.missing:
            raise ami.value.error("is required: the node's manager interface")
        ami_host = _address(ami, "bind")
        if not ipaddress.ip_address(ami_host).is_private:
            # AMI is clear text with a password: a private network only (loopback, a LAN
            # between the nodes and the brain, a VPN).
            raise ami.get("bind").error(
                "must be a loopback or private address: the manager interface is never "
                "exposed to the public network")
        ami_port = ami.integer("port", 5038, lo=1, hi=65535)
        for key, sub, where in (("sip", sip, (sip_host, sip_port)),
                                ("ami", ami, (ami_host, ami_port))):
            if where in taken:
                raise sub.get("port").error(
                    f"{where[0]}:{where[1]} is already {taken[where]}")
            taken[where] = f"node {name}'s {key.upper()} port"
        nodes.append(Node(name, sip_host, sip_port, ami_host, ami_port))
    if len(nodes) < 2:
        raise nodes_v.error("needs two or more nodes (one node needs no topology section)")
    brain = sec.section("brain", {"ami_from"})
    brain_from = ""
    if not brain.value.missing:
        brain_from = _address(brain, "ami_from")
        if not ipaddress.ip_address(brain_from).is_private:
            raise brain.get("ami_from").error(
                "must be a loopback or private address: the nodes' manager interfaces are "
                "never reached over the public network")
    return Topology(edge, tuple(nodes), brain_from)


def node_state_dir(center: Center, node: Node) -> Path:
    """Where one node's generated files, runtime files and recordings live."""
    return center.state_dir / "nodes" / node.name


def edge_dir(center: Center) -> Path:
    """Where the edge's generated configuration and runtime files live."""
    return center.state_dir / "edge"


def node_center(center: Center, node: Node) -> Center:
    """The center as one node renders and runs it: the node's SIP and AMI addresses, its own
    state directory, and ``node`` set (its pjsip then takes hotline calls from the edge only).
    """
    from dispatcher.config.model import Endpoint

    return center.with_overrides(
        sip=Endpoint(node.sip_host, node.sip_port),
        ami=Endpoint(node.ami_host, node.ami_port),
        state_dir=node_state_dir(center, node),
        node=node,
    )


def share_secrets(center: Center, node: Center) -> None:
    """Give a node the center's secrets (every node knows every phone's password and the
    brain's AMI secret). Generated once in the center's state directory, copied as they are.
    """
    from dispatcher.credentials import FILE_NAME, ensure_credentials
    from pbx.privilege import PRIVATE_DIR, private_file

    center.state_dir.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    ensure_credentials(center)
    node.state_dir.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    target = node.state_dir / FILE_NAME
    private_file(target)
    shutil.copyfile(center.state_dir / FILE_NAME, target)


def edge_paths(center: Center) -> EdgePaths:
    """The edge's files under the center's state directory."""
    from pbx.kamailio import EdgePaths

    return EdgePaths.under(edge_dir(center))


def prepare_edge(center: Center, binary: str | None = None) -> PreparedEdge:
    """Render kamailio.cfg, the node list and the staff passwords (root's: 0640), and make
    the runtime directory."""
    from dialplans.edge import render_edge
    from dialplans.render import write_config
    from dispatcher.credentials import ensure_credentials
    from pbx.kamailio import prepare_runtime
    from pbx.privilege import PRIVATE_DIR

    paths = edge_paths(center)
    paths.etc.parent.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    write_config(render_edge(center, paths, ensure_credentials(center)), paths.etc)
    return prepare_runtime(paths, binary)


def edge_endpoint(center: Center) -> Endpoint:
    """The edge's SIP address (the topology must be set)."""
    from dispatcher.config.model import Endpoint

    assert center.topology is not None
    return Endpoint(center.topology.edge.host, center.topology.edge.port)
