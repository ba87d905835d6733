"""The call log service the server runs: schema on start, live journeys, periodic CEL catch-up."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from dispatcher.calllog import cel, db, store_journeys
from dispatcher.calllog.models import Call, Operator
from dispatcher.calllog.service import CallLogService
from tests.unit.calllog import calllog_scenarios as sc
from tests.unit.calllog.calllog_fakes import ThreadedFakeReactor


def results(d: Deferred[Any]) -> list[Any]:
    """What a Deferred fired with (empty if not yet)."""
    out: list[Any] = []
    d.addBoth(out.append)
    return out


def write_cel(path: Path, *timelines: sc.Timeline, mode: str = "w") -> None:
    """Append the CEL rows of journeys to the file, as Asterisk would."""
    with open(path, mode, encoding="utf-8") as f:
        for tl in timelines:
            f.writelines(cel.iter_lines(tl.cel()))


@pytest.fixture
def reactor() -> ThreadedFakeReactor:
    """A clock the test advances, with thread hand-offs the test pumps."""
    return ThreadedFakeReactor()


@pytest.fixture
def service(reactor: ThreadedFakeReactor, tmp_path: Path) -> Iterator[CallLogService]:
    """A prepared service on a SQLite file, with a CEL file path (not yet written)."""
    svc = CallLogService(
        reactor,
        f"sqlite:///{tmp_path / 'log.db'}",
        sc.DIRECTORY,
        cel_path=str(tmp_path / "Master.csv"),
        reconcile_every=60.0,
    )
    assert svc.prepare() == db.head_revision()
    yield svc
    if svc.running:
        stopped = svc.stopService()
        reactor.pump_until(lambda: stopped.called)
    svc.engine.dispose()


def count_calls(svc: CallLogService) -> int:
    """Calls in the log."""
    with svc.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Call)) or 0)


def test_given_calls_made_while_down_when_started_then_they_are_reconciled_at_once(
    service: CallLogService, reactor: ThreadedFakeReactor, tmp_path: Path
):
    """Start-up reconciles the CEL file before anything else is asked of it."""
    write_cel(tmp_path / "Master.csv", sc.abandoned_in_ivr(), sc.answered_call())
    service.startService()
    reactor.pump_until(lambda: count_calls(service) == 2)
    with service.sessions() as session:
        assert store_journeys.get_call(session, "1000.1").source == "cel"  # type: ignore[union-attr]


def test_given_a_running_service_when_a_minute_passes_then_new_cel_records_are_added(
    service: CallLogService, reactor: ThreadedFakeReactor, tmp_path: Path
):
    """Calls missed while AMI was disconnected appear at the next periodic pass."""
    path = tmp_path / "Master.csv"
    write_cel(path, sc.abandoned_in_ivr())
    service.startService()
    # The row is committed in the writer thread before the pass's end reaches the reactor:
    # wait for both, or the pass may still look in progress below.
    reactor.pump_until(lambda: count_calls(service) == 1 and service._waiters is None)
    write_cel(path, sc.abandoned_in_queue(), mode="a")
    reactor.advance(59)
    assert service._waiters is None  # nothing scheduled before the minute is up
    reactor.advance(1)
    reactor.pump_until(lambda: count_calls(service) == 2)


def test_given_two_requests_during_one_pass_when_it_ends_then_both_get_its_result(
    service: CallLogService, reactor: ThreadedFakeReactor, tmp_path: Path
):
    """A reconciliation asked for while one runs waits for it instead of starting another."""
    write_cel(tmp_path / "Master.csv", sc.queued_twice())
    service.writer.start()
    first, second = results(service.reconcile()), results(service.reconcile())
    reactor.pump_until(lambda: bool(first) and bool(second))
    assert first[0] is second[0]
    assert isinstance(first[0], cel.ReconcileResult) and first[0].saved == ["4000.1"]


def test_given_ami_events_when_fed_then_the_journey_is_logged_and_stop_drains(
    service: CallLogService, reactor: ThreadedFakeReactor
):
    """Live events reach the log through the writer; stopping commits what is queued."""
    service.startService()
    for event in sc.failed_transfer_with_fallback().ami():
        service.event_received(event)
    stopped = service.stopService()
    reactor.pump_until(lambda: stopped.called)
    with service.sessions() as session:
        call = store_journeys.get_call(session, "5000.1")
        assert call is not None and call.outcome == "answered" and call.source == "ami"


def test_given_a_broken_cel_pass_when_it_fails_then_the_caller_sees_the_failure(
    service: CallLogService, reactor: ThreadedFakeReactor, tmp_path: Path
):
    """A pass that fails (here: the CEL path is a directory) errbacks; nothing is hidden."""
    (tmp_path / "Master.csv").mkdir()
    service.writer.start()
    outcome = results(service.reconcile())
    reactor.pump_until(lambda: bool(outcome))
    assert isinstance(outcome[0], Failure)
    assert outcome[0].check(IsADirectoryError)


def test_given_the_center_config_when_prepared_then_operators_are_in_the_log(
    reactor: ThreadedFakeReactor, tmp_path: Path
):
    """``prepare(center)`` upgrades the schema and writes the config's operators."""
    from dispatcher.config.loader import load_center

    root = Path(__file__).resolve().parents[3]
    center = load_center(root / "config" / "siaga.example.yaml", state_dir=tmp_path)
    svc = CallLogService(reactor, f"sqlite:///{tmp_path / 'log.db'}", sc.DIRECTORY)
    svc.prepare(center)
    with svc.sessions() as session:
        codes = set(session.scalars(select(Operator.code)))
    svc.engine.dispose()
    assert codes == {op.extension for op in center.operators}


def up_until_hangup(timeline: sc.Timeline) -> list[dict[str, str]]:
    """The journey's AMI events up to (not including) its first hangup: a call still up."""
    events = timeline.ami()
    first = next(i for i, e in enumerate(events) if e.get("Event") in ("Hangup",
                                                                       "SoftHangupRequest"))
    return events[:first]


def test_given_calls_up_when_asterisk_died_then_their_journeys_are_closed_as_dropped(
    service: CallLogService, reactor: ThreadedFakeReactor
):
    """A caller waiting in the queue when AMI is lost; Asterisk turns out to have died
    (close_cut): the journey is closed at the moment of the loss, every channel hung up
    with cause 38, outcome dropped, and written. Had AMI come back to the same Asterisk
    (forget_cut), nothing would be closed: CEL ends those calls."""
    service.startService()
    for event in up_until_hangup(sc.abandoned_in_queue("3000.1")):
        service.event_received(event)
    reactor.advance(5)
    service.connection_lost()
    assert service.builder.journeys == {}
    records = service.close_cut()
    assert [(r.linkedid, r.outcome, r.hangup_cause, r.complete) for r in records] == [
        ("3000.1", "dropped", CallLogService.PBX_DIED_CAUSE, True)]
    flushed = service.writer.flush()
    reactor.pump_until(lambda: flushed.called)
    with service.sessions() as session:
        call = store_journeys.get_call(session, "3000.1")
        assert call is not None and call.outcome == "dropped" and call.ended_at is not None
    assert service.close_cut() == []  # once

    for event in up_until_hangup(sc.abandoned_in_queue("3001.1")):
        service.event_received(event)
    service.connection_lost()
    service.forget_cut()
    assert service.close_cut() == []
