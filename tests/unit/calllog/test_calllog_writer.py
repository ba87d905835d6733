"""The call log writer: writes leave the reactor thread at once and none is lost on stop."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from dispatcher.calllog import db, journey, store_journeys
from dispatcher.calllog.models import Call
from dispatcher.calllog.writer import CallLogRecorder, CallLogWriter, WriterStopped
from tests.unit.calllog import calllog_scenarios as sc
from tests.unit.calllog.calllog_fakes import ThreadedFakeReactor


class FakeClock:
    """A clock for the recorder (events carry their own timestamps anyway)."""

    def seconds(self) -> float:
        return 0.0


def fired(d: Deferred[Any]) -> Callable[[], bool]:
    """A condition: the Deferred has a result."""
    return lambda: d.called


def result_of(d: Deferred[Any]) -> Any:
    """The result of a fired Deferred (raises its failure)."""
    results: list[Any] = []
    d.addBoth(results.append)
    assert results, "the Deferred has not fired"
    if isinstance(results[0], Failure):
        results[0].raiseException()
    return results[0]


@pytest.fixture
def sessions(tmp_path: Path):  # noqa: ANN201
    """A session factory on an upgraded SQLite file."""
    engine = db.make_engine(f"sqlite:///{tmp_path / 'log.db'}")
    db.upgrade(engine)
    yield db.make_sessionmaker(engine)
    engine.dispose()


def count_calls(sessions: Any) -> int:
    """How many calls the database holds (read in a fresh session)."""
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Call)) or 0)


def test_given_many_journeys_when_stopped_then_every_one_is_committed(sessions: Any):
    """Submit 300 journeys and stop at once: all 300 are in the database when stop fires, in
    fewer transactions than writes (batching), and callbacks ran via callFromThread."""
    reactor = ThreadedFakeReactor()
    writer = CallLogWriter(reactor, sessions, max_batch=50)
    writes = [
        writer.save_journey(journey.run(sc.abandoned_in_ivr(f"{i}.1").ami(), sc.DIRECTORY)[0])
        for i in range(300)
    ]
    stopped = writer.stop()
    reactor.pump_until(fired(stopped))
    assert all(d.called for d in writes)
    assert count_calls(sessions) == 300
    assert writer.written == 300
    assert writer.batches < 300
    assert reactor.threads == {"calllog-writer"}


def test_given_a_write_when_submitted_then_submit_returns_before_the_database_is_touched(
    sessions: Any,
):
    """The reactor thread never waits: while the writer thread is blocked, submit still
    returns an unfired Deferred at once."""
    reactor = ThreadedFakeReactor()
    writer = CallLogWriter(reactor, sessions)
    gate = threading.Event()

    def blocked(session: Session) -> str:
        gate.wait(10)
        return "written"

    first = writer.submit(blocked)
    second = writer.save_journey(journey.run(sc.abandoned_in_ivr().ami(), sc.DIRECTORY)[0])
    assert not first.called and not second.called
    gate.set()
    flushed = writer.flush()
    reactor.pump_until(fired(flushed))
    assert result_of(first) == "written"
    assert second.called and count_calls(sessions) == 1
    reactor.pump_until(fired(writer.stop()))


def test_given_a_failing_write_in_a_batch_when_committed_then_only_it_fails(sessions: Any):
    """One bad write fails its own Deferred; the writes batched with it still commit."""
    reactor = ThreadedFakeReactor()
    writer = CallLogWriter(reactor, sessions, max_batch=100)
    gate = threading.Event()
    writer.submit(lambda session: gate.wait(10))  # hold the thread so the rest batch up

    def broken(session: Session) -> None:
        raise RuntimeError("disk on fire")

    good_before = writer.save_journey(
        journey.run(sc.abandoned_in_ivr("1.1").ami(), sc.DIRECTORY)[0]
    )
    bad = writer.submit(broken)
    good_after = writer.save_journey(journey.run(sc.abandoned_in_ivr("2.1").ami(), sc.DIRECTORY)[0])
    assert writer.backlog >= 3  # what the metrics call the writer's backlog
    gate.set()
    reactor.pump_until(fired(writer.flush()))
    with pytest.raises(RuntimeError, match="disk on fire"):
        result_of(bad)
    assert good_before.called and good_after.called
    assert count_calls(sessions) == 2
    assert writer.failed == 1 and writer.backlog == 0  # counted for the metrics
    reactor.pump_until(fired(writer.stop()))


def test_given_a_stopped_writer_when_a_write_comes_then_it_is_refused_loudly(sessions: Any):
    """After stop, a write fails with WriterStopped instead of vanishing."""
    reactor = ThreadedFakeReactor()
    writer = CallLogWriter(reactor, sessions)
    reactor.pump_until(fired(writer.stop()))
    late = writer.submit(lambda session: None)
    with pytest.raises(WriterStopped):
        result_of(late)


def test_given_ami_events_when_recorded_then_the_journey_reaches_the_database(sessions: Any):
    """The recorder glue: start notice and finished journey both go through the writer."""
    reactor = ThreadedFakeReactor()
    writer = CallLogWriter(reactor, sessions)
    recorder = CallLogRecorder(FakeClock(), journey.JourneyBuilder(sc.DIRECTORY), writer)
    writes: list[Deferred[Any]] = []
    for event in sc.answered_call().ami():
        writes += recorder.event_received(event)
    assert len(writes) == 2  # the start notice and the finished journey
    reactor.pump_until(fired(writer.stop()))
    with sessions() as session:
        call = store_journeys.get_call(session, "1000.1")
        assert call is not None and call.outcome == "answered"
        assert [leg.kind for leg in call.legs] == ["ivr", "queue_wait", "operator_talk"]


class DatabaseAway:
    """Stands for a database that refuses every write while ``away`` is set (as SQLite on a
    full disk or a restarting PostgreSQL do: an OperationalError from the driver)."""

    def __init__(self) -> None:
        self.away = True
        self.tried: list[str] = []

    def check(self, session: Session, what: str) -> None:
        self.tried.append(what)
        if self.away:
            raise OperationalError("INSERT INTO calls", {},
                                   sqlite3.OperationalError("database or disk is full"))


def held_metric(writer: CallLogWriter, state_dir: Path) -> float:
    """``siaga_calllog_writes_held`` as a scrape of the example center reads it."""
    from dispatcher.config.loader import load_center
    from dispatcher.metrics.collector import CenterCollector, Sources
    from pbx.ami.model import LiveModel
    from tests.harness import EXAMPLE_CONFIG
    from tests.unit.app.test_metrics import parse

    center = load_center(EXAMPLE_CONFIG, state_dir=state_dir)
    samples = parse(CenterCollector(Sources(LiveModel(lambda: 0.0), center, lambda: 0.0,
                                            writer=writer), None))
    return samples["siaga_calllog_writes_held"][0][1]


def test_given_the_database_away_when_journeys_come_then_they_are_held_and_written_on_return(
        sessions: Any, tmp_path: Path):
    """With the database refusing writes, journeys are held (their Deferreds unfired) and
    retried; an alert-like write (``submit``) fails at once instead of waiting behind them.
    Once the database is back, every held journey commits, in the order submitted."""
    reactor = ThreadedFakeReactor()
    writer = CallLogWriter(reactor, sessions, retry_interval=0.05)
    database = DatabaseAway()
    records = [journey.run(sc.abandoned_in_ivr(f"{i}.1").ami(), sc.DIRECTORY)[0]
               for i in range(5)]

    def save(session: Session, record: Any) -> None:
        database.check(session, record.linkedid)
        store_journeys.save_journey(session, record)

    held = [writer.submit_retrying(save, record) for record in records]
    alert = writer.submit(database.check, "alert")
    reactor.pump_until(fired(alert))
    with pytest.raises(OperationalError):
        result_of(alert)
    reactor.pump_until(lambda: database.tried.count("0.1") >= 3)  # retried, not dropped
    assert not any(d.called for d in held) and writer.held == 5
    assert count_calls(sessions) == 0
    assert held_metric(writer, tmp_path) == 5  # an operator sees the backlog on /metrics

    database.tried.clear()
    database.away = False
    reactor.pump_until(lambda: all(d.called for d in held))
    assert all(result_of(d) is None for d in held)
    assert count_calls(sessions) == 5 and writer.held == 0
    assert held_metric(writer, tmp_path) == 0
    assert database.tried == [r.linkedid for r in records]  # in order, once each
    reactor.pump_until(fired(writer.stop()))


def test_given_the_database_still_away_when_stopped_then_held_writes_fail_instead_of_hanging(
        sessions: Any):
    """Stopping with the database away: the held writes are tried once more and then fail
    (logged by their submitter); stop() fires."""
    reactor = ThreadedFakeReactor()
    writer = CallLogWriter(reactor, sessions, retry_interval=60)
    database = DatabaseAway()
    held = writer.submit_retrying(database.check, "journey")
    reactor.pump_until(lambda: writer.held == 1)
    stopped = writer.stop()
    reactor.pump_until(lambda: stopped.called and held.called)
    with pytest.raises(OperationalError):
        result_of(held)
    assert database.tried == ["journey", "journey"]
