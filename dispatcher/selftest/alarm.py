"""Telling the technicians: the alarm's command and webhook.

Both are optional (``selftest.alarm`` in the config) and both run on every change of the
alarm (raised, cleared). The command is an argv list run without a shell, with the alarm in
its environment (``SIAGA_ALARM`` = ``raised``/``cleared``, ``SIAGA_ALARM_STAGE``,
``SIAGA_ALARM_ERROR``, ``SIAGA_ALARM_JSON``); the webhook is POSTed the same JSON. Each has a
deadline; a failure of either is logged and never stops the server or the self-test.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks, succeed
from twisted.internet.error import ProcessDone, ProcessExitedAlready
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer
from zope.interface import implementer

from dispatcher.selftest.settings import SelfTest

__all__ = ["AlarmNotifier"]

# The environment the command gets: nothing of the server's own (its secrets stay there).
BASE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}


class _Command(ProcessProtocol):
    def __init__(self) -> None:
        self.ended: Deferred[int | None] = Deferred()

    def processEnded(self, reason: Failure) -> None:  # noqa: N802 - Twisted's name
        code = 0 if reason.check(ProcessDone) else getattr(reason.value, "exitCode", None)
        self.ended.callback(code)


class AlarmNotifier:
    """Runs the configured command and webhook for an alarm change.

    ``reactor`` provides ``IReactorProcess``, ``IReactorTime`` and TCP/TLS for the webhook's
    ``Agent``. :meth:`notify` returns a Deferred that always succeeds, with a dict saying
    how each channel went (for tests and the log).
    """

    log = Logger()

    def __init__(self, reactor: Any, settings: SelfTest, agent: Any = None) -> None:
        self.reactor = reactor
        self.settings = settings
        self.agent = agent
        self.commands_run = 0
        self.command_failures = 0
        self.webhook_failures = 0

    def notify(self, document: Mapping[str, Any]) -> Deferred[dict[str, str]]:
        """Tell the command and the webhook about ``document`` (the alarm as JSON)."""
        body = json.dumps(document, sort_keys=True)
        jobs: list[Deferred[str]] = []
        names: list[str] = []
        if self.settings.command:
            jobs.append(self._run_command(document, body))
            names.append("command")
        if self.settings.webhook:
            jobs.append(self._post(body))
            names.append("webhook")
        if not jobs:
            return succeed({})
        done = DeferredList(jobs, consumeErrors=True)
        return done.addCallback(
            lambda results: {name: (r if ok else "error") for name, (ok, r) in zip(
                names, results, strict=True)})

    @inlineCallbacks
    def _run_command(self, document: Mapping[str, Any], body: str):  # noqa: ANN202
        argv = list(self.settings.command)
        env = dict(BASE_ENV)
        env.update({
            "SIAGA_ALARM": str(document.get("alarm", "")),
            "SIAGA_ALARM_STAGE": str(document.get("stage") or ""),
            "SIAGA_ALARM_ERROR": str(document.get("error") or ""),
            "SIAGA_ALARM_JSON": body,
        })
        child = _Command()
        try:
            process = self.reactor.spawnProcess(child, argv[0], argv, env=env)
        except OSError as exc:
            self.command_failures += 1
            self.log.error("self-test alarm command {argv} could not start: {exc}",
                           argv=argv, exc=exc)
            return "not started"
        self.commands_run += 1

        def kill() -> None:
            try:
                process.signalProcess("KILL")
            except ProcessExitedAlready:
                pass

        deadline = self.reactor.callLater(self.settings.command_timeout_seconds, kill)
        code = yield child.ended
        if deadline.active():
            deadline.cancel()
            outcome = f"exit {code}"
        else:
            outcome = "killed"
        if code != 0:
            self.command_failures += 1
            self.log.error("self-test alarm command {argv} failed: {outcome}",
                           argv=argv, outcome=outcome)
        else:
            self.log.info("self-test alarm command {argv} ran", argv=argv)
        return outcome

    @inlineCallbacks
    def _post(self, body: str):  # noqa: ANN202
        url = self.settings.webhook
        assert url is not None
        timeout = self.settings.webhook_timeout_seconds
        agent = self.agent or Agent(self.reactor, connectTimeout=timeout)
        try:
            d = agent.request(b"POST", url.encode("utf-8"),
                              Headers({b"Content-Type": [b"application/json"],
                                       b"User-Agent": [b"siaga-selftest"]}),
                              _Body(body.encode("utf-8")))
            d.addTimeout(timeout, self.reactor)
            response = yield d
            d = readBody(response)
            d.addTimeout(timeout, self.reactor)
            yield d
        except Exception as exc:  # noqa: BLE001 - any failure is logged, none is fatal
            self.webhook_failures += 1
            self.log.error("self-test alarm webhook {url} failed: {exc!r}", url=url, exc=exc)
            return "error"
        if not 200 <= response.code < 300:
            self.webhook_failures += 1
            self.log.error("self-test alarm webhook {url} answered {code}", url=url,
                           code=response.code)
            return f"http {response.code}"
        self.log.info("self-test alarm webhook {url} answered {code}", url=url,
                      code=response.code)
        return f"http {response.code}"


@implementer(IBodyProducer)
class _Body:
    """A small body written at once (no cooperator: nothing global is involved)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.length = len(data)

    def startProducing(self, consumer: Any) -> Deferred[None]:  # noqa: N802 - Twisted's name
        consumer.write(self.data)
        return succeed(None)

    def pauseProducing(self) -> None:  # noqa: N802 - Twisted's name
        pass

    def resumeProducing(self) -> None:  # noqa: N802 - Twisted's name
        pass

    def stopProducing(self) -> None:  # noqa: N802 - Twisted's name
        pass
