"""AsteriskService's restart policy, driven by a fake process reactor and task.Clock."""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.internet import task
from twisted.internet.error import ProcessTerminated
from twisted.python.failure import Failure

from pbx.asterisk import AsteriskService, asterisk_argv, asterisk_cli_argv
from pbx.provision import AsteriskInstall

ROOTFS_INSTALL = AsteriskInstall("/usr/sbin/asterisk", "22", "/mods", "/usr/share/asterisk",
                                 rootfs=Path("/var/lib/siaga/rootfs"))


class FakeTransport:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.signals: list[str] = []

    def signalProcess(self, sig: str) -> None:  # noqa: N802
        self.signals.append(sig)


class FakeProcessReactor:
    """Records spawnProcess calls; the test ends processes by hand."""

    def __init__(self) -> None:
        self.spawned: list[tuple[object, list[str], FakeTransport]] = []

    def spawnProcess(self, proto, executable, args, env=None, **kw):  # noqa: ANN001, N802
        transport = FakeTransport(1000 + len(self.spawned))
        self.spawned.append((proto, list(args), transport))
        return transport

    def end(self, index: int, code: int = 1) -> None:
        proto = self.spawned[index][0]
        proto.processEnded(Failure(ProcessTerminated(exitCode=code)))  # type: ignore[attr-defined]


def make(tmp_path: Path) -> tuple[AsteriskService, FakeProcessReactor, task.Clock]:
    reactor, clock = FakeProcessReactor(), task.Clock()
    service = AsteriskService(reactor, clock, ROOTFS_INSTALL, tmp_path / "asterisk.conf",
                              [tmp_path], tmp_path / "asterisk.out", max_backoff=8,
                              stable_after=30)
    return service, reactor, clock


def test_given_rootfs_install_when_argv_built_then_chrooted_in_private_namespace() -> None:
    """Asterisk in a root filesystem runs under unshare -m and chroot, in the foreground,
    with only the directories it uses bound in, under umask 027."""
    argv = asterisk_argv(ROOTFS_INSTALL, Path("/s/run/etc/asterisk.conf"),
                         [Path("/s/run"), Path("/s/recordings")])
    assert argv[:4] == ["unshare", "-m", "--propagation", "private"]
    assert argv[8:] == ["/var/lib/siaga/rootfs", "2", "/s/run", "/s/recordings",
                        "/usr/sbin/asterisk", "-C", "/s/run/etc/asterisk.conf", "-f", "-n"]
    assert "exec chroot" in argv[6] and "umask 027" in argv[6]


def test_given_asterisk_keeps_dying_when_restarted_then_backoff_doubles_to_the_cap(
        tmp_path: Path) -> None:
    """Restarts wait 1, 2, 4, 8, 8 s: a crash loop never spins the CPU."""
    service, reactor, clock = make(tmp_path)
    service.startService()
    delays = []
    for i in range(5):
        reactor.end(i)
        call = clock.getDelayedCalls()[0]
        delays.append(call.getTime() - clock.seconds())
        clock.advance(call.getTime() - clock.seconds())
        assert len(reactor.spawned) == i + 2
    assert delays == [1, 2, 4, 8, 8]


def test_given_a_long_run_when_asterisk_dies_then_backoff_starts_over(tmp_path: Path) -> None:
    """After a run longer than stable_after, the next restart waits 1 s again."""
    service, reactor, clock = make(tmp_path)
    service.startService()
    reactor.end(0)
    clock.advance(1)
    reactor.end(1)
    clock.advance(2)
    clock.advance(60)  # the third run lasts a minute
    reactor.end(2)
    (call,) = clock.getDelayedCalls()
    assert call.getTime() - clock.seconds() == 1


def test_given_running_when_stopped_then_sigterm_then_sigkill_after_timeout(
        tmp_path: Path) -> None:
    """stopService sends TERM; if Asterisk ignores it, KILL after stop_timeout; no restart."""
    service, reactor, clock = make(tmp_path)
    service.startService()
    stopped = service.stopService()
    transport = reactor.spawned[0][2]
    assert transport.signals == ["TERM"]
    assert not stopped.called
    clock.advance(service.stop_timeout)
    assert transport.signals == ["TERM", "KILL"]
    reactor.end(0, code=0)
    assert stopped.called
    assert clock.getDelayedCalls() == []
    assert len(reactor.spawned) == 1


def test_given_a_cli_command_when_its_argv_is_built_then_it_is_one_line_through_the_socket(
        tmp_path: Path) -> None:
    """The tests' `asterisk -rx` runs in the root filesystem (not AMI); a command with a line
    break is refused before anything runs."""
    service, _reactor, _clock = make(tmp_path)
    argv = asterisk_cli_argv(service.install, service.asterisk_conf, service.binds,
                             "core reload")
    assert argv[:2] == ["unshare", "-m"] and argv[-2:] == ["-rx", "core reload"]
    with pytest.raises(ValueError):
        asterisk_cli_argv(service.install, service.asterisk_conf, service.binds,
                          "core reload\ndialplan add extension 1,1,System(id) into public")
