"""The self-test's edges with fakes for the process table and the network: the probe child
(argv, environment, deadline, kill, output parsing) and the alarm's command and webhook
(failures logged, never fatal). The real child and a real webhook run in the e2e test."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet import defer, task
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.python.failure import Failure

from dispatcher.selftest.alarm import AlarmNotifier
from dispatcher.selftest.runner import (
    CALLER_PASSWORD_ENV,
    DESK_PASSWORD_ENV,
    KILL_GRACE,
    ProbeRunner,
    probe_argv,
)
from dispatcher.selftest.settings import PROBE_ENDPOINT, SelfTest


class FakeTransport:
    def __init__(self) -> None:
        self.signals: list[str] = []

    def signalProcess(self, sig: str) -> None:  # noqa: N802 - Twisted's name
        self.signals.append(sig)


class FakeReactor(task.Clock):
    """A clock that also records spawned processes; the test ends them by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.spawned: list[dict[str, Any]] = []

    def spawnProcess(self, proto, executable, args, env=None, **kw):  # noqa: ANN001, N802
        transport = FakeTransport()
        self.spawned.append({"proto": proto, "executable": executable, "args": list(args),
                             "env": dict(env or {}), "transport": transport})
        proto.makeConnection(transport)
        return transport

    def end(self, index: int, code: int = 0, out: bytes = b"", err: bytes = b"") -> None:
        proto = self.spawned[index]["proto"]
        if out:
            proto.outReceived(out)
        if err:
            proto.errReceived(err)
        reason = ProcessDone(0) if code == 0 else ProcessTerminated(exitCode=code)
        proto.processEnded(Failure(reason))


SETTINGS = SelfTest(every_minutes=1, desk="204", digits="0", ring_seconds=8,
                    answer_seconds=7, timeout_seconds=30)


def test_given_a_desk_when_the_argv_is_built_then_passwords_are_named_never_given() -> None:
    """The child's command line names the environment variables that hold the passwords:
    a command line is readable by every user of the machine, the environment is not."""
    argv = probe_argv(SETTINGS, "127.0.0.1:5060", "112", None, python="/py")
    assert argv[:3] == ["/py", "-m", "dispatcher.selftest.child"]
    assert argv[argv.index("--caller") + 1] == PROBE_ENDPOINT
    assert argv[argv.index("--caller-password-env") + 1] == CALLER_PASSWORD_ENV
    assert argv[argv.index("--operator") + 1] == "204"
    assert argv[argv.index("--operator-password-env") + 1] == DESK_PASSWORD_ENV
    assert argv[argv.index("--operator-timeout") + 1] == "8"
    assert argv[argv.index("--digits") + 1] == "0"
    no_desk = probe_argv(SelfTest(), "127.0.0.1:5060", "112", None, python="/py")
    assert "--operator" not in no_desk


def run(reactor: FakeReactor) -> tuple[defer.Deferred, list]:
    runner = ProbeRunner(reactor, ["/py", "-m", "x"], {CALLER_PASSWORD_ENV: "s3cret"},
                         timeout=30)
    results: list = []
    d = runner()
    d.addBoth(results.append)
    return d, results


def test_given_the_probe_prints_its_result_when_it_exits_then_the_report_says_so() -> None:
    """The last JSON line of the child's output is its result; exit 0 and ok: a pass."""
    reactor = FakeReactor()
    _d, results = run(reactor)
    assert reactor.spawned[0]["env"] == {CALLER_PASSWORD_ENV: "s3cret"}
    line = json.dumps({"ok": True, "stage": "done", "error": None})
    reactor.advance(4)
    reactor.end(0, 0, out=b"noise\n" + line.encode() + b"\n")
    (report,) = results
    assert report.ok and report.stage == "done" and report.duration == 4


def test_given_a_failing_probe_when_it_exits_then_the_stage_and_error_are_kept() -> None:
    """A probe that stopped at the IVR says where and why."""
    reactor = FakeReactor()
    _d, results = run(reactor)
    line = json.dumps({"ok": False, "stage": "ivr", "error": "operator 204 did not ring"})
    reactor.end(0, 1, out=line.encode())
    (report,) = results
    assert not report.ok and report.stage == "ivr" and "204" in report.error


def test_given_a_probe_that_crashes_when_it_exits_then_a_failed_report_with_stderr() -> None:
    """No JSON result (an import error, an abort in pjsua2): failed at 'crashed', with the
    last line of what it wrote to stderr."""
    reactor = FakeReactor()
    _d, results = run(reactor)
    reactor.end(0, 134, err=b"Traceback...\nAssertion failed: pjsua_call\n")
    (report,) = results
    assert not report.ok and report.stage == "crashed"
    assert "134" in report.error and "pjsua_call" in report.error


def test_given_a_probe_that_hangs_when_the_deadline_passes_then_term_then_kill() -> None:
    """At the deadline the child gets SIGTERM, KILL_GRACE later SIGKILL; the test fails at
    'timeout' once it is gone."""
    reactor = FakeReactor()
    _d, results = run(reactor)
    transport = reactor.spawned[0]["transport"]
    reactor.advance(29.9)
    assert transport.signals == []
    reactor.advance(0.1)
    assert transport.signals == ["TERM"]
    reactor.advance(KILL_GRACE)
    assert transport.signals == ["TERM", "KILL"]
    reactor.end(0, 137, out=json.dumps({"ok": True, "stage": "done"}).encode())
    (report,) = results
    assert not report.ok and report.stage == "timeout"


def test_given_a_running_probe_when_cancelled_then_the_child_is_terminated() -> None:
    """Cancelling (the server stopping) terminates the child; once it has gone, neither its
    deadline nor the SIGKILL that would follow fires."""
    reactor = FakeReactor()
    d, results = run(reactor)
    d.cancel()
    assert reactor.spawned[0]["transport"].signals == ["TERM"]
    assert results[0].check(defer.CancelledError)
    reactor.end(0, 143)
    assert len(results) == 1
    reactor.advance(100)
    assert reactor.spawned[0]["transport"].signals == ["TERM"]
    assert reactor.getDelayedCalls() == []


ALARM = {"alarm": "raised", "stage": "ivr", "error": "operator 204 did not ring"}


def test_given_a_command_when_notified_then_run_as_argv_with_the_alarm_in_its_environment(
) -> None:
    """The command is an argv list (no shell); the alarm travels in its environment, and
    nothing of the server's own environment (its secrets) does."""
    reactor = FakeReactor()
    settings = SelfTest(command=("/usr/local/bin/page-oncall", "--team", "noc"))
    results: list = []
    AlarmNotifier(reactor, settings).notify(ALARM).addCallback(results.append)
    spawned = reactor.spawned[0]
    assert spawned["executable"] == "/usr/local/bin/page-oncall"
    assert spawned["args"] == ["/usr/local/bin/page-oncall", "--team", "noc"]
    env = spawned["env"]
    assert env["SIAGA_ALARM"] == "raised" and env["SIAGA_ALARM_STAGE"] == "ivr"
    assert json.loads(env["SIAGA_ALARM_JSON"]) == ALARM
    assert CALLER_PASSWORD_ENV not in env and DESK_PASSWORD_ENV not in env
    reactor.end(0, 0)
    assert results == [{"command": "exit 0"}]


def test_given_a_command_that_hangs_or_fails_when_notified_then_killed_logged_never_fatal(
) -> None:
    """A command past its deadline is killed; a failing one is counted; notify() still
    succeeds."""
    reactor = FakeReactor()
    settings = SelfTest(command=("/bin/false",), command_timeout_seconds=5)
    notifier = AlarmNotifier(reactor, settings)
    results: list = []
    notifier.notify(ALARM).addCallback(results.append)
    reactor.advance(5)
    assert reactor.spawned[0]["transport"].signals == ["KILL"]
    reactor.end(0, 137)
    assert results == [{"command": "killed"}] and notifier.command_failures == 1


class FakeAgent:
    """Records requests; each answers as the test says."""

    def __init__(self, answer: Any) -> None:
        self.answer = answer
        self.requests: list[tuple[bytes, bytes, bytes]] = []

    def request(self, method, uri, headers, body):  # noqa: ANN001, ANN201
        chunks: list[bytes] = []

        class Consumer:
            def write(self, data: bytes) -> None:
                chunks.append(data)

        body.startProducing(Consumer())
        self.requests.append((method, uri, b"".join(chunks)))
        return self.answer()


def test_given_a_webhook_that_never_answers_when_notified_then_times_out_logged_never_fatal(
) -> None:
    """The webhook is POSTed the alarm as JSON; one that never answers is given up after
    its timeout, and notify() still succeeds."""
    reactor = FakeReactor()
    settings = SelfTest(webhook="http://127.0.0.1:9/hook", webhook_timeout_seconds=3)
    agent = FakeAgent(lambda: defer.Deferred())
    notifier = AlarmNotifier(reactor, settings, agent=agent)
    results: list = []
    notifier.notify(ALARM).addCallback(results.append)
    (method, uri, body) = agent.requests[0]
    assert method == b"POST" and uri == b"http://127.0.0.1:9/hook"
    assert json.loads(body) == ALARM
    reactor.advance(3)
    assert results == [{"webhook": "error"}] and notifier.webhook_failures == 1


def test_given_the_server_when_imported_then_pjsua2_is_not_loaded() -> None:
    """pjsua2 (its threads, its aborts) lives only in the self-test's child: building the
    server imports none of it."""
    import subprocess
    import sys

    code = ("import sys, dispatcher.app, dispatcher.serve; "
            "print(sorted(m for m in sys.modules if m == 'pjsua2' or m.startswith('pbx.phone')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
