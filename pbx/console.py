"""One CLI command through Asterisk's console socket (``asterisk.ctl`` in its run directory).

This is what ``asterisk -rx`` does: connect to the control socket, read the banner
(``host/pid/version``), send ``cli quit after <command>`` NUL-terminated, and read the output
until Asterisk closes the connection. The socket is local and reserved to Asterisk's own user
(and root), so it needs no AMI write class: the manager user keeps no ``command``, ``system``
or ``config`` privilege and still the server can reload a module it renders configuration for.
"""

from __future__ import annotations

from pathlib import Path

from twisted.internet import defer, protocol
from twisted.internet.endpoints import UNIXClientEndpoint
from twisted.internet.interfaces import IReactorTime, IReactorUNIX

CTL_NAME = "asterisk.ctl"


class ConsoleError(RuntimeError):
    """The console socket could not run the command (refused, closed early, timed out)."""


class _OneCommand(protocol.Protocol):
    """Sends one command after the banner; collects the output until the connection closes."""

    def __init__(self, command: str) -> None:
        self.command = command
        self.received = bytearray()
        self.banner_seen = False
        self.done: defer.Deferred[str] = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 (Twisted's name)
        self.received += data
        if not self.banner_seen and b"\n" in self.received:
            self.banner_seen = True
            _, _, rest = bytes(self.received).partition(b"\n")
            self.received = bytearray(rest)
            self.transport.write(b"cli quit after " + self.command.encode() + b"\0")

    def connectionLost(self, reason: object = None) -> None:  # noqa: N802
        if not self.banner_seen:
            self.done.errback(ConsoleError("Asterisk closed its console before its banner"))
            return
        # Output lines may carry a verbosity marker byte and NULs between messages.
        text = bytes(self.received).replace(b"\0", b"").decode("utf-8", "replace")
        self.done.callback(text)


def _refuse_control(command: str) -> None:
    if any(ord(c) < 32 or c == "\x7f" for c in command):
        raise ConsoleError(f"refusing a CLI command with control characters: {command!r}")


class AsteriskConsole:
    """Runs CLI commands over the console socket of the Asterisk in ``run_dir``."""

    def __init__(self, reactor: IReactorUNIX, clock: IReactorTime, run_dir: Path,
                 timeout: float = 10.0) -> None:
        self.reactor = reactor
        self.clock = clock
        self.socket = run_dir / CTL_NAME
        self.timeout = timeout

    @defer.inlineCallbacks
    def run(self, command: str, timeout: float | None = None):  # noqa: ANN201 (Deferred[str])
        """Run ``command``; fires with its output, or fails with :class:`ConsoleError` when
        Asterisk cannot be reached or the output does not end within ``timeout`` seconds
        (the console's default when None)."""
        _refuse_control(command)
        timeout = self.timeout if timeout is None else timeout
        endpoint = UNIXClientEndpoint(self.reactor, str(self.socket), timeout=self.timeout)
        one = _OneCommand(command)
        try:
            proto = yield endpoint.connect(protocol.Factory.forProtocol(lambda: one))
        except Exception as exc:
            raise ConsoleError(f"no Asterisk console at {self.socket}: {exc}") from exc
        one.done.addTimeout(timeout, self.clock)
        try:
            output = yield one.done
        except defer.TimeoutError as exc:
            proto.transport.abortConnection()
            raise ConsoleError(f"{command!r}: no end of output in {timeout} s") from exc
        return output

    def reload_module(self, module: str) -> defer.Deferred[str]:
        """``module reload <module>``; fails unless Asterisk says it reloaded."""
        def check(output: str) -> str:
            if "reloaded successfully" not in output:
                raise ConsoleError(f"module reload {module}: {output.strip()!r}")
            return output
        return self.run(f"module reload {module}").addCallback(check)
