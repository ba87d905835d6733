"""Starting, supervising and stopping the Asterisk process.

With a provisioned root filesystem Asterisk runs chrooted in it, inside a private mount
namespace (``unshare -m``) where /proc and the center's state directory are mounted at the
same paths as on the host. Generated files therefore use one set of paths for both sides, and
every mount disappears with the process, even when it is killed.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

from twisted.application.service import Service
from twisted.internet import defer, error, protocol, task
from twisted.internet.interfaces import IReactorProcess, IReactorTime
from twisted.logger import Logger

from pbx.provision import AsteriskInstall

_CHROOT_SCRIPT = (
    'set -e; mount -t proc proc "$0/proc"; mkdir -p "$0$1"; mount --bind "$1" "$0$1"; '
    'exec chroot "$0" "$2" -C "$3" -f -n'
)


def asterisk_argv(install: AsteriskInstall, asterisk_conf: Path, state_dir: Path) -> list[str]:
    """The command line that runs Asterisk in the foreground on ``asterisk_conf``.

    ``state_dir`` holds the configuration and everything Asterisk writes; in a root
    filesystem it is bind-mounted at the same path.
    """
    if install.rootfs is None:
        return [install.binary, "-C", str(asterisk_conf), "-f", "-n"]
    return ["unshare", "-m", "--propagation", "private", "sh", "-c", _CHROOT_SCRIPT,
            str(install.rootfs), str(state_dir), install.binary, str(asterisk_conf)]


class _AsteriskProtocol(protocol.ProcessProtocol):
    """Copies Asterisk's output to a log file and reports its end."""

    def __init__(self, log_path: Path, on_exit: Callable[[int | None, int | None], None]):
        self.log_path = log_path
        self.on_exit = on_exit
        self._log = log_path.open("ab")

    def outReceived(self, data: bytes) -> None:  # noqa: N802 (Twisted's name)
        self._log.write(data)
        self._log.flush()

    errReceived = outReceived

    def processEnded(self, reason) -> None:  # noqa: N802
        self._log.close()
        value = reason.value
        self.on_exit(getattr(value, "exitCode", None), getattr(value, "signal", None))


class AsteriskService(Service):
    """Keeps one Asterisk running: starts it, restarts it when it dies, stops it cleanly.

    The restart delay grows 1, 2, 4... seconds up to ``max_backoff`` and is reset once a run
    lasted longer than ``stable_after`` seconds. ``on_started`` is called with the run
    number each time a process is spawned (the AMI client reconnects by itself).

    ``adopt_pid``: an Asterisk already running on this state directory (left by a server
    that was killed). It is adopted, not restarted: calls in progress go on. It is watched
    by polling its pid, replaced by a child of ours if it dies, and stopped on stop.
    """

    log = Logger()

    def __init__(self, reactor: IReactorProcess, clock: IReactorTime, install: AsteriskInstall,
                 asterisk_conf: Path, state_dir: Path, log_path: Path,
                 max_backoff: float = 10.0, stable_after: float = 30.0,
                 stop_timeout: float = 15.0, adopt_pid: int | None = None) -> None:
        self.reactor = reactor
        self.clock = clock
        self.argv = asterisk_argv(install, asterisk_conf, state_dir)
        self.log_path = log_path
        self.max_backoff = max_backoff
        self.stable_after = stable_after
        self.stop_timeout = stop_timeout
        self.transport = None
        self.runs = 0
        self._backoff = 1.0
        self._started_at = 0.0
        self._restart_call = None
        self._stopping = False
        self._exited: defer.Deferred[None] | None = None
        self.on_started: list[Callable[[int], None]] = []
        self.adopted_pid = adopt_pid
        self._watch: task.LoopingCall | None = None

    @property
    def pid(self) -> int | None:
        """The running process's pid (the unshare/chroot chain execs into Asterisk)."""
        if self.transport is not None:
            return self.transport.pid
        return self.adopted_pid

    def startService(self) -> None:  # noqa: N802
        super().startService()
        self._stopping = False
        if self.adopted_pid is not None and _alive(self.adopted_pid):
            self.log.info("adopting the running Asterisk (pid {pid})", pid=self.adopted_pid)
            self._started_at = self.clock.seconds()
            self._exited = defer.Deferred()
            self._watch = task.LoopingCall(self._check_adopted)
            self._watch.clock = self.clock
            self._watch.start(0.5, now=False)
            return
        self.adopted_pid = None
        self._spawn()

    def _check_adopted(self) -> None:
        if self.adopted_pid is not None and not _alive(self.adopted_pid):
            if self._watch is not None and self._watch.running:
                self._watch.stop()
            self._watch = None
            self.adopted_pid = None
            self._ended(None, None)

    def _spawn(self) -> None:
        self._restart_call = None
        self.runs += 1
        self._started_at = self.clock.seconds()
        self._exited = defer.Deferred()
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
        proto = _AsteriskProtocol(self.log_path, self._ended)
        self.log.info("starting Asterisk (run {run}): {argv}", run=self.runs,
                      argv=" ".join(self.argv))
        self.transport = self.reactor.spawnProcess(proto, self.argv[0], self.argv, env=env)
        for cb in list(self.on_started):
            cb(self.runs)

    def _ended(self, code: int | None, sig: int | None) -> None:
        self.transport = None
        exited, self._exited = self._exited, None
        if exited is not None:
            exited.callback(None)
        if self._stopping:
            self.log.info("Asterisk stopped (exit {code}, signal {sig})", code=code, sig=sig)
            return
        ran = self.clock.seconds() - self._started_at
        if ran >= self.stable_after:
            self._backoff = 1.0
        delay = self._backoff
        self._backoff = min(self._backoff * 2, self.max_backoff)
        self.log.error("Asterisk died (exit {code}, signal {sig}) after {ran:.1f} s; "
                       "restarting in {delay:.0f} s", code=code, sig=sig, ran=ran, delay=delay)
        self._restart_call = self.clock.callLater(delay, self._spawn)

    def stopService(self) -> defer.Deferred[None]:  # noqa: N802
        super().stopService()
        self._stopping = True
        if self._restart_call is not None and self._restart_call.active():
            self._restart_call.cancel()
            self._restart_call = None
        if (self.transport is None and self.adopted_pid is None) or self._exited is None:
            return defer.succeed(None)
        exited = self._exited
        self._signal(signal.SIGTERM)
        killer = self.clock.callLater(self.stop_timeout, self._signal, signal.SIGKILL)

        def done(result: None) -> None:
            if killer.active():
                killer.cancel()
            return result

        return exited.addBoth(done)

    def _signal(self, sig: int) -> None:
        if self.adopted_pid is not None:
            try:
                os.kill(self.adopted_pid, sig)
            except ProcessLookupError:
                pass
            return
        if self.transport is None:
            return
        try:
            self.transport.signalProcess(
                {signal.SIGTERM: "TERM", signal.SIGKILL: "KILL"}.get(sig, sig))
        except error.ProcessExitedAlready:
            pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie has exited: it only waits for its parent to reap it.
    try:
        return ") Z " not in Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False


def stale_pid(run_dir: Path) -> int | None:
    """The pid of an Asterisk still running on this run directory, if any."""
    pid_file = run_dir / "asterisk.pid"
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    cmdline = Path(f"/proc/{pid}/cmdline")
    try:
        if b"asterisk" not in cmdline.read_bytes():
            return None
    except OSError:
        return None
    return pid
