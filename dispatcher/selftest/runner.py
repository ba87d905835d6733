"""Runs one self-test call in a child process and reads its result.

The child is :mod:`dispatcher.selftest.child` (``siaga probe``), spawned with an argv list and
a fixed environment; the passwords travel in that environment, never on the command line
(which every user of the machine can read). A child still running at the deadline is sent
SIGTERM, then SIGKILL; the test then counts as failed at the stage ``timeout``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessExitedAlready
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from dialplans.contract import SELFTEST_ENDPOINT as PROBE_ENDPOINT
from dispatcher.selftest.settings import SelfTest

__all__ = ["CALLER_PASSWORD_ENV", "DESK_PASSWORD_ENV", "ProbeReport", "ProbeRunner",
           "probe_argv"]

CALLER_PASSWORD_ENV = "SIAGA_SELFTEST_CALLER_PASSWORD"
DESK_PASSWORD_ENV = "SIAGA_SELFTEST_DESK_PASSWORD"
# What is kept of the child's output: its result is one short JSON line; anything longer is
# a fault, and must not grow the server's memory.
MAX_OUTPUT = 64 * 1024
KILL_GRACE = 5.0  # seconds between SIGTERM and SIGKILL


@dataclass
class ProbeReport:
    """One test call's result, as the server keeps it.

    ``stage`` is the last stage passed (see ``pbx.phone.probe.STAGES``), or ``timeout`` /
    ``crashed`` when the child gave no result. ``detail`` is the probe's whole JSON result.
    """

    ok: bool
    stage: str
    error: str | None
    started_at: float
    finished_at: float
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def duration(self) -> float:
        """Seconds the test took."""
        return self.finished_at - self.started_at


def probe_argv(settings: SelfTest, server: str, hotline: str, record_dir: Path | None,
               python: str = sys.executable) -> list[str]:
    """The child's argv for the configured test (passwords are read from its environment)."""
    argv = [python, "-m", "dispatcher.selftest.child",
            "--server", server, "--hotline", hotline,
            "--caller", PROBE_ENDPOINT, "--caller-password-env", CALLER_PASSWORD_ENV,
            "--answer-timeout", f"{settings.answer_seconds:g}"]
    if settings.digits:
        argv += ["--digits", settings.digits]
    if settings.desk:
        argv += ["--operator", settings.desk, "--operator-password-env", DESK_PASSWORD_ENV,
                 "--operator-timeout", f"{settings.ring_seconds:g}"]
    if record_dir is not None:
        argv += ["--record-dir", str(record_dir)]
    return argv


class _Child(ProcessProtocol):
    def __init__(self) -> None:
        self.out = bytearray()
        self.err = bytearray()
        self.ended: Deferred[int | None] = Deferred()

    def outReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted's name
        if len(self.out) < MAX_OUTPUT:
            self.out += data[: MAX_OUTPUT - len(self.out)]

    def errReceived(self, data: bytes) -> None:  # noqa: N802 - Twisted's name
        # The tail says most about a crash.
        self.err = (self.err + data)[-4096:]

    def processEnded(self, reason: Failure) -> None:  # noqa: N802 - Twisted's name
        code = 0 if reason.check(ProcessDone) else getattr(reason.value, "exitCode", None)
        self.ended.callback(code)


class ProbeRunner:
    """Spawns the probe child. Calling it returns a Deferred that fires with a
    :class:`ProbeReport` (never fails: a broken child is a failed test); cancelling the
    Deferred kills the child.

    ``reactor`` provides ``IReactorProcess`` and ``IReactorTime``; ``wall`` is the clock the
    report's times come from (epoch seconds).
    """

    log = Logger()

    def __init__(self, reactor: Any, argv: list[str], env: Mapping[str, str],
                 timeout: float, wall: Callable[[], float] | None = None) -> None:
        self.reactor = reactor
        self.argv = argv
        self.env = dict(env)
        self.timeout = timeout
        self.wall = wall or reactor.seconds

    def __call__(self) -> Deferred[ProbeReport]:
        """Start one test call."""
        started = self.wall()
        child = _Child()
        process = self.reactor.spawnProcess(child, self.argv[0], self.argv, env=self.env)
        state = {"timed_out": False, "cancelled": False}
        calls: list[Any] = []

        def signal(name: str) -> None:
            try:
                process.signalProcess(name)
            except ProcessExitedAlready:
                pass
            except OSError as exc:
                self.log.warn("self-test probe: cannot signal {name}: {exc}", name=name, exc=exc)

        def stop() -> None:
            signal("TERM")
            calls.append(self.reactor.callLater(KILL_GRACE, signal, "KILL"))

        def timed_out() -> None:
            state["timed_out"] = True
            stop()

        calls.append(self.reactor.callLater(self.timeout, timed_out))

        def cancel(_d: Deferred[ProbeReport]) -> None:
            state["cancelled"] = True
            stop()

        result: Deferred[ProbeReport] = Deferred(cancel)

        def ended(code: int | None) -> None:
            for call in calls:
                if call.active():
                    call.cancel()
            report = self._report(child, code, started, state["timed_out"])
            if not result.called:
                result.callback(report)

        child.ended.addCallback(ended)
        return result

    def _report(self, child: _Child, code: int | None, started: float,
                timed_out: bool) -> ProbeReport:
        finished = self.wall()
        if timed_out:
            return ProbeReport(False, "timeout", f"no result within {self.timeout:g} s",
                               started, finished)
        detail: dict[str, Any] = {}
        for line in reversed(bytes(child.out).decode("utf-8", "replace").splitlines()):
            if line.startswith("{"):
                try:
                    loaded = json.loads(line)
                except ValueError:
                    continue
                if isinstance(loaded, dict):
                    detail = loaded
                    break
        if not detail:
            tail = bytes(child.err).decode("utf-8", "replace").strip().splitlines()
            why = tail[-1] if tail else "no output"
            return ProbeReport(False, "crashed", f"the probe exited {code}: {why}"[:500],
                               started, finished)
        ok = bool(detail.get("ok")) and code == 0
        error = detail.get("error")
        return ProbeReport(ok, str(detail.get("stage", "start")),
                           str(error)[:500] if error else None, started, finished, detail)


