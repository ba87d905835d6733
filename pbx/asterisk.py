"""Starting, supervising and stopping the Asterisk process.

With a provisioned root filesystem Asterisk runs chrooted in it, inside a private mount
namespace (``unshare -m``) where /proc and the center's directories Asterisk uses (its run
directory and the recordings; not the state directory with the secrets and the database) are
mounted at the same paths as on the host. Generated files therefore use one set of paths for
both sides, and every mount disappears with the process, even when it is killed.

Asterisk is started as root and drops to its own user (``runuser`` in asterisk.conf, see
:mod:`pbx.privilege`) under umask 027. CLI commands (a reload, waiting for the boot) go
through Asterisk's control socket from this root-owned supervisor (``asterisk -rx``), never
through AMI: the server's AMI user has no ``command`` class, so its secret cannot run CLI
commands, which include adding dialplan that runs a shell.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Sequence
from pathlib import Path

from twisted.application.service import Service
from twisted.internet import defer, error, protocol, task
from twisted.internet.interfaces import IReactorProcess, IReactorTime
from twisted.logger import Logger

from pbx.privilege import ASTERISK_UMASK
from pbx.provision import AsteriskInstall

# $1 root filesystem, $2 how many directories to bind, then the directories, then the
# command. The mount points are made under umask 022 so Asterisk's user can walk to them;
# Asterisk itself runs under umask 027: nothing it writes is readable by others.
_CHROOT_SCRIPT = (
    'set -e; root="$1"; n="$2"; shift 2; umask 022; mount -t proc proc "$root/proc"; '
    'while [ "$n" -gt 0 ]; do mkdir -p "$root$1"; mount --bind "$1" "$root$1"; '
    'shift; n=$((n - 1)); done; '
    f'umask {ASTERISK_UMASK:03o}; exec chroot "$root" "$@"'
)
_UMASK_SCRIPT = f'umask {ASTERISK_UMASK:03o}; exec "$@"'


def _in_asterisk_tree(install: AsteriskInstall, binds: Sequence[Path],
                      command: list[str]) -> list[str]:
    """``command`` run where Asterisk's files are: chrooted with ``binds`` mounted, under
    Asterisk's umask."""
    if install.rootfs is None:
        return ["sh", "-c", _UMASK_SCRIPT, "siaga-asterisk", *command]
    return ["unshare", "-m", "--propagation", "private", "sh", "-c", _CHROOT_SCRIPT,
            "siaga-asterisk", str(install.rootfs), str(len(binds)), *map(str, binds),
            *command]


def asterisk_argv(install: AsteriskInstall, asterisk_conf: Path,
                  binds: Sequence[Path]) -> list[str]:
    """The command line that runs Asterisk in the foreground on ``asterisk_conf``.

    ``binds`` are the directories Asterisk uses (its configuration among them); in a root
    filesystem each is bind-mounted at the same path.
    """
    return _in_asterisk_tree(install, binds,
                             [install.binary, "-C", str(asterisk_conf), "-f", "-n"])


def asterisk_cli_argv(install: AsteriskInstall, asterisk_conf: Path, binds: Sequence[Path],
                      command: str) -> list[str]:
    """The command line that runs one CLI ``command`` through the control socket."""
    if not command or any(c in command for c in "\r\n\0"):
        raise ValueError(f"a CLI command is one line: {command!r}")
    return _in_asterisk_tree(install, binds,
                             [install.binary, "-C", str(asterisk_conf), "-rx", command])


class _AsteriskProtocol(protocol.ProcessProtocol):
    """Copies the process's output to a log file and reports its end.

    ``kill_group``: the process leads a process group of workers (Kamailio). When the leader
    dies the rest of the group is killed: orphaned workers would keep its ports and its
    output pipes open (and the end of a process is reported only once its pipes close).
    """

    def __init__(self, log_path: Path, on_exit: Callable[[int | None, int | None], None],
                 kill_group: bool = False):
        self.log_path = log_path
        self.on_exit = on_exit
        self.kill_group = kill_group
        self.leader: int | None = None
        # Never through a link, and root's alone from the first byte.
        fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        os.fchmod(fd, 0o600)  # also when an older run left it readable
        self._log = os.fdopen(fd, "ab")

    def connectionMade(self) -> None:  # noqa: N802 (Twisted's name)
        self.leader = getattr(self.transport, "pid", None)

    def processExited(self, reason) -> None:  # noqa: N802, ANN001
        if self.kill_group and self.leader:
            try:
                os.killpg(self.leader, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass  # no worker left

    def outReceived(self, data: bytes) -> None:  # noqa: N802 (Twisted's name)
        self._log.write(data)
        self._log.flush()

    errReceived = outReceived

    def processEnded(self, reason) -> None:  # noqa: N802
        self._log.close()
        value = reason.value
        self.on_exit(getattr(value, "exitCode", None), getattr(value, "signal", None))


class ProcessSupervisor(Service):
    """Keeps one process running: starts it, restarts it when it dies, stops it cleanly.

    The restart delay grows 1, 2, 4... seconds up to ``max_backoff`` and is reset once a run
    lasted longer than ``stable_after`` seconds. ``on_started`` is called with the run
    number each time a process is spawned. ``what`` names the process in log lines.

    ``adopt_pid``: such a process already running (left by a server that was killed). It is
    adopted, not restarted: calls in progress go on. It is watched by polling its pid,
    replaced by a child of ours if it dies, and stopped on stop.
    """

    log = Logger()
    what = "the process"
    # The process leads a group of workers, killed with it (see _AsteriskProtocol).
    kill_group = False

    def __init__(self, reactor: IReactorProcess, clock: IReactorTime, argv: Sequence[str],
                 log_path: Path, max_backoff: float = 10.0, stable_after: float = 30.0,
                 stop_timeout: float = 15.0, adopt_pid: int | None = None) -> None:
        self.reactor = reactor
        self.clock = clock
        self.argv = list(argv)
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
            self.log.info("adopting the running {what} (pid {pid})", what=self.what,
                          pid=self.adopted_pid)
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
        proto = _AsteriskProtocol(self.log_path, self._ended, kill_group=self.kill_group)
        self.log.info("starting {what} (run {run}): {argv}", what=self.what, run=self.runs,
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
            self.log.info("{what} stopped (exit {code}, signal {sig})", what=self.what,
                          code=code, sig=sig)
            return
        ran = self.clock.seconds() - self._started_at
        if ran >= self.stable_after:
            self._backoff = 1.0
        delay = self._backoff
        self._backoff = min(self._backoff * 2, self.max_backoff)
        self.log.error("{what} died (exit {code}, signal {sig}) after {ran:.1f} s; "
                       "restarting in {delay:.0f} s", what=self.what, code=code, sig=sig,
                       ran=ran, delay=delay)
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



class AsteriskService(ProcessSupervisor):
    """Keeps one Asterisk running (see :class:`ProcessSupervisor`); the AMI client
    reconnects by itself after each start."""

    what = "Asterisk"

    def __init__(self, reactor: IReactorProcess, clock: IReactorTime, install: AsteriskInstall,
                 asterisk_conf: Path, binds: Sequence[Path], log_path: Path,
                 max_backoff: float = 10.0, stable_after: float = 30.0,
                 stop_timeout: float = 15.0, adopt_pid: int | None = None) -> None:
        self.install = install
        self.asterisk_conf = asterisk_conf
        self.binds = tuple(binds)
        super().__init__(reactor, clock, asterisk_argv(install, asterisk_conf, self.binds),
                         log_path, max_backoff=max_backoff, stable_after=stable_after,
                         stop_timeout=stop_timeout, adopt_pid=adopt_pid)

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
