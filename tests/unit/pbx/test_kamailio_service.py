"""The edge's supervisor and its JSON-RPC view of the nodes, with a fake process reactor and
a fake Kamailio on a Unix datagram socket."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from twisted.internet import task

from pbx.kamailio import (
    EdgeError,
    EdgePaths,
    KamailioService,
    PreparedEdge,
    kamailio_argv,
    node_states,
)
from tests.unit.pbx.test_asterisk_service import FakeProcessReactor


@pytest.fixture
def edge(tmp_path: Path) -> PreparedEdge:
    paths = EdgePaths(etc=tmp_path / "etc", runtime=tmp_path / "run")
    return PreparedEdge(paths, tuple(kamailio_argv("/usr/sbin/kamailio", paths, "kamailio")))


def test_given_a_user_when_the_argv_is_made_then_foreground_stderr_and_dropped_privileges(
        edge: PreparedEdge) -> None:
    """Kamailio stays our child (-DD), logs to stderr (-E), and drops to its own user."""
    argv = list(edge.argv)
    assert argv[:4] == ["setsid", "/usr/sbin/kamailio", "-f", str(edge.paths.config)]
    assert "-DD" in argv and "-E" in argv
    assert argv[argv.index("-u") + 1] == "kamailio" and argv[argv.index("-g") + 1] == "kamailio"
    assert "-u" not in kamailio_argv("/k", edge.paths, None)


def test_given_kamailio_dies_when_supervised_then_restarted_with_backoff_and_stopped(
        edge: PreparedEdge) -> None:
    """A dead Kamailio is started again after 1 s, then 2 s; stop sends SIGTERM and waits."""
    reactor, clock = FakeProcessReactor(), task.Clock()
    service = KamailioService(reactor, clock, edge, max_backoff=8)  # type: ignore[arg-type]
    service.startService()
    assert [args for _, args, _ in reactor.spawned] == [list(edge.argv)]
    reactor.end(0)
    clock.advance(0.9)
    assert len(reactor.spawned) == 1
    clock.advance(0.2)
    assert len(reactor.spawned) == 2
    reactor.end(1)
    clock.advance(1.5)
    assert len(reactor.spawned) == 2  # the second wait is 2 s
    clock.advance(0.6)
    assert len(reactor.spawned) == 3
    stopped = service.stopService()
    transport = reactor.spawned[2][2]
    assert transport.signals == ["TERM"]
    assert not stopped.called
    reactor.end(2, code=0)
    assert stopped.called
    clock.advance(60)
    assert len(reactor.spawned) == 3  # no restart after a stop


LIST_ANSWER = {"RECORDS": [{"SET": {"ID": 1, "TARGETS": [
    {"DEST": {"URI": "sip:127.0.0.11:5060", "FLAGS": "AP", "PRIORITY": 0,
              "ATTRS": {"BODY": "duid=a", "DUID": "a"}}},
    {"DEST": {"URI": "sip:127.0.0.12:5060", "FLAGS": "IP", "PRIORITY": 0,
              "ATTRS": {"BODY": "duid=b", "DUID": "b"}}}]}}]}


@pytest.fixture
def fake_kamailio(tmp_path: Path) -> Iterator[tuple[Path, list[dict]]]:
    """A Unix datagram socket answering each JSON-RPC request once, as jsonrpcs does."""
    path = tmp_path / "rpc.sock"
    seen: list[dict] = []
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    server.settimeout(5)

    def serve() -> None:
        try:
            data, sender = server.recvfrom(65536)
        except OSError:
            return
        request = json.loads(data)
        seen.append(request)
        answer = ({"jsonrpc": "2.0", "result": LIST_ANSWER, "id": request["id"]}
                  if request["method"] == "dispatcher.list" else
                  {"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method Not Found"},
                   "id": request["id"]})
        server.sendto(json.dumps(answer).encode(), sender)

    thread = threading.Thread(target=serve)
    thread.start()
    yield path, seen
    thread.join(10)
    server.close()


def test_given_kamailio_answers_when_nodes_are_asked_then_states_by_name(
        fake_kamailio: tuple[Path, list[dict]]) -> None:
    """dispatcher.list's records become node states: A (active) is up, I (inactive) down."""
    path, seen = fake_kamailio
    states = node_states(path)
    assert [(s.name, s.uri, s.up, s.flags) for s in states] == [
        ("a", "sip:127.0.0.11:5060", True, "AP"), ("b", "sip:127.0.0.12:5060", False, "IP")]
    assert seen[0]["method"] == "dispatcher.list" and seen[0]["jsonrpc"] == "2.0"


def test_given_an_error_answer_or_no_kamailio_when_asked_then_edge_error(
        fake_kamailio: tuple[Path, list[dict]], tmp_path: Path) -> None:
    """An error answer and a socket nobody listens on are both EdgeErrors, with the method."""
    from pbx.kamailio import rpc

    path, _ = fake_kamailio
    with pytest.raises(EdgeError, match="no.such"):
        rpc(path, "no.such")
    with pytest.raises(EdgeError, match="dispatcher.list"):
        node_states(tmp_path / "nobody.sock", timeout=0.5)


def test_given_a_leader_with_workers_when_it_dies_then_its_workers_are_killed(
        tmp_path: Path) -> None:
    """Kamailio's workers outlive a main process killed -9, holding its port and output
    pipes (so its end would never be reported and no restart would come): the supervisor's
    protocol kills the leader's whole group when the leader exits."""
    import os
    import signal
    import subprocess

    from pbx.asterisk import _AsteriskProtocol
    from tests.harness import wait_for

    leader = subprocess.Popen(["setsid", "sh", "-c", "sleep 300 & sleep 300 & wait"],
                              stdin=subprocess.DEVNULL)
    try:
        def workers() -> list[int]:
            out = subprocess.run(["pgrep", "-g", str(leader.pid)], capture_output=True,
                                 text=True).stdout
            return [int(p) for p in out.split() if int(p) != leader.pid]

        wait_for(lambda: len(workers()) >= 2, 10, "the workers to start")
        proto = _AsteriskProtocol(tmp_path / "out", lambda _c, _s: None, kill_group=True)
        proto.leader = leader.pid
        os.kill(leader.pid, signal.SIGKILL)
        leader.wait(10)
        assert workers(), "the workers outlive their leader by themselves"
        proto.processExited(None)
        wait_for(lambda: not workers(), 10, "the leader's workers to be gone")
    finally:
        try:
            os.killpg(leader.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        leader.wait(10)


def test_given_an_edge_left_running_when_prepared_again_then_it_is_stopped(
        tmp_path: Path) -> None:
    """A Kamailio whose supervisor was killed keeps the SIP port: the next start stops it
    (its whole group) first. A pid file naming some other process is left alone."""
    import subprocess
    import sys

    from pbx.kamailio import stale_edge_pid, stop_stale_edge

    paths = EdgePaths(etc=tmp_path / "etc", runtime=tmp_path / "run")
    paths.runtime.mkdir()
    # A stand-in holding the config's path in its command line, as Kamailio's -f does, in a
    # group of its own. Started as Python itself (not through setsid(1), which execs Python
    # after Popen returns: a read of its command line during that exec found it empty).
    stale = subprocess.Popen([sys.executable, "-c", "import signal; signal.pause()",
                              "-f", str(paths.config)], start_new_session=True)
    other = subprocess.Popen([sys.executable, "-c", "import signal; signal.pause()"])
    try:
        paths.pid_file.write_text(f"{other.pid}\n")
        assert stale_edge_pid(paths) is None
        assert not stop_stale_edge(paths)
        assert other.poll() is None
        paths.pid_file.write_text(f"{stale.pid}\n")
        assert stale_edge_pid(paths) == stale.pid
        assert stop_stale_edge(paths)
        assert stale.wait(10) is not None
    finally:
        for proc in (stale, other):
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
