"""Starting, supervising and asking the SIP edge (Kamailio) in front of the Asterisk nodes.

Kamailio runs in the foreground (``-DD -E``: its main process stays our child, its log goes
to stderr, which the supervisor copies to a file). Started as root it drops to its own
account (``-u``/``-g``, the Debian package's ``kamailio`` user) once it has read its
configuration and bound its socket; it never needs root again.

Its state is read over JSON-RPC on a Unix datagram socket (module ``jsonrpcs``) in its
runtime directory: the dispatcher's view of the nodes (up, down, probing) is the edge's
health. The client's own socket is in the abstract namespace: no file for Kamailio's
unprivileged user to be allowed to write to, nothing left behind.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from twisted.internet import defer, threads
from twisted.internet.interfaces import IReactorProcess, IReactorTime

from pbx.asterisk import ProcessSupervisor

KAMAILIO_USER = "kamailio"
# Shared and private memory (MB): a hotline edge keeps a few thousand transactions at most.
SHM_MB = 64
PKG_MB = 8


class EdgeError(RuntimeError):
    """Kamailio is missing, or did not answer."""


def kamailio_binary() -> str:
    """Kamailio's executable (Debian's package puts it in /usr/sbin)."""
    found = shutil.which("kamailio", path="/usr/sbin:/usr/bin:/sbin:/bin:"
                         + os.environ.get("PATH", ""))
    if found is None:
        raise EdgeError("kamailio is not installed (Debian: apt-get install kamailio)")
    return found


def kamailio_argv(binary: str, paths: EdgePaths, user: str | None) -> list[str]:
    """The command line that runs Kamailio in the foreground on the rendered config."""
    # Its own session and process group (setsid execs in place: the pid stays Kamailio's),
    # so that its workers can be killed with it when it dies (pbx.asterisk._AsteriskProtocol).
    argv = ["setsid", binary, "-f", str(paths.config), "-DD", "-E", "-m", str(SHM_MB),
            "-M", str(PKG_MB), "-P", str(paths.pid_file)]
    if user is not None:
        argv += ["-u", user, "-g", user]
    return argv


def edge_user() -> str | None:
    """The account Kamailio drops to: its own when we are root and it exists, else None (it
    keeps ours)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(KAMAILIO_USER)
    except KeyError:
        return None
    return KAMAILIO_USER


@dataclass(frozen=True)
class EdgePaths:
    """Where the edge's files are: its configuration, the node list, its runtime files."""

    etc: Path
    runtime: Path

    @classmethod
    def under(cls, base: Path) -> EdgePaths:
        """The layout under the edge's directory."""
        return cls(etc=base / "etc", runtime=base / "run")

    @property
    def config(self) -> Path:
        """kamailio.cfg."""
        return self.etc / "kamailio.cfg"

    @property
    def dispatcher_list(self) -> Path:
        """The nodes, as the dispatcher module reads them."""
        return self.etc / "dispatcher.list"

    @property
    def staff_file(self) -> Path:
        """The staff phones' passwords (included by kamailio.cfg)."""
        return self.etc / "staff.cfg"

    @property
    def pid_file(self) -> Path:
        """Kamailio's pid (a stale one is stopped before a new start)."""
        return self.runtime / "kamailio.pid"

    @property
    def rpc_socket(self) -> Path:
        """The JSON-RPC datagram socket (dispatcher state, health)."""
        return self.runtime / "rpc.sock"

    @property
    def out_path(self) -> Path:
        """Kamailio's output (its log), written by the supervisor."""
        return self.etc.parent / "kamailio.out"


@dataclass(frozen=True)
class PreparedEdge:
    """The edge's files, ready, and the command line that runs it."""

    paths: EdgePaths
    argv: tuple[str, ...]

    @property
    def out_path(self) -> Path:
        """Kamailio's output (its log), written by the supervisor."""
        return self.paths.out_path


def prepare_runtime(paths: EdgePaths, binary: str | None = None) -> PreparedEdge:
    """Make the runtime directory (Kamailio's user's), clear what a previous run left, and
    give the command line. The configuration files must be written already: they stay
    root's (Kamailio reads them before it drops privileges)."""
    user = edge_user()
    paths.runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
    if user is not None:
        pw = pwd.getpwnam(user)
        os.chown(paths.runtime, pw.pw_uid, pw.pw_gid, follow_symlinks=False)
    # A Kamailio left running by a supervisor that was killed holds the SIP port: it is
    # stopped and replaced. Nothing is lost: the edge keeps no dialog state, and the next
    # one routes the calls' in-dialog requests on the same address.
    stop_stale_edge(paths)
    # Kamailio cannot remove its socket once it is no longer root: a stopped run leaves it,
    # and the next run would fail to bind it.
    paths.rpc_socket.unlink(missing_ok=True)
    argv = kamailio_argv(binary or kamailio_binary(), paths, user)
    return PreparedEdge(paths, tuple(argv))


def stale_edge_pid(paths: EdgePaths) -> int | None:
    """The pid of a Kamailio still running on this edge's configuration, if any."""
    try:
        pid = int(paths.pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if str(paths.config).encode() in cmdline else None


def stop_stale_edge(paths: EdgePaths, timeout: float = 5.0) -> bool:
    """Stop a Kamailio left running on this edge (its whole group); True if there was one."""
    pid = stale_edge_pid(paths)
    if pid is None:
        return False
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:  # not (yet) leading a group of its own: itself, then
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return True
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if stale_edge_pid(paths) is None or not Path(f"/proc/{pid}").exists():
                return True
            time.sleep(0.05)
    return True


def rpc(socket_path: Path, method: str, params: Sequence[object] = (),
        timeout: float = 2.0) -> object:
    """One JSON-RPC call to Kamailio; its ``result``. Raises EdgeError on no answer or an
    error answer."""
    request = {"jsonrpc": "2.0", "method": method, "params": list(params),
               "id": secrets.randbelow(1 << 31)}
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind("\0siaga-edge-rpc-" + secrets.token_hex(8))
        s.settimeout(timeout)
        try:
            s.sendto(json.dumps(request).encode(), str(socket_path))
            data = s.recv(65536)
        except OSError as exc:
            raise EdgeError(f"Kamailio RPC {method}: {exc}") from exc
    try:
        answer = json.loads(data)
    except ValueError as exc:
        raise EdgeError(f"Kamailio RPC {method}: not JSON: {data[:200]!r}") from exc
    if "error" in answer:
        raise EdgeError(f"Kamailio RPC {method}: {answer['error']}")
    return answer.get("result")


@dataclass(frozen=True)
class NodeState:
    """One node as the edge's dispatcher sees it."""

    uri: str
    name: str
    up: bool  # active: hotline calls go to it
    flags: str  # Kamailio's: A active, I inactive, P probing, D disabled


def node_states(socket_path: Path, timeout: float = 2.0) -> list[NodeState]:
    """The dispatcher's list of nodes with their states (``dispatcher.list``)."""
    result = rpc(socket_path, "dispatcher.list", timeout=timeout)
    out: list[NodeState] = []
    for record in (result or {}).get("RECORDS", []):  # type: ignore[union-attr]
        for target in record.get("SET", {}).get("TARGETS", []):
            dest = target.get("DEST", {})
            flags = str(dest.get("FLAGS", ""))
            attrs = dest.get("ATTRS", {}) or {}
            out.append(NodeState(uri=str(dest.get("URI", "")),
                                 name=str(attrs.get("DUID", "")),
                                 up=flags.startswith("A"), flags=flags))
    return out


class KamailioService(ProcessSupervisor):
    """Keeps Kamailio running: started, restarted with back-off when it dies, stopped with
    SIGTERM then SIGKILL (the same supervision as Asterisk's)."""

    what = "Kamailio"
    kill_group = True

    def __init__(self, reactor: IReactorProcess, clock: IReactorTime, edge: PreparedEdge,
                 max_backoff: float = 10.0, stable_after: float = 30.0,
                 stop_timeout: float = 10.0) -> None:
        super().__init__(reactor, clock, edge.argv, edge.out_path, max_backoff=max_backoff,
                         stable_after=stable_after, stop_timeout=stop_timeout)
        self.edge = edge

    def health(self) -> defer.Deferred[list[NodeState]]:
        """The nodes as the edge sees them, asked off the reactor thread (fails when
        Kamailio does not answer)."""
        pool = self.reactor.getThreadPool()  # type: ignore[attr-defined]
        return threads.deferToThreadPool(self.reactor, pool, node_states,
                                         self.edge.paths.rpc_socket)
