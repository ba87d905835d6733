"""Render the SIP edge's configuration (Kamailio) from the center's topology.

Like the Asterisk files (:mod:`dialplans.render`): same config in, byte-identical files out,
never edited by hand.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from jinja2 import Environment, PackageLoader, StrictUndefined

from dialplans.contract import EDGE_SOURCE_HEADER

if TYPE_CHECKING:
    from dispatcher.config import Center
    from dispatcher.credentials import Credentials
    from pbx.kamailio import EdgePaths

EDGE_FILES = ("kamailio.cfg", "dispatcher.list")
# Kamailio's worker processes for UDP: two keep a slow request from holding up the others.
EDGE_CHILDREN = 2


def hotline_pattern(center: Center) -> str:
    """A regular expression matching exactly the hotline numbers (digits only: no escaping)."""
    return "^(" + "|".join(re.escape(n) for n in center.hotline) + ")$"


def render_edge(center: Center, paths: EdgePaths) -> dict[str, str]:
    """kamailio.cfg and dispatcher.list, by file name (the center must have a topology)."""
    if center.topology is None:
        raise ValueError("the center has no topology: there is no edge to render")
    env = Environment(loader=PackageLoader("dialplans", "templates"),
                      undefined=StrictUndefined, keep_trailing_newline=True,
                      trim_blocks=True, lstrip_blocks=True, autoescape=False)
    edge = center.topology.edge
    ctx = {
        "center": center,
        "edge": _EdgeView(edge.host, edge.port, edge.ping_seconds, edge.node_timeout_ms,
                          edge.flood_requests, edge.flood_seconds, EDGE_CHILDREN),
        "nodes": center.topology.nodes,
        "paths": paths,
        "hotline_re": hotline_pattern(center),
        "source_header": EDGE_SOURCE_HEADER,
        "trunk_ip": _trunk_ip(center),
        "ping_user": center.hotline[0],
    }
    return {name: env.get_template(name + ".j2").render(**ctx) for name in EDGE_FILES}


def _trunk_ip(center: Center) -> str | None:
    """The trunk's address when it is an IP address (a name is not known to the edge)."""
    if center.trunk is None:
        return None
    try:
        return str(ipaddress.ip_address(center.trunk.host))
    except ValueError:
        return None


@dataclass(frozen=True)
class _EdgeView:
    host: str
    port: int
    ping_seconds: int
    node_timeout_ms: int
    flood_requests: int
    flood_seconds: int
    children: int


def render_topology(center: Center, creds: Credentials, moddir: str, datadir: str
                    ) -> dict[str, dict[str, str]]:
    """Every file of a topology, by folder: ``edge`` (Kamailio's) and one folder per node
    (that node's Asterisk configuration, rendered with the center's secrets)."""
    from dialplans.render import AsteriskPaths, render_all
    from dispatcher.topology import edge_paths, node_center

    if center.topology is None:
        raise ValueError("the center has no topology: there is no edge to render")
    out = {"edge": render_edge(center, edge_paths(center))}
    for node in center.topology.nodes:
        nc = node_center(center, node)
        out[f"node-{node.name}"] = render_all(
            nc, creds, AsteriskPaths.for_center(nc, moddir, datadir))
    return out
