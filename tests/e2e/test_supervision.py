"""`siaga up` supervises Asterisk: restarts it when it dies, adopts it after a server crash,
and leaves nothing behind when stopped."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import pytest

from tests.harness import SiagaProcess, wait_for

pytestmark = pytest.mark.asterisk




def ami_port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and ") Z " not in stat.read_text()


def test_given_running_center_when_asterisk_is_killed_then_it_is_restarted(
        center_server: SiagaProcess) -> None:
    """SIGKILL to Asterisk: the server starts a new one, which boots and answers AMI."""
    first = center_server.asterisk_pid()
    assert first is not None
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: center_server.asterisk_pid() not in (None, first), 30, "a new Asterisk")
    center_server.wait_ready(60)
    assert "Asterisk died" in center_server.output()
    watch = center_server.ami()
    try:
        assert "operators has" in watch.command("queue show operators")
    finally:
        watch.close()


def test_given_running_center_when_sigterm_then_nothing_is_left_behind(
        center_server: SiagaProcess) -> None:
    """SIGTERM: the server stops Asterisk and exits 0; no process, mount or socket remains."""
    pid = center_server.asterisk_pid()
    assert pid is not None
    center_server.signal(signal.SIGTERM)
    assert center_server.wait_exit(30) == 0
    assert not process_alive(pid)
    assert not ami_port_open(center_server.center.ami.port)
    mounts = Path("/proc/mounts").read_text()
    assert str(center_server.state_dir) not in mounts


def test_given_server_killed_when_started_again_then_running_asterisk_is_adopted(
        center_server: SiagaProcess) -> None:
    """A killed server leaves Asterisk carrying calls; the next server adopts it, not restarts."""
    pid = center_server.asterisk_pid()
    assert pid is not None
    center_server.signal(signal.SIGKILL)
    center_server.wait_exit(10)
    assert process_alive(pid), "Asterisk must outlive a crashed server (fail-open)"
    center_server.start()
    assert center_server.asterisk_pid() == pid
    assert "adopting the running Asterisk" in center_server.output()
    center_server.signal(signal.SIGTERM)
    assert center_server.wait_exit(30) == 0
    wait_for(lambda: not process_alive(pid), 20, "the adopted Asterisk to stop")
