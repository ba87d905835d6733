"""The server's builder (``dispatcher.app.SiagaServer``): one typed accessor per part, each
part built once with what it needs, every part that starts a Service in one tree, started
in dependency order and stopped in reverse, with no subscription left behind."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from twisted.application.service import Service
from twisted.internet.testing import MemoryReactor

from dialplans.render import AsteriskPaths
from dispatcher.alerts.incident import IncidentInput
from dispatcher.app import Prepared, SiagaServer, build_server, part
from dispatcher.calllog.cel import ReconcileResult
from dispatcher.config.loader import load_center
from dispatcher.config.model import MetricsAccess
from dispatcher.credentials import ensure_credentials
from dispatcher.selftest.settings import SelfTest
from pbx.provision import AsteriskInstall
from tests.harness import EXAMPLE_CONFIG
from tests.unit.calllog import calllog_scenarios as sc
from tests.unit.calllog.calllog_fakes import ThreadedFakeReactor

# Every Service of the example center, in the order it starts (it stops in reverse).
START_ORDER = ["asterisk", "ami", "sip_guard", "calllog", "readers", "missed_calls",
               "alert_reads", "alerts", "retention_files", "retention", "selftest",
               "reactor_lag", "push", "http"]


class FakeReactor(MemoryReactor, ThreadedFakeReactor):
    """Listening and connecting recorded (nothing binds), time and thread hand-offs driven
    by the test."""

    def __init__(self) -> None:
        MemoryReactor.__init__(self)
        ThreadedFakeReactor.__init__(self)


def _prepared(tmp_path: Path, **overrides: Any) -> Prepared:
    center = load_center(EXAMPLE_CONFIG, state_dir=tmp_path)
    if overrides:
        center = center.with_overrides(**overrides)
    install = AsteriskInstall("/usr/sbin/asterisk", "22", "/usr/lib/asterisk/modules",
                              "/usr/share/asterisk")
    paths = AsteriskPaths.for_center(center, install.moddir, install.datadir)
    paths.make()
    return Prepared(center, install, paths, ensure_credentials(center))


@pytest.fixture
def reactor() -> FakeReactor:
    """A fake reactor for the whole server."""
    return FakeReactor()


@pytest.fixture
def server(tmp_path: Path, reactor: FakeReactor) -> Any:
    """The example center's server, built (not started)."""
    built = build_server(reactor, _prepared(tmp_path))
    yield built
    built.get_calllog().engine.dispose()


def test_given_a_center_when_built_then_its_services_join_in_dependency_order(
        server: SiagaServer) -> None:
    """Each Service joins the tree after the parts it was given: Asterisk first, the HTTP
    listener last; the parts that only answer calls (the model, the console, the hotline,
    the callback list, the site) are not in the tree."""
    assert [s.name for s in server] == START_ORDER
    assert all(isinstance(s, Service) for s in server)
    kept = {id(s) for s in server}
    for passive in (server.get_model(), server.get_console(), server.get_hotline(),
                    server.get_callbacks(), server.get_site()):
        assert id(passive) not in kept


def test_given_a_built_server_when_parts_are_asked_for_then_each_exists_once(
        server: SiagaServer) -> None:
    """An accessor gives the same part every time, and the parts built from it hold that
    same one: the API serves the server's alert service and hotline, the missed-call
    watcher feeds the hotline's callback list."""
    alerts = server.get_alerts()
    assert server.get_alerts() is alerts
    v1 = server.get_api().resource.children[b"v1"]
    assert v1.children[b"alerts"].alerts is alerts
    assert v1.children[b"callbacks"].hotline is server.get_hotline()
    assert server.get_hotline().callbacks is server.get_callbacks()
    assert server.get_missed_calls().callbacks is server.get_callbacks()
    assert alerts.ami is server.get_ami() and server.get_calllog().ami is server.get_ami()
    assert server.get_site().resource.children[b"metrics"] is server.get_metrics()
    assert server.get_site().resource.children[b"events"].hub is server.get_push()
    assert server.get_callbacks().on_change is not None
    assert server.get_alerts().feed.listeners


def test_given_no_selftest_and_no_metrics_when_built_then_neither_part_exists(
        tmp_path: Path, reactor: FakeReactor) -> None:
    """Optional parts are None and leave no trace: no self-test service, no /metrics."""
    prepared = _prepared(tmp_path, selftest=SelfTest(enabled=False),
                         metrics=MetricsAccess(enabled=False))
    server = build_server(reactor, prepared)
    try:
        assert server.get_selftest() is None and server.get_metrics() is None
        assert [s.name for s in server] == [n for n in START_ORDER if n != "selftest"]
        assert b"metrics" not in server.get_site().resource.children
    finally:
        server.get_calllog().engine.dispose()


def test_given_a_part_that_needs_itself_when_built_then_the_cycle_is_named(
        tmp_path: Path, reactor: FakeReactor) -> None:
    """A dependency cycle is a clear error naming the part, not a recursion overflow."""

    class Looped(SiagaServer):
        @part
        def get_model(self) -> Any:
            return self.get_model()

    with pytest.raises(RuntimeError, match="model needs itself"):
        Looped(reactor, _prepared(tmp_path)).get_model()


def test_given_a_journey_when_the_call_log_reports_it_then_the_features_hear_it(
        server: SiagaServer, reactor: FakeReactor) -> None:
    """The call log's two listeners reach the features through the builder: a hand-off
    goes to the incident, a call missed while the server was away onto the callback
    list."""
    reports: list[tuple[Any, ...]] = []
    server.get_alerts().report = lambda *args, **kw: reports.append((*args, kw))  # type: ignore[method-assign]
    calllog = server.get_calllog()
    calllog.builder.on_handoff(SimpleNamespace(incident_ref=5), "fire")  # type: ignore[misc]
    assert reports == [(5, IncidentInput.HAND_TO_AGENCY,
                        {"detail": "fire answered", "agency": "fire"})]

    from dispatcher.calllog import journey

    record = journey.run(sc.abandoned_in_queue(after=20.0, number="0812222").ami(),
                         sc.DIRECTORY)[0]
    reactor.advance(sc.T0 + 60)
    assert calllog.on_reconciled is not None
    calllog.on_reconciled(ReconcileResult(records=[record]))
    assert [e.number for e in server.get_callbacks().page(0, 10)] == ["0812222"]


class _Process(Service):
    """Stands for the Asterisk process (a unit test spawns none)."""


def test_given_a_started_server_when_stopped_then_no_feature_still_listens_to_ami(
        tmp_path: Path, reactor: FakeReactor) -> None:
    """Started, the call log, the missed-call watcher, the SIP guard and the alert service
    follow AMI's events; stopped (in reverse order), none of them does: what starts is a
    Service, and a Service that stops lets go."""

    class NoProcess(SiagaServer):
        @part
        def get_asterisk(self) -> Any:
            return _Process()

    server = NoProcess(reactor, _prepared(tmp_path))
    server.setup()
    events = server.get_ami().dispatcher
    before = (len(events._all), sum(map(len, events._by_name.values())))
    server.startService()
    try:
        assert all(s.running for s in server)
        started = (len(events._all), sum(map(len, events._by_name.values())))
        assert started[0] == before[0] + 2  # the call log and the missed-call watcher
        assert started[1] > before[1]  # the guard's security events, the alerts' events
        assert reactor.tcpServers[0][0] == server.center.http.port
    finally:
        stopped = server.stopService()
        reactor.pump_until(lambda: stopped.called)
        server.get_calllog().engine.dispose()
    assert not any(s.running for s in server)
    assert (len(events._all), sum(map(len, events._by_name.values()))) == before
