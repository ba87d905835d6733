"""A real Asterisk for end-to-end tests, started from the example city's generated config.

The harness runs Asterisk exactly as ``siaga up`` does (same argv, same generated files) but
on free loopback ports and a private state directory, so tests never collide with a running
center or with each other. It talks AMI through the ``asterisk-ami`` package: a client
nobody here wrote, so what the harness sees is an independent check of what Asterisk does.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from asterisk.ami import AMIClient, SimpleAction

from dispatcher.app import Prepared, prepare
from dispatcher.config.loader import load_center
from dispatcher.config.model import Center, Endpoint
from pbx.asterisk import asterisk_argv, asterisk_cli_argv
from pbx.provision import AsteriskInstall
from tests import ports

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_CONFIG = REPO / "config" / "siaga.example.yaml"

# Every deadline a test waits on is multiplied by this. A deadline only costs time when the
# awaited thing does not happen, so a generous factor makes a slow or stalled machine (a
# loaded CI host, a disk that pauses for seconds) wait longer instead of failing.
PATIENCE = float(os.environ.get("SIAGA_TEST_PATIENCE", "3"))


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port on 127.0.0.1 for a server about to start, that no other process (another
    pytest-xdist worker, another test run) is handed meanwhile: see :mod:`tests.ports`."""
    return ports.free_port(kind)


def example_center(state_dir: Path, config: Path = EXAMPLE_CONFIG) -> Center:
    """The example city on loopback, free ports and a private state directory."""
    center = load_center(config, state_dir=state_dir)
    sip_port = free_port(socket.SOCK_DGRAM)
    ami_port = free_port()
    http_port = free_port()
    return center.with_overrides(
        sip=Endpoint("127.0.0.1", sip_port),
        ami=Endpoint("127.0.0.1", ami_port),
        http=Endpoint("127.0.0.1", http_port),
    )


# Run while a test waits. The SIP stack's event pump is registered here during tests that
# use phones: a phone that is not pumped does not answer Asterisk's qualify pings, and
# Asterisk then skips its contact as unreachable when dialling it.
IDLE_HOOKS: list[Callable[[], object]] = []


def wait_for(predicate: Callable[[], object], timeout: float, what: str,
             interval: float = 0.05) -> object:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds
    (times :data:`PATIENCE`)."""
    timeout *= PATIENCE
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        if IDLE_HOOKS:
            for hook in IDLE_HOOKS:
                hook()
        else:
            time.sleep(interval)


@dataclass
class AmiWatch:
    """An asterisk-ami connection that records every event it receives."""

    client: AMIClient
    events: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Why the reader thread stopped, once it has (a closed connection or a parse error).
    ended: str | None = None
    # The latest responses and unrecognised packets, to explain an answer that never came.
    recent: list[str] = field(default_factory=list)
    # Runs a CLI command through the control socket (the AMI user may not run commands).
    cli: Callable[[str], str] | None = None

    def _note(self, text: str) -> None:
        self.recent.append(text)
        del self.recent[:-20]

    def _on_event(self, event, **_kw) -> None:  # noqa: ANN001
        record = dict(event.keys)
        record["Event"] = event.name
        with self.lock:
            self.events.append(record)

    def _on_disconnect(self, error: Exception | None = None, **_kw: object) -> None:
        self.ended = repr(error) if error is not None else "connection closed"

    def action(self, name: str, **fields: str):  # noqa: ANN201
        """Send an action and return asterisk-ami's Response (None if none came in time)."""
        return self.client.send_action(SimpleAction(name, **fields)).response

    def no_answer(self, name: str) -> str:
        """Why an action got no answer, for an error message."""
        reader = f"reader stopped: {self.ended}" if self.ended else "reader still running"
        return (f"AMI action {name} got no answer in {self.client._timeout:.0f} s ({reader});"
                f" latest packets: {self.recent}")

    def command(self, cli: str) -> str:
        """Run a CLI command on this connection's Asterisk and return its output.

        Not through AMI: the center's AMI user has no ``command`` class. The command goes
        through Asterisk's control socket (``asterisk -rx``), as root, like the server's
        supervisor does it.
        """
        if self.cli is None:
            raise RuntimeError(f"CLI command {cli!r}: this AMI connection has no console")
        return self.cli(cli)

    def channels(self) -> int | None:
        """How many channels Asterisk has up (None: the CLI gave no count)."""
        found = re.search(r"^(\d+) active channels?\b",
                          self.command("core show channels count"), re.M)
        return int(found.group(1)) if found else None

    def matching(self, name: str, **fields: str) -> list[dict[str, str]]:
        """Events received so far with this name and these field values."""
        with self.lock:
            return [e for e in self.events if e["Event"] == name
                    and all(e.get(k) == v for k, v in fields.items())]

    def wait_event(self, name: str, timeout: float = 10.0, **fields: str) -> dict[str, str]:
        """Wait for an event with this name and field values; return the first one."""
        found = wait_for(lambda: self.matching(name, **fields), timeout,
                         f"AMI event {name} {fields}"
                         + (f" (reader stopped: {self.ended})" if self.ended else ""))
        return found[0]  # type: ignore[index]

    def close(self) -> None:
        """Log off and close (the reader thread is woken, not left to a timeout)."""
        try:
            self.client.logoff()
        finally:
            _hang_up(self.client)


def _hang_up(client: AMIClient) -> None:
    """Close the connection and wake its reader thread (blocked in ``recv``)."""
    try:
        client._socket.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed by Asterisk
    client.disconnect()


class _AmiClient(AMIClient):
    """asterisk-ami's client, tolerant of the empty lines Asterisk sometimes puts between
    messages.

    asterisk-ami cuts the stream at each empty line and recognises a packet only when it
    starts with ``Response:`` or ``Event:``. Asterisk's ``TestEvent`` (Debian builds it with
    the test framework) ends with one more CR LF than other messages, so the packet after
    it started with CR LF and asterisk-ami dropped it as unknown: a lost answer or a lost
    event. Leading line ends are not part of any message; they are removed before
    asterisk-ami reads the packet.
    """

    def fire_recv_pack(self, pack: str) -> None:
        """Hand the packet, without leading line ends, to asterisk-ami."""
        super().fire_recv_pack(pack.lstrip("\r\n"))

    def connect(self) -> None:
        """Connect (within the timeout), then read blocking from the first byte.

        asterisk-ami reads with its answer timeout on the socket, so a connection quiet for
        that long would lose its reader thread. The socket is made blocking here, before the
        reader thread starts: switching it later, while the thread is inside ``recv``, races
        (CPython drops the timeout before the descriptor's O_NONBLOCK flag, and a ``recv``
        in between fails with EAGAIN, which ended the reader in CI). Answers keep their own
        deadline (asterisk-ami's futures wait ``timeout``); closing wakes the reader.
        """
        sock = socket.create_connection((self._address, self._port), timeout=self._timeout)
        sock.settimeout(None)
        self._socket = sock
        self.finished = threading.Event()
        self._thread = threading.Thread(target=self.listen, daemon=True)
        self._thread.start()


def open_watch(host: str, port: int, username: str, secret: str,
               timeout: float = 10.0, cli: Callable[[str], str] | None = None) -> AmiWatch:
    """A logged-in asterisk-ami connection recording events.

    Answers are awaited ``timeout`` × :data:`PATIENCE` seconds; the socket itself reads
    blocking (see :meth:`_AmiClient.connect`), so an idle watch keeps listening.
    """
    client = _AmiClient(address=host, port=port, timeout=timeout * PATIENCE)
    client.connect()
    watch = AmiWatch(client, cli=cli)
    client.add_event_listener(watch._on_event)
    client.add_listener(
        on_disconnect=watch._on_disconnect,
        on_response=lambda response, **_kw: watch._note(f"response {response.keys}"),
        on_unknown=lambda pack, **_kw: watch._note(f"unknown {pack!r}"),
        on_action=lambda action, **_kw: watch._note(f"action {action.name} {action.keys}"))
    response = client.login(username=username, secret=secret).response
    if response is None or response.status != "Success":
        _hang_up(client)
        raise RuntimeError(f"AMI login refused: {response}")
    return watch


# Every Asterisk this test process started and has not stopped: a failed test's report
# shows the end of each one's log (tests/conftest.py).
RUNNING: list[RunningAsterisk] = []


class RunningAsterisk:
    """One Asterisk process on a prepared center, for a whole test session."""

    def __init__(self, prepared: Prepared) -> None:
        self.prepared = prepared
        self.center = prepared.center
        self.proc: subprocess.Popen[bytes] | None = None
        self.watches: list[AmiWatch] = []
        self.out_path = prepared.asterisk_out
        self.boot_problems: list[str] = []

    @property
    def sip_address(self) -> str:
        """host:port of Asterisk's SIP transport."""
        return f"{self.center.sip.host}:{self.center.sip.port}"

    def password(self, extension: str) -> str:
        """The generated SIP password of an extension."""
        return self.prepared.creds.password(extension)

    def start(self, timeout: float = 60.0) -> None:
        """Start Asterisk and wait until it is fully booted."""
        argv = asterisk_argv(self.prepared.install, self.prepared.asterisk_conf,
                             self.prepared.asterisk_binds)
        out = self.out_path.open("ab")
        self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        out.close()
        RUNNING.append(self)
        self.wait_booted(timeout)
        # What Asterisk complained of while loading the generated configuration (later
        # lines belong to the tests' calls).
        self.boot_problems = self.log_problems()

    def wait_booted(self, timeout: float = 60.0) -> None:
        """Wait until AMI accepts our login and Asterisk says it is fully booted."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                tail = self.out_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"Asterisk exited with {self.proc.returncode}:\n{tail}")
            try:
                watch = self.ami(timeout=5)
            except (OSError, RuntimeError) as exc:
                last = exc
                time.sleep(0.2)
                continue
            try:
                watch.command("core waitfullybooted")
                return
            finally:
                watch.close()
        raise TimeoutError(f"Asterisk did not boot in {timeout:.0f} s: {last}")

    def cli(self, command: str, timeout: float = 30.0) -> str:
        """Run a CLI command through Asterisk's control socket; its output."""
        return run_cli(self.prepared, command, timeout)

    def ami(self, timeout: float = 10.0) -> AmiWatch:
        """A new logged-in AMI connection recording events (closed at the session's end)."""
        watch = open_watch(self.center.ami.host, self.center.ami.port,
                           self.prepared.creds.ami_username, self.prepared.creds.ami_secret,
                           timeout, cli=self.cli)
        self.watches.append(watch)
        return watch

    def log_problems(self) -> list[str]:
        """ERROR and WARNING lines Asterisk wrote to its log so far."""
        log = self.prepared.asterisk_log
        if not log.exists():
            return []
        return [line for line in log.read_text(errors="replace").splitlines()
                if " ERROR[" in line or " WARNING[" in line]

    def log_tail(self, lines: int = 60) -> str:
        """The last ``lines`` lines of Asterisk's log (notices, warnings, errors)."""
        log = self.prepared.asterisk_log
        if not log.exists():
            return "(no log yet)"
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout: float = 20.0) -> None:
        """Stop Asterisk (SIGTERM, then SIGKILL) and close AMI connections."""
        if self in RUNNING:
            RUNNING.remove(self)
        for watch in self.watches:
            try:
                watch.close()
            except Exception:  # noqa: BLE001 — the connection may be gone with Asterisk
                pass
        self.watches.clear()
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


def run_cli(prepared: Prepared, command: str, timeout: float = 30.0) -> str:
    """Run a CLI command through the control socket of the Asterisk on ``prepared``'s state
    directory (``asterisk -rx``, as the server's supervisor does); its output."""
    argv = asterisk_cli_argv(prepared.install, prepared.asterisk_conf, prepared.asterisk_binds,
                             command)
    proc = subprocess.run(argv, capture_output=True, text=True, errors="replace",
                          timeout=timeout * PATIENCE, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RuntimeError(f"CLI command {command!r} exited {proc.returncode}: "
                           f"{(proc.stdout + proc.stderr).strip()[-500:]}")
    return proc.stdout


def open_push_stream(host: str, port: int, extension: str, password: str,
                     http_version: str = "1.1") -> socket.socket:
    """Log in to the console over HTTP as ``extension`` and open its push stream
    (``GET /events``) on a raw socket, as a page would: the caller reads what arrives.
    HTTP/1.0 gets the stream unchunked."""
    import http.client
    from urllib.parse import urlencode

    conn = http.client.HTTPConnection(host, port, timeout=10)
    conn.request("POST", "/login", urlencode({"extension": extension, "password": password,
                                              "next": "/console"}),
                 {"Content-Type": "application/x-www-form-urlencoded"})
    answer = conn.getresponse()
    answer.read()
    cookie = answer.getheader("Set-Cookie", "").split(";")[0]
    conn.close()
    assert cookie.startswith("siaga_session="), cookie
    sock = socket.create_connection((host, port), timeout=10)
    sock.sendall(f"GET /events HTTP/{http_version}\r\nHost: {host}:{port}\r\n"
                 f"Cookie: {cookie}\r\nAccept: text/event-stream\r\n\r\n".encode())
    return sock


def start_asterisk(state_dir: Path, install: AsteriskInstall,
                   config: Path = EXAMPLE_CONFIG) -> RunningAsterisk:
    """Prepare the example city in ``state_dir`` and start Asterisk on it."""
    running = RunningAsterisk(prepare(example_center(state_dir, config), install))
    running.start()
    return running


def write_test_config(path: Path, sip_port: int | None = None, ami_port: int | None = None,
                      http_port: int | None = None, config: Path = EXAMPLE_CONFIG,
                      sections: dict[str, object] | None = None) -> Path:
    """A copy of the example city's config file on loopback and free (or given) ports.

    ``sections`` change the config: a mapping is merged into the section of that name (so
    ``{"http": {"limits": ...}}`` keeps the port), anything else replaces it.
    """
    import yaml

    doc = yaml.safe_load(config.read_text())
    for name, value in (sections or {}).items():
        old = doc.get(name)
        doc[name] = {**old, **value} if isinstance(old, dict) and isinstance(value, dict) \
            else value
    doc["sip"] = {**doc.get("sip", {}), "bind": "127.0.0.1",
                  "port": sip_port or free_port(socket.SOCK_DGRAM)}
    doc["ami"] = {**doc.get("ami", {}), "port": ami_port or free_port()}
    doc["http"] = {**doc.get("http", {}), "port": http_port or free_port()}
    # No self-test calls unless a test asks for them: they would come and go in the middle
    # of other tests' calls, queues and call logs.
    doc["selftest"] = {**(doc.get("selftest") or {}), "enabled": False}
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    return path


@contextmanager
def running_center(folder: Path, **sections: object) -> Iterator[SiagaProcess]:
    """``siaga up`` on a test config in ``folder`` (changed by ``sections``, as
    :func:`write_test_config` takes them), stopped afterwards whatever happened."""
    proc = SiagaProcess(write_test_config(folder / "center.yaml", sections=sections),
                        folder / "state")
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


class SiagaProcess:
    """``siaga up`` as a child process on a test config: the whole server, as users run it."""

    def __init__(self, config: Path, state_dir: Path) -> None:
        self.config = config
        self.state_dir = state_dir
        self.center = load_center(config, state_dir=state_dir)
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0
        self.out_path = state_dir.parent / f"{state_dir.name}-siaga.out"

    def start(self, timeout: float = 90.0) -> None:
        """Start ``siaga up`` and wait until its Asterisk is fully booted.

        Each start writes to its own output file: :meth:`output` is this run's.
        """
        siaga = Path(sys.executable).parent / "siaga"
        self.runs += 1
        self.out_path = self.state_dir.parent / f"{self.state_dir.name}-siaga.{self.runs}.out"
        out = self.out_path.open("ab")
        self.proc = subprocess.Popen(
            [str(siaga), "up", "--config", str(self.config), "--state-dir", str(self.state_dir)],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        out.close()
        self.wait_ready(timeout)

    def output(self) -> str:
        """What the server printed so far in its latest run."""
        return self.out_path.read_text(errors="replace") if self.out_path.exists() else ""

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Wait until the server printed its banner and Asterisk answers AMI fully booted."""
        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"siaga up exited {self.proc.returncode}:\n{self.output()}")
            return "Stop with Ctrl-C." in self.output()
        wait_for(ready, timeout, "siaga up to start")
        watch = wait_for(self._try_ami, timeout, "AMI login")
        try:
            watch.command("core waitfullybooted")  # type: ignore[union-attr]
        finally:
            watch.close()  # type: ignore[union-attr]

    def _try_ami(self) -> AmiWatch | None:
        try:
            return self.ami(timeout=5)
        except (OSError, RuntimeError):
            return None

    def ami(self, timeout: float = 10.0) -> AmiWatch:
        """A logged-in AMI connection to the server's Asterisk (caller closes it)."""
        from dispatcher.credentials import ensure_credentials

        creds = ensure_credentials(self.center)
        return open_watch(self.center.ami.host, self.center.ami.port,
                          creds.ami_username, creds.ami_secret, timeout, cli=self.cli)

    def cli(self, command: str, timeout: float = 30.0) -> str:
        """Run a CLI command through the control socket of the server's Asterisk."""
        from dialplans.render import AsteriskPaths
        from dispatcher.credentials import ensure_credentials
        from pbx.provision import locate

        install = locate()
        assert install is not None
        paths = AsteriskPaths.for_center(self.center, install.moddir, install.datadir)
        return run_cli(Prepared(self.center, install, paths,
                                ensure_credentials(self.center)), command, timeout)

    def asterisk_pid(self) -> int | None:
        """The pid of the Asterisk running on this state directory, if any."""
        from pbx.asterisk import stale_pid

        return stale_pid(self.center.run_dir / "run")

    def signal(self, sig: int) -> None:
        """Send a signal to the server process."""
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float = 30.0) -> int:
        """Wait for the server to exit; its exit code."""
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> None:
        """Stop the server and anything it left running (used in teardown)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        pid = self.asterisk_pid()
        if pid is not None:  # left behind on purpose by a test that killed the server
            os.kill(pid, signal.SIGTERM)
            wait_for(lambda: self.asterisk_pid() is None, 20, "the orphaned Asterisk to stop")
