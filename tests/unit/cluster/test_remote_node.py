"""The call log of a node supervised on another machine: at each AMI login the start time
the node reports tells a restart (the calls up when AMI was lost are cut) from a lost
connection (they go on)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from twisted.internet import defer

from dispatcher.cluster.remote import RemoteNodeCallLog
from tests.unit.calllog import calllog_scenarios as sc
from tests.unit.calllog.calllog_fakes import ThreadedFakeReactor
from tests.unit.calllog.test_calllog_logins import FakeAmi, FakeClient, _call_up


class NodeClient(FakeClient):
    """A logged-in connection to a node that started at ``booted`` (or cannot say)."""

    def __init__(self, booted: str | None) -> None:
        super().__init__()
        self.booted = booted

    def corestatus(self) -> defer.Deferred[dict[str, str]]:
        if self.booted is None:
            return defer.fail(RuntimeError("no answer"))
        return defer.succeed({"CoreStartupDate": "2026-12-07", "CoreStartupTime": self.booted})


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[SimpleNamespace]:
    reactor = ThreadedFakeReactor()
    ami, cut = FakeAmi(), []
    svc = RemoteNodeCallLog(reactor, f"sqlite:///{tmp_path / 'log.db'}", sc.DIRECTORY,
                            ami=ami, on_cut=cut.extend)
    svc.prepare()
    svc.startService()
    yield SimpleNamespace(svc=svc, ami=ami, cut=cut, reactor=reactor)
    stopped = svc.stopService()
    reactor.pump_until(lambda: stopped.called)
    svc.engine.dispose()


def login(parts: SimpleNamespace, booted: str | None) -> NodeClient:
    client = NodeClient(booted)
    for listener in parts.ami.logins:
        listener(client)
    return client


def test_given_the_node_restarted_while_ami_was_away_then_its_calls_are_cut(
        parts: SimpleNamespace) -> None:
    """A caller in the node's queue, AMI lost, the node back with a new start time: the
    journey is closed as dropped and handed to ``on_cut`` once."""
    client = login(parts, "10:00:00")
    _call_up(parts, "a-3000.1")
    client.lose()
    login(parts, "10:05:12")
    assert [(r.linkedid, r.outcome) for r in parts.cut] == [("a-3000.1", "dropped")]
    assert parts.svc.close_cut() == []


@pytest.mark.parametrize("again", ["10:00:00", None])
def test_given_the_same_node_or_no_answer_when_logged_in_again_then_nothing_is_cut(
        parts: SimpleNamespace, again: str | None) -> None:
    """The same start time (only the connection was lost), or none readable: the calls
    are left to go on, and a later restart does not close them after the fact."""
    client = login(parts, "10:00:00")
    _call_up(parts, "a-3001.1")
    client.lose()
    login(parts, again)
    assert parts.cut == []
    login(parts, "10:09:00")
    assert parts.cut == []
