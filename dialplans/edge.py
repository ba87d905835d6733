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
    from dispatcher.config.model import Center
    from dispatcher.credentials import Credentials
    from pbx.kamailio import EdgePaths

EDGE_FILES = ("kamailio.cfg", "dispatcher.list", "staff.cfg")
# How often the edge pings each registered staff phone (one silent for three is removed).
STAFF_PING_SECONDS = 20
# The longest registration the edge grants: after an edge restart (registrations are in
# memory) every staff phone is back within this.
STAFF_REGISTER_SECONDS = 120
# A password goes into a quoted string of the edge's configuration: only characters that
# need no escaping there (the generated ones are URL-safe base64).
SAFE_PASSWORD_RE = re.compile(r"^[A-Za-z0-9_.~+/=-]{8,128}$")
# An operator's call through the edge is pinged in-dialog this often (a call whose end was
# never seen frees the desk after two unanswered pings), and lasts at most this long.
# (Kamailio's dialog module takes no interval under 30 s.)
DESK_KEEPALIVE_SECONDS = 30
DESK_MAX_CALL_SECONDS = 6 * 3600
# When every node is marked down, the edge still tries each in turn (its last resort), and
# waits this many node timeouts for each one's 100 Trying: it was marked down for being slow.
LAST_RESORT_TIMEOUTS = 4
# Kamailio's worker processes for UDP: two keep a slow request from holding up the others.
EDGE_CHILDREN = 2


def hotline_pattern(center: Center) -> str:
    """A regular expression matching exactly the hotline numbers (digits only: no escaping)."""
    return "^(" + "|".join(re.escape(n) for n in center.hotline) + ")$"


def staff_pattern(center: Center) -> str:
    """A regular expression matching exactly the staff phones' extensions."""
    return "^(" + "|".join(re.escape(e) for e in sorted(center.extensions())) + ")$"


def operator_pattern(center: Center) -> str:
    """A regular expression matching exactly the operators' extensions (one desk each)."""
    return "^(" + "|".join(re.escape(op.extension) for op in center.operators) + ")$"


def render_edge(center: Center, paths: EdgePaths, creds: Credentials) -> dict[str, str]:
    """kamailio.cfg, dispatcher.list and staff.cfg (the staff phones' passwords), by file
    name (the center must have a topology)."""
    if center.topology is None:
        raise ValueError("the center has no topology: there is no edge to render")
    staff = sorted(center.extensions())
    for ext in staff:
        if not SAFE_PASSWORD_RE.match(creds.password(ext)):
            raise ValueError(f"the SIP password of {ext} in the center's secrets has "
                             "characters the edge's configuration cannot hold: delete it "
                             "from secrets.yaml to have a new one generated")
    env = Environment(loader=PackageLoader("dialplans", "templates"),
                      undefined=StrictUndefined, keep_trailing_newline=True,
                      trim_blocks=True, lstrip_blocks=True, autoescape=False)
    edge = center.topology.edge
    ctx = {
        "center": center,
        "edge": _EdgeView(edge.host, edge.port, edge.ping_seconds, edge.node_timeout_ms,
                          edge.flood_requests, edge.flood_seconds, EDGE_CHILDREN,
                          STAFF_PING_SECONDS, STAFF_REGISTER_SECONDS,
                          LAST_RESORT_TIMEOUTS * edge.node_timeout_ms),
        "nodes": center.topology.nodes,
        "paths": paths,
        "hotline_re": hotline_pattern(center),
        "source_header": EDGE_SOURCE_HEADER,
        "trunk_ip": _trunk_ip(center),
        "ping_user": center.hotline[0],
        "staff": staff,
        "staff_re": staff_pattern(center),
        "operator_re": operator_pattern(center),
        "desk": _DeskView(DESK_KEEPALIVE_SECONDS, DESK_MAX_CALL_SECONDS),
        "creds": creds,
        "security": center.security,
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
    staff_ping_seconds: int
    staff_register_seconds: int
    last_resort_timeout_ms: int


@dataclass(frozen=True)
class _DeskView:
    keepalive_seconds: int
    max_call_seconds: int


def render_topology(center: Center, creds: Credentials, moddir: str, datadir: str
                    ) -> dict[str, dict[str, str]]:
    """Every file of a topology, by folder: ``edge`` (Kamailio's) and one folder per node
    (that node's Asterisk configuration, rendered with the center's secrets)."""
    from dialplans.render import AsteriskPaths, render_all
    from dispatcher.topology import edge_paths, node_center

    if center.topology is None:
        raise ValueError("the center has no topology: there is no edge to render")
    out = {"edge": render_edge(center, edge_paths(center), creds)}
    for node in center.topology.nodes:
        nc = node_center(center, node)
        out[f"node-{node.name}"] = render_all(
            nc, creds, AsteriskPaths.for_center(nc, moddir, datadir))
    return out
