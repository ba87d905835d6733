"""The call log at each AMI login (``CallLogService`` following an ``AMIService``): a new
run of Asterisk since the last login closes the calls that were up when AMI was lost; the
same Asterisk keeps them for CEL to end. A rule that lived in the server's builder."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from dispatcher.calllog.service import CallLogService
from tests.unit.calllog import calllog_scenarios as sc
from tests.unit.calllog.calllog_fakes import ThreadedFakeReactor
from tests.unit.calllog.test_calllog_service import up_until_hangup


class FakeAmi:
    """What the call log uses of an AMIService: subscribe_all and on_connected."""

    def __init__(self) -> None:
        self.all: list[Callable[[Any], object]] = []
        self.logins: list[Callable[[Any], object]] = []

    def subscribe_all(self, callback: Callable[[Any], object]) -> Callable[[], None]:
        self.all.append(callback)
        return lambda: self.all.remove(callback)

    def on_connected(self, listener: Callable[[Any], object]) -> None:
        self.logins.append(listener)


class FakeClient:
    """A logged-in connection; ``lose()`` drops it as the AMI client would."""

    def __init__(self) -> None:
        self.lost: list[Callable[[Any], object]] = []

    def on_connection_lost(self, callback: Callable[[Any], object]) -> None:
        self.lost.append(callback)

    def lose(self) -> None:
        for callback in self.lost:
            callback(self)


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[SimpleNamespace]:
    """A started call log on a fake AMI and a fake Asterisk; ``cut`` collects what it
    hears through ``on_cut``."""
    reactor = ThreadedFakeReactor()
    ami, asterisk, cut = FakeAmi(), SimpleNamespace(runs=1), []
    svc = CallLogService(reactor, f"sqlite:///{tmp_path / 'log.db'}", sc.DIRECTORY,
                         ami=ami, asterisk=asterisk, on_cut=cut.extend)
    svc.prepare()
    svc.startService()
    yield SimpleNamespace(svc=svc, ami=ami, asterisk=asterisk, cut=cut, reactor=reactor)
    stopped = svc.stopService()
    reactor.pump_until(lambda: stopped.called)
    svc.engine.dispose()


def _login(parts: SimpleNamespace) -> FakeClient:
    client = FakeClient()
    for listener in parts.ami.logins:
        listener(client)
    return client


def _call_up(parts: SimpleNamespace, linkedid: str) -> None:
    for event in up_until_hangup(sc.abandoned_in_queue(linkedid)):
        for callback in parts.ami.all:
            callback(SimpleNamespace(fields=event))


def test_given_asterisk_restarted_while_ami_was_away_when_logged_in_then_calls_are_cut(
        parts: SimpleNamespace) -> None:
    """A caller in the queue, AMI lost, Asterisk started again: at the next login the
    journey is closed as dropped and handed to ``on_cut`` (once)."""
    client = _login(parts)
    _call_up(parts, "3000.1")
    client.lose()
    parts.asterisk.runs = 2
    _login(parts)
    assert [(r.linkedid, r.outcome) for r in parts.cut] == [("3000.1", "dropped")]
    assert parts.svc.close_cut() == []


def test_given_the_same_asterisk_when_logged_in_again_then_nothing_is_cut(
        parts: SimpleNamespace) -> None:
    """AMI lost and back to the same Asterisk: the calls go on there, nothing is closed,
    and a later restart does not close them after the fact either."""
    client = _login(parts)
    _call_up(parts, "3001.1")
    client.lose()
    _login(parts)
    assert parts.cut == []
    parts.asterisk.runs = 2
    _login(parts)
    assert parts.cut == []


def test_given_a_stopped_call_log_when_ami_logs_in_then_it_takes_nothing(
        parts: SimpleNamespace) -> None:
    """Stopped, the call log lets go of AMI's events and ignores logins (AMIService keeps
    its login listeners)."""
    stopped = parts.svc.stopService()
    parts.reactor.pump_until(lambda: stopped.called)
    assert parts.ami.all == []
    client = _login(parts)
    assert client.lost == []
