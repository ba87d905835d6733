"""Telling systemd how the server is: ready once the center is up, and alive while the reactor
turns (``Type=notify`` and ``WatchdogSec=`` in the unit ``siaga install`` writes).

systemd passes ``$NOTIFY_SOCKET`` (a datagram socket, ``@`` for the abstract namespace) and,
with a watchdog, ``$WATCHDOG_USEC``. Outside systemd neither is set and nothing is sent. A
watchdog ping is sent from the reactor, so a reactor that stops turning stops the pings:
systemd then kills the server alone (KillMode=process), restarts it, and the new server adopts
the Asterisk that kept carrying the calls.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping

from twisted.internet import task
from twisted.internet.interfaces import IReactorTime


def notify_address(environ: Mapping[str, str]) -> str | bytes | None:
    """The socket address in ``$NOTIFY_SOCKET``, or None outside systemd."""
    path = environ.get("NOTIFY_SOCKET", "")
    if path.startswith("@"):
        return b"\0" + path[1:].encode()
    return path if path.startswith("/") else None


def datagram_sender(address: str | bytes) -> Callable[[bytes], None]:
    """A function that sends one datagram to ``address``."""

    def send(message: bytes) -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(message, address)

    return send


class Notifier:
    """READY=1 once, WATCHDOG=1 every half watchdog period while started."""

    def __init__(self, clock: IReactorTime, send: Callable[[bytes], None] | None,
                 watchdog_usec: int | None) -> None:
        self.send = send
        self.watchdog_usec = watchdog_usec
        self._loop: task.LoopingCall | None = None
        self._clock = clock

    @classmethod
    def from_environ(cls, clock: IReactorTime, environ: Mapping[str, str]) -> Notifier:
        """The notifier systemd's environment asks for (one that sends nothing outside)."""
        address = notify_address(environ)
        try:
            usec = int(environ.get("WATCHDOG_USEC", ""))
        except ValueError:
            usec = None
        # The watchdog is meant for one process: not for a child that inherited the variables.
        if environ.get("WATCHDOG_PID") not in (None, "", str(os.getpid())):
            usec = None
        return cls(clock, datagram_sender(address) if address else None,
                   usec if usec and usec > 0 else None)

    def _send(self, message: bytes) -> None:
        if self.send is not None:
            try:
                self.send(message)
            except OSError:
                pass  # systemd gone (a restart of the manager): nothing to tell

    def ping(self) -> None:
        """One watchdog ping now (long blocking steps before the reactor runs call it)."""
        if self.watchdog_usec is not None:
            self._send(b"WATCHDOG=1")

    def start_watchdog(self) -> None:
        """Ping every half period, from now on."""
        if self.send is None or self.watchdog_usec is None or self._loop is not None:
            return
        self._loop = task.LoopingCall(self._send, b"WATCHDOG=1")
        self._loop.clock = self._clock
        self._loop.start(self.watchdog_usec / 2e6, now=True)

    def ready(self, status: str = "") -> None:
        """The center is up."""
        self._send(b"READY=1" + (f"\nSTATUS={status}".encode() if status else b""))

    def stopping(self) -> None:
        """The server is stopping (systemd then waits TimeoutStopSec, not the watchdog)."""
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._send(b"STOPPING=1")
