"""The ``topology`` section: an edge and its nodes, every mistake named with file, line and
key; what ``siaga render`` makes of it (kamailio.cfg, each node's Asterisk files)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from dialplans.edge import hotline_pattern, render_edge
from dialplans.render import AsteriskPaths, render_all, write_config
from dispatcher.cli import main
from dispatcher.config.loader import load_center
from dispatcher.credentials import ensure_credentials
from dispatcher.topology import (
    EDGE_SOURCE_HEADER,
    Edge,
    edge_paths,
    node_center,
    node_state_dir,
    share_secrets,
)
from dispatcher.yamlnodes import ConfigError
from pbx.kamailio import EdgePaths
from tests.harness import EXAMPLE_CONFIG

TOPOLOGY = """
topology:
  edge:
    bind: 10.0.0.5
    port: 5060
  nodes:
    - name: a
      sip: {bind: 10.0.0.11, port: 5060}
      ami: {bind: 10.0.0.11, port: 5038}
    - name: b
      sip: {bind: 10.0.0.12, port: 5060}
      ami: {bind: 10.0.0.12, port: 5038}
"""
POSTGRES = '"postgresql://siaga@10.0.0.20/siaga"'


def config(tmp_path: Path, topology: str = TOPOLOGY, database: str = POSTGRES) -> Path:
    """The example city with its database.url set and a topology section appended."""
    text = EXAMPLE_CONFIG.read_text()
    assert text.count("\n  url: null\n") == 1  # the example keeps the default SQLite
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "center.yaml"
    path.write_text(text.replace("\n  url: null\n", f"\n  url: {database}\n") + topology)
    return path


def line_of(path: Path, needle: str, after: str = "topology:") -> int:
    """The line of ``needle``'s last appearance after the line holding ``after`` (a clash is
    reported where it is met the second time)."""
    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(after))
    found = [i + 1 for i in range(start, len(lines)) if needle in lines[i]]
    assert found, needle
    return found[-1]


def test_given_no_topology_when_loaded_then_the_center_is_one_node(tmp_path: Path) -> None:
    """The single-node center stays the default: no topology, no node."""
    center = load_center(EXAMPLE_CONFIG, state_dir=tmp_path)
    assert center.topology is None and center.node is None


def test_given_a_topology_when_loaded_then_edge_and_nodes_are_read(tmp_path: Path) -> None:
    """Edge address, the keepalive defaults, and each node's SIP and AMI addresses."""
    center = load_center(config(tmp_path), state_dir=tmp_path / "s")
    topo = center.topology
    assert topo is not None
    assert (topo.edge.host, topo.edge.port) == ("10.0.0.5", 5060)
    assert (topo.edge.ping_seconds, topo.edge.node_timeout_ms) == (Edge.ping_seconds,
                                                                   Edge.node_timeout_ms)
    assert [(n.name, n.sip_uri, n.ami_host, n.ami_port) for n in topo.nodes] == [
        ("a", "sip:10.0.0.11:5060", "10.0.0.11", 5038),
        ("b", "sip:10.0.0.12:5060", "10.0.0.12", 5038)]


@pytest.mark.parametrize(("old", "new", "needle", "key", "reason"), [
    ("- name: b\n      sip: {bind: 10.0.0.12, port: 5060}",
     "- name: b\n      sip: {bind: 10.0.0.11, port: 5060}",
     "sip: {bind: 10.0.0.11, port: 5060}", "topology.nodes[1].sip.port",
     "10.0.0.11:5060 is already node a's SIP port"),
    ("- name: b", "- name: a", "- name: a", "topology.nodes[1].name",
     "node a is configured twice"),
    ("- name: b", "- name: B!", "- name: B!", "topology.nodes[1].name", "lowercase"),
    ("bind: 10.0.0.5", "bind: edge.example", "bind: edge.example", "topology.edge.bind",
     "must be an IP address"),
    ("bind: 10.0.0.5", "bind: 0.0.0.0", "bind: 0.0.0.0", "topology.edge.bind",
     "not a wildcard"),
    ("ami: {bind: 10.0.0.12, port: 5038}", "ami: {bind: 1.2.3.4, port: 5038}",
     "ami: {bind: 1.2.3.4", "topology.nodes[1].ami.bind", "never exposed"),
    ("    port: 5060\n  nodes:", "    port: 5060\n    ping_seconds: 0\n  nodes:",
     "ping_seconds: 0", "topology.edge.ping_seconds", "between 1 and 60"),
    ("  nodes:", "  nodez:", "nodez:", "topology.nodez", "unknown key"),
])
def test_given_a_bad_topology_value_when_loaded_then_error_names_file_line_and_key(
        tmp_path: Path, old: str, new: str, needle: str, key: str, reason: str) -> None:
    """Each mistake is reported with the file, its line and the key's path; nothing loads."""
    assert old in TOPOLOGY
    path = config(tmp_path, TOPOLOGY.replace(old, new, 1))
    with pytest.raises(ConfigError) as caught:
        load_center(path, state_dir=tmp_path / "s")
    err = caught.value
    assert err.file == "center.yaml"
    assert err.path == key
    assert reason in err.reason
    assert err.line == line_of(path, needle)


def test_given_one_node_when_loaded_then_two_are_asked_for(tmp_path: Path) -> None:
    """A topology of one node is a mistake: it needs no edge. The list is named."""
    one = TOPOLOGY.split("    - name: b")[0]
    path = config(tmp_path, one)
    with pytest.raises(ConfigError, match="two or more nodes") as caught:
        load_center(path, state_dir=tmp_path / "s")
    assert caught.value.path == "topology.nodes"
    assert caught.value.line == line_of(path, "- name: a")


def test_given_sqlite_when_a_topology_is_set_then_the_database_url_is_named(
        tmp_path: Path) -> None:
    """Several nodes log into one database every brain reaches: SQLite is refused, at its
    own line."""
    path = config(tmp_path, database='"sqlite:////tmp/x.db"')
    with pytest.raises(ConfigError, match="postgresql") as caught:
        load_center(path, state_dir=tmp_path / "s")
    assert caught.value.path == "database.url"
    assert caught.value.line == line_of(path, "sqlite:", after="database:")


def rendered_edge(tmp_path: Path) -> tuple[dict[str, str], EdgePaths]:
    center = load_center(config(tmp_path), state_dir=tmp_path / "s")
    paths = edge_paths(center)
    return render_edge(center, paths, ensure_credentials(center)), paths


def test_given_a_topology_when_the_edge_is_rendered_then_it_lists_the_nodes_and_guards(
        tmp_path: Path) -> None:
    """kamailio.cfg listens on the edge's address, pings the nodes, fails over, counts
    floods, record-routes; dispatcher.list holds every node in set 1."""
    files, paths = rendered_edge(tmp_path)
    cfg = files["kamailio.cfg"]
    assert "listen = udp:10.0.0.5:5060" in cfg
    assert f'modparam("dispatcher", "list_file", "{paths.dispatcher_list}")' in cfg
    assert 'modparam("dispatcher", "ds_ping_interval", 1)' in cfg
    assert 'modparam("tm", "fr_timer", 1000)' in cfg
    assert 't_on_failure("NODE_FAILED")' in cfg and "ds_next_dst()" in cfg
    # Every node marked down: the last resort still tries each node, waiting 4 node
    # timeouts for each (test_scaleout.py proves it with a frozen node).
    last_resort = cfg[cfg.index("route[LAST_RESORT_NEXT]"):]
    assert '$du = "sip:10.0.0.11:5060";' in last_resort
    assert '$du = "sip:10.0.0.12:5060";' in last_resort
    assert "t_set_fr(0, 4000);" in last_resort and " mod 2;" in last_resort
    assert "pike_check_req()" in cfg and "record_route()" in cfg
    # The caller's own copy of the source header is removed before the edge adds its own.
    assert cfg.index(f'remove_hf("{EDGE_SOURCE_HEADER}")') < cfg.index(
        f'append_hf("{EDGE_SOURCE_HEADER}: $si:$sp')
    assert files["dispatcher.list"].splitlines()[-2:] == [
        "1 sip:112@10.0.0.11:5060 9 0 duid=a", "1 sip:112@10.0.0.12:5060 9 0 duid=b"]


def test_given_the_hotline_numbers_when_the_pattern_is_made_then_only_they_match(
        tmp_path: Path) -> None:
    """The edge forwards exactly the hotline numbers: not a prefix, not a longer number."""
    center = load_center(config(tmp_path), state_dir=tmp_path / "s")
    pattern = re.compile(hotline_pattern(center))
    for number in center.hotline:
        assert pattern.match(number)
    for other in ("1", "1120", "0112", "11245x", "201", ""):
        assert not pattern.match(other), other


def test_given_a_node_when_rendered_then_it_takes_citizens_from_the_edge_only(
        tmp_path: Path) -> None:
    """A node's transport is its own address; citizens are identified by the edge's address;
    no anonymous identifier is loaded (loaded, it would be tried whatever the order says)."""
    center = load_center(config(tmp_path), state_dir=tmp_path / "s")
    assert center.topology is not None
    creds = ensure_credentials(center)
    node = node_center(center, center.topology.node("b"))
    files = render_all(node, creds, AsteriskPaths.for_center(node, "/mods", "/usr/share"))
    pjsip, modules = files["pjsip.conf"], files["modules.conf"]
    assert "bind = 10.0.0.12:5060" in pjsip
    assert "endpoint_identifier_order = ip,username\n" in pjsip
    assert "[anonymous-edge]\ntype = identify\nendpoint = anonymous\nmatch = 10.0.0.5\n" in pjsip
    assert "load => res_pjsip_endpoint_identifier_anonymous.so" not in modules
    assert "bindaddr = 10.0.0.12\nport = 5038" in files["manager.conf"]
    assert EDGE_SOURCE_HEADER in files["extensions.conf"]
    # The single-node center is unchanged.
    single = render_all(center, creds, AsteriskPaths.for_center(center, "/mods", "/usr/share"))
    assert "endpoint_identifier_order = username,ip,anonymous" in single["pjsip.conf"]
    assert "load => res_pjsip_endpoint_identifier_anonymous.so" in single["modules.conf"]
    assert EDGE_SOURCE_HEADER not in single["extensions.conf"]


def test_given_a_topology_when_rendered_then_staff_register_at_the_edge_only(
        tmp_path: Path) -> None:
    """The edge gets every account's password in its own file (none in kamailio.cfg), and
    registers exactly the center's extensions; a node's staff AORs are a contact at the
    edge, pinged, and refuse registrations of their own."""
    center = load_center(config(tmp_path), state_dir=tmp_path / "s")
    assert center.topology is not None
    creds = ensure_credentials(center)
    files = render_edge(center, edge_paths(center), creds)
    cfg, staff = files["kamailio.cfg"], files["staff.cfg"]
    assert f'include_file "{edge_paths(center).staff_file}"' in cfg
    for ext in center.extensions():
        assert f'case "{ext}":\n\t\t\t$var(password) = "{creds.password(ext)}";' in staff
        assert creds.password(ext) not in cfg
    pattern = re.search(r'\$rU =~ "([^"]+)"\) \{\n\t\troute\(TO_STAFF\)', cfg)
    assert pattern is not None
    assert {e for e in center.extensions() if re.match(pattern.group(1), e)} == set(
        center.extensions())
    assert not re.match(pattern.group(1), center.hotline[0])
    assert not re.match(pattern.group(1), "1" + sorted(center.extensions())[0])
    # Guessing passwords: the center's security settings, its staff networks exempt.
    sec = center.security
    assert f"autoexpire={sec.window_seconds};" in cfg and f"autoexpire={sec.block_seconds};" in cfg
    assert f"if ($sht(regfail=>$si) >= {sec.block_after}) {{" in cfg
    for net in sec.staff_networks:
        assert f'if (is_in_subnet("$si", "{net}")) {{\n\t\treturn 1;' in cfg
    node = node_center(center, center.topology.node("a"))
    pjsip = render_all(node, creds, AsteriskPaths.for_center(node, "/mods", "/usr/share")
                       )["pjsip.conf"]
    ext = center.operators[0].extension
    assert (f"max_contacts = 0\ncontact = sip:{ext}@10.0.0.5:5060\nqualify_frequency = "
            in pjsip)
    single = render_all(center, creds, AsteriskPaths.for_center(center, "/mods", "/usr/share")
                        )["pjsip.conf"]
    assert "max_contacts = 0" not in single and "@10.0.0.5" not in single


def test_given_a_topology_when_accounts_are_listed_then_phones_are_told_the_edge(
        tmp_path: Path) -> None:
    """`siaga accounts` tells staff phones to register at the edge, not at a node."""
    from dispatcher.cli import accounts_document

    center = load_center(config(tmp_path), state_dir=tmp_path / "s")
    doc = accounts_document(center, ensure_credentials(center))
    assert (doc["sip"]["host"], doc["sip"]["port"]) == ("10.0.0.5", 5060)


def test_given_a_password_with_quotes_when_the_edge_is_rendered_then_refused(
        tmp_path: Path) -> None:
    """A hand-edited secret that would break out of the edge's quoted string is refused
    by name, nothing written."""
    import dataclasses

    center = load_center(config(tmp_path), state_dir=tmp_path / "s")
    creds = ensure_credentials(center)
    ext = center.operators[0].extension
    bad = dataclasses.replace(creds, sip_passwords={**creds.sip_passwords,
                                                    ext: 'abcdefgh"; exit; #'})
    with pytest.raises(ValueError, match=f"password of {ext}"):
        render_edge(center, edge_paths(center), bad)


def test_given_nodes_when_secrets_are_shared_then_every_node_has_the_centers(
        tmp_path: Path) -> None:
    """Every node knows every phone's password and the brain's AMI secret: the same file."""
    center = load_center(config(tmp_path), state_dir=tmp_path / "s")
    assert center.topology is not None
    expected = ensure_credentials(center)
    for node in center.topology.nodes:
        nc = node_center(center, node)
        share_secrets(center, nc)
        assert nc.state_dir == node_state_dir(center, node)
        assert ensure_credentials(nc) == expected
        assert (nc.state_dir / "secrets.yaml").stat().st_mode & 0o077 == 0


def test_given_a_topology_when_siaga_render_runs_then_edge_and_node_folders_are_written(
        tmp_path: Path) -> None:
    """`siaga render` writes the edge's files and each node's, a folder each."""
    out = tmp_path / "out"
    assert main(["render", "--config", str(config(tmp_path)), "--state-dir",
                 str(tmp_path / "s"), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["edge", "node-a", "node-b"]
    assert (out / "edge" / "kamailio.cfg").read_text().startswith("#!KAMAILIO")
    assert "bind = 10.0.0.11:5060" in (out / "node-a" / "pjsip.conf").read_text()
    assert yaml.safe_load((tmp_path / "s" / "secrets.yaml").read_text())


def test_given_a_trunk_when_the_edge_is_rendered_then_its_address_is_never_a_flood(
        tmp_path: Path) -> None:
    """Every citizen of the public network arrives from the carrier's one address: pike
    must not count it (it would cut the whole public network at the flood limit)."""
    path = config(tmp_path)
    path.write_text(path.read_text() + "trunk:\n  host: 192.0.2.50\n  port: 5060\n")
    center = load_center(path, state_dir=tmp_path / "s")
    cfg = render_edge(center, edge_paths(center), ensure_credentials(center))["kamailio.cfg"]
    assert 'if (!ds_is_from_list("1") && src_ip != 192.0.2.50 && !pike_check_req()) {' in cfg
    plain, _ = rendered_edge(tmp_path / "plain")
    assert 'if (!ds_is_from_list("1") && !pike_check_req()) {' in plain["kamailio.cfg"]


@pytest.mark.skipif(shutil.which("kamailio", path="/usr/sbin:/usr/bin") is None,
                    reason="kamailio is not installed (make deb installs it)")
def test_given_a_rendered_edge_when_kamailio_checks_it_then_the_config_is_valid(
        tmp_path: Path) -> None:
    """Kamailio itself parses the generated kamailio.cfg (-c: check and exit), with and
    without a trunk."""
    path = config(tmp_path)
    path.write_text(path.read_text() + "trunk:\n  host: 192.0.2.50\n  port: 5060\n")
    for name, cfg_path in (("trunk", path), ("plain", config(tmp_path / "p"))):
        center = load_center(cfg_path, state_dir=tmp_path / name)
        paths = edge_paths(center)
        paths.runtime.mkdir(parents=True)
        write_config(render_edge(center, paths, ensure_credentials(center)), paths.etc)
        checked = subprocess.run(
            [shutil.which("kamailio", path="/usr/sbin:/usr/bin"), "-c", "-f",  # type: ignore[list-item]
             str(paths.config)], capture_output=True, text=True, timeout=30)
        assert checked.returncode == 0, checked.stderr[-2000:]


def test_given_a_machine_when_local_parts_are_chosen_then_only_its_addresses_run(
        tmp_path: Path) -> None:
    """On each machine siaga up runs the edge and the nodes whose addresses it has."""
    from dispatcher.topology_run import is_local_address, local_parts

    center = load_center(config(tmp_path), state_dir=tmp_path / "s")
    assert local_parts(center, lambda host: host == "10.0.0.12") == (False, ["b"])
    assert local_parts(center, lambda host: host in ("10.0.0.5", "10.0.0.11")) == (True, ["a"])
    assert is_local_address("127.0.0.1")
    assert not is_local_address("192.0.2.1")  # documentation range: never this machine's


def test_given_the_examples_commented_topology_when_uncommented_then_it_loads(
        tmp_path: Path) -> None:
    """The example config's topology block is a working one (docs that stay true)."""
    text = EXAMPLE_CONFIG.read_text()
    block = text[text.index("# topology:"):]
    uncommented = "\n".join(line[2:] if line.startswith("# ") else line
                            for line in block.splitlines())
    path = config(tmp_path, topology="\n" + uncommented + "\n")
    center = load_center(path, state_dir=tmp_path / "s")
    assert center.topology is not None
    assert [n.name for n in center.topology.nodes] == ["a", "b"]
    assert center.topology.edge.flood_requests == 30


def test_given_tcp_when_a_topology_is_set_then_sip_transport_is_named(tmp_path: Path) -> None:
    """The edge reaches the nodes over UDP: a center on TCP with a topology is refused at
    sip.transport's line."""
    path = config(tmp_path)
    text = path.read_text()
    assert text.count("  transport: udp\n") == 1
    path.write_text(text.replace("  transport: udp\n", "  transport: tcp\n"))
    with pytest.raises(ConfigError, match="udp") as caught:
        load_center(path, state_dir=tmp_path / "s")
    assert caught.value.path == "sip.transport"
    assert caught.value.line == line_of(path, "transport: tcp", after="sip:")


def test_given_nodes_when_rendered_then_each_names_its_calls_apart(tmp_path: Path) -> None:
    """Each node's asterisk.conf sets its own systemname (its uniqueids and linkedids then
    start with it: two nodes never share a journey's key); the single center sets none."""
    center = load_center(config(tmp_path), state_dir=tmp_path / "s")
    assert center.topology is not None
    creds = ensure_credentials(center)
    names = set()
    for node in center.topology.nodes:
        nc = node_center(center, node)
        conf = render_all(nc, creds, AsteriskPaths.for_center(nc, "/m", "/d"))["asterisk.conf"]
        found = re.findall(r"^systemname = (.+)$", conf, re.M)
        assert found == [node.name]
        names.add(found[0])
    assert len(names) == len(center.topology.nodes)
    single = render_all(center, creds, AsteriskPaths.for_center(center, "/m", "/d"))
    assert "systemname" not in single["asterisk.conf"].replace("; ", "")


def test_given_uniqueids_with_a_node_prefix_when_ordered_then_numerically() -> None:
    """A node's uniqueids (``a-<epoch>.<seq>``) order by their numbers, like a single
    center's."""
    from pbx.ami.entities import uniqueid_order

    ids = ["a-1700000000.10", "a-1700000000.9", "a-1699999999.99", "node-b-1700000001.1"]
    assert sorted(ids, key=uniqueid_order) == [
        "a-1699999999.99", "a-1700000000.9", "a-1700000000.10", "node-b-1700000001.1"]
    assert uniqueid_order("1700000000.10") == (1700000000, 10)


def test_given_an_edge_when_rendered_then_an_operator_is_one_desk_across_nodes(
        tmp_path: Path) -> None:
    """Calls from the nodes to an operator go through the desk check (a dialog profile per
    extension, under a lock held until the call is relayed); agencies' phones do not."""
    center = load_center(config(tmp_path), state_dir=tmp_path / "s")
    files, _paths = rendered_edge(tmp_path)
    cfg = files["kamailio.cfg"]
    pattern = re.search(r'\$rU =~ "(\^\([^"]+\)\$)"\) \{\n\t\t\$var\(desk\) = \$rU', cfg)
    assert pattern is not None, "the desk check is keyed on the operators' extensions"
    desk_re = re.compile(pattern.group(1))
    assert all(desk_re.match(op.extension) for op in center.operators)
    assert not any(desk_re.match(ext) for a in center.agencies for ext in a.extensions)
    assert cfg.index('route(ONE_DESK)') < cfg.index("t_relay()", cfg.index("route[TO_STAFF]"))
    assert 'sl_send_reply("486", "Busy at another node")' in cfg
    assert cfg.index('lock("desk-$var(desk)")') < cfg.index('get_profile_size("desk"')


def test_given_nodes_when_rendered_then_their_ami_admits_the_brain_alone(
        tmp_path: Path) -> None:
    """Each node's manager interface admits loopback and the brain's address (the edge's
    machine, or ``brain.ami_from``); the single center's admits loopback only."""
    center = load_center(config(tmp_path), state_dir=tmp_path / "s")
    assert center.topology is not None
    creds = ensure_credentials(center)
    node = node_center(center, center.topology.node("a"))
    manager = render_all(node, creds, AsteriskPaths.for_center(node, "/m", "/d"))["manager.conf"]
    assert re.findall(r"^permit = (.+)$", manager, re.M) == ["127.0.0.0/255.0.0.0",
                                                              "10.0.0.5/32"]
    own = load_center(config(tmp_path / "own", TOPOLOGY + "  brain: {ami_from: 10.0.0.30}\n"),
                      state_dir=tmp_path / "s2")
    assert own.topology is not None
    node = node_center(own, own.topology.node("b"))
    manager = render_all(node, creds, AsteriskPaths.for_center(node, "/m", "/d"))["manager.conf"]
    assert "permit = 10.0.0.30/32" in manager and "10.0.0.5" not in manager
    single = render_all(center, creds, AsteriskPaths.for_center(center, "/m", "/d"))
    assert re.findall(r"^permit = (.+)$", single["manager.conf"], re.M) == [
        "127.0.0.0/255.0.0.0"]


def test_given_a_public_brain_address_when_loaded_then_error_names_the_line(
        tmp_path: Path) -> None:
    """The brain reaches the nodes' AMI over a private network only."""
    path = config(tmp_path, TOPOLOGY + "  brain: {ami_from: 1.2.3.4}\n")
    with pytest.raises(ConfigError) as caught:
        load_center(path, state_dir=tmp_path / "s")
    err = caught.value
    assert (err.path, err.line) == ("topology.brain.ami_from", line_of(path, "ami_from"))
    assert "private" in err.reason


def queue_penalties(queues_conf: str) -> dict[str, int]:
    """extension -> penalty of each ``member =>`` line of a rendered queues.conf."""
    return {m.group(1): int(m.group(2)) for m in re.finditer(
        r"^member => PJSIP/(\d+),(\d+),", queues_conf, re.MULTILINE)}


def test_given_two_nodes_when_rendered_then_each_rings_its_own_block_of_operators_first(
        tmp_path: Path) -> None:
    """Each node's queue rings its own half of the operators first (penalty 0) and the other
    half after (1), so two nodes seldom ring the same operator (the edge would refuse the
    second). The self-test's desk keeps its penalty; a single center rings all at 0."""
    center = load_center(config(tmp_path), state_dir=tmp_path / "s")
    assert center.topology is not None
    creds = ensure_credentials(center)
    operators = [op.extension for op in center.operators]
    assert len(operators) >= 2
    seen = {}
    for name in ("a", "b"):
        node = node_center(center, center.topology.node(name))
        files = render_all(node, creds, AsteriskPaths.for_center(node, "/mods", "/usr/share"))
        seen[name] = queue_penalties(files["queues.conf"])
        assert set(seen[name]) == set(operators)
    desk = center.selftest.desk
    for i, ext in enumerate(operators):
        if ext == desk:
            assert seen["a"][ext] == seen["b"][ext] == 100
            continue
        first = i * 2 < len(operators)  # in the first of the two blocks
        assert seen["a"][ext] == (0 if first else 1), (ext, seen["a"])
        assert seen["b"][ext] == (1 if first else 0), (ext, seen["b"])
    # Every operator is first at some node: no desk is anyone's last resort only.
    assert all(min(seen["a"][e], seen["b"][e]) == 0 for e in operators if e != desk)
    single = render_all(center, creds, AsteriskPaths.for_center(center, "/mods", "/usr/share"))
    assert {e: p for e, p in queue_penalties(single["queues.conf"]).items() if e != desk} \
        == {e: 0 for e in operators if e != desk}
