"""The report's per-hour roll-ups: kept exact by the writer, and read into the same figures.

Journeys are generated at random (seeded) and written the ways the call log writes them: new
journeys, updates of one in progress, completion, a finished journey saved again, a late CEL
reconcile (ignored once finished), calls closed after AMI was cut, self-test calls, journeys
moved to another hour. After every transaction the stored roll-ups must equal a recomputation
from the rows, and the report read from them must equal the report read from the rows alone.
Each test runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session, sessionmaker

from dispatcher.calllog import report_figures, report_period, rollups, store_journeys
from dispatcher.calllog.models import AgencyRollup, Call, CallRollup
from dispatcher.calllog.records import JourneyRecord, LegRecord
from tests.db.conftest import db_url, engine, postgres_server, sessions  # noqa: F401

# 2026-11-27 00:00 in Makassar (UTC+8) is 2026-11-26 16:00 UTC.
MAKASSAR_DAY = dt.datetime(2026, 11, 26, 16, 0, tzinfo=dt.UTC).timestamp()
OUTCOMES = ["answered", "answered", "answered", "abandoned_ivr", "abandoned_queue",
            "unanswered", "dropped"]
# Few distinct values, so hours share a maximum and rewrites take it away.
ANSWER_SECONDS = [4.0, 9.5, 15.0, 15.000001, 20.0, 31.25]
NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)


def random_record(rng: random.Random, linkedid: str, start: float, complete: bool,
                  source: str = "ami") -> JourneyRecord:
    """A journey with random figures, legs and agencies, arriving at ``start``."""
    outcome = rng.choice(OUTCOMES)
    direction = "outbound" if rng.random() < 0.1 else "inbound"
    record = JourneyRecord(
        linkedid=linkedid,
        started_at=start,
        direction=direction,
        caller_number=rng.choice(["0811", "0812", "0813", "", "0814"]),
        category=rng.choice(["police", "fire", "health", None, ""]),
        outcome=outcome,
        queue_passes=rng.choice([0, 1, 1, 2]),
        source=source,
        test=rng.random() < 0.05,
        complete=complete,
    )
    duration = rng.choice([None, -0.5, 0.2, 2.9, 3.0, 4.99, 5.0, 7.5, 9.99, 10.0, 12.0, 700.0])
    if outcome == "answered":
        answer = rng.choice(ANSWER_SECONDS)
        record.answered_at = start + answer
        record.answered_by = rng.choice(["201", "202", "203"])
        talk = rng.choice([30.123456, 60.0, 90.5])
        record.legs.append(LegRecord("queue_wait", start + 3, ended_at=start + answer))
        record.legs.append(LegRecord("operator_talk", start + answer, operator=record.answered_by,
                                     ended_at=start + answer + talk))
        duration = answer + talk + 1
    if duration is not None:
        record.ended_at = start + duration
    for _ in range(rng.choice([0, 0, 1, 2])):
        at = start + rng.uniform(5, 50)
        result = rng.choice(["answered", "no_answer", "busy", "failed", "cancelled"])
        ring = rng.choice([2.0, 7.25, 7.25, 12.5])
        record.legs.append(LegRecord(
            "transfer_attempt", at, agency=rng.choice(["police", "fire", "health"]),
            answered_at=at + ring if result == "answered" else None, ended_at=at + 20,
            result=result, fallback=rng.random() < 0.3))
        if result == "answered":
            record.legs.append(LegRecord("agency_talk", at + ring,
                                         agency=record.legs[-1].agency,
                                         ended_at=rng.choice([None, at + ring + 40.5])))
    return record


def random_history(rng: random.Random, session_factory: sessionmaker[Session],
                   operations: int, check_each: bool) -> None:
    """Write ``operations`` random journey writes in random-sized transactions."""
    known: dict[str, float] = {}  # linkedid -> arrival
    ops = 0
    serial = 0
    while ops < operations:
        with session_factory() as session, session.begin():
            for _ in range(rng.randint(1, 6)):
                ops += 1
                roll = rng.random()
                if roll < 0.35 or not known:
                    serial += 1
                    linkedid = f"{1_800_000_000 + serial}.{serial}"
                    # Around the hour and day edges of a Makassar day.
                    # Around the hour and day edges of two Makassar days (08:00 is the UTC
                    # midnight between them, so one whole UTC day lies inside).
                    hours = rng.choice([-1, 0, 1, 7, 8, 9, 23, 24, 31, 32, 40, 47, 48])
                    start = MAKASSAR_DAY + hours * 3600 + rng.choice(
                        [-0.5, 0.0, 1.0, 1799.0, 3599.999])
                    known[linkedid] = start
                    complete = rng.random() < 0.6
                else:
                    linkedid = rng.choice(list(known))
                    start = known[linkedid]
                    if rng.random() < 0.15:  # the reconciled start is in another hour
                        start += rng.choice([-3600.0, 3600.0, 0.5])
                        known[linkedid] = start
                    complete = rng.random() < 0.7
                source = "cel" if rng.random() < 0.25 else "ami"
                store_journeys.save_journey(session, random_record(rng, linkedid, start,
                                                                   complete, source))
        if check_each:
            with session_factory() as session:
                assert rollups.differences(session) == []


def test_given_random_writes_and_rewrites_when_committed_then_rollups_equal_a_recomputation(
        sessions: sessionmaker[Session]) -> None:  # noqa: F811
    """Every transaction of inserts, in-progress updates, completions, rewrites, CEL
    reconciles and moved arrivals leaves the roll-ups equal to a recomputation from the rows
    (whole microseconds, counts and maxima alike)."""
    rng = random.Random(20261207)
    random_history(rng, sessions, 200, check_each=True)
    with sessions() as session:
        # Not vacuous: the history left rows of every kind, with maxima.
        kinds = set(session.scalars(select(CallRollup.kind).distinct()))
        assert kinds == {"all", "category", "operator", "category_day", "operator_day"}
        assert session.scalar(select(func.count()).where(CallRollup.answer_max.is_not(None)))
        assert session.scalar(select(func.count()).select_from(AgencyRollup))
        assert session.scalar(select(func.count()).where(Call.outcome == "in_progress"))


def test_given_a_transaction_that_fails_when_rolled_back_then_rollups_roll_back_with_it(
        sessions: sessionmaker[Session]) -> None:  # noqa: F811
    """A journey and its roll-ups are written in one transaction: a failure leaves neither."""
    rng = random.Random(5)
    random_history(rng, sessions, 40, check_each=False)
    with sessions() as session:
        before = rollups.stored(session)
    record = random_record(rng, "9.9", MAKASSAR_DAY + 3600, complete=True)
    record.outcome = "answered"
    record.answered_at, record.answered_by = MAKASSAR_DAY + 3610, "201"
    with pytest.raises(RuntimeError), sessions() as session, session.begin():
        store_journeys.save_journey(session, record)
        raise RuntimeError("the disk is gone")
    with sessions() as session:
        assert rollups.stored(session) == before
        assert rollups.differences(session) == []


def test_given_rows_written_without_rollups_when_rebuilt_then_they_equal_the_writers(
        sessions: sessionmaker[Session]) -> None:  # noqa: F811
    """The backfill (``rollups.rebuild``, run by migration 0008) writes exactly what the
    writer keeps."""
    random_history(random.Random(11), sessions, 80, check_each=False)
    with sessions() as session:
        kept = rollups.stored(session)
    with sessions() as session, session.begin():
        session.execute(CallRollup.__table__.delete())
        session.execute(AgencyRollup.__table__.delete())
        assert rollups.differences(session)  # the check sees roll-ups missing
        rollups.rebuild(session)
    with sessions() as session:
        assert rollups.stored(session) == kept


def _raw_and_rolled(session: Session, start: dt.datetime, end: dt.datetime,
                    options: report_period.ReportOptions) -> tuple[Any, Any]:
    """The four call tables and the agency table over ``[start, end)`` both ways."""
    in_period = and_(Call.started_at >= start, Call.started_at < end, Call.test.is_(False))
    short = and_(Call.outcome.in_(report_figures.ABANDONED),
                 Call.duration_seconds < options.short_abandon_seconds)
    raw = report_figures._call_groups(session, in_period, short, options)
    rolled = report_figures._rolled_groups(session, start, end, options)

    def tables(all_: list[dict[str, Any]], cat: list[dict[str, Any]],
               ops: list[dict[str, Any]]) -> dict[str, Any]:
        inbound = [g for g in all_ if g["direction"] == "inbound"]
        return {
            "summary": report_figures._fold(inbound),
            "outbound": sum(g["all"] for g in all_ if g["direction"] == "outbound"),
            "hourly": report_figures._hourly(inbound),
            "categories": report_figures._categories(
                [g for g in cat if g["direction"] == "inbound"]),
            "operators": report_figures._operators(
                session, [g for g in ops if g["direction"] == "inbound"]),
        }

    return (
        (tables(raw, raw, raw), report_figures._agencies(session, start, end)),
        (tables(rolled["all"], rolled["category"], rolled["operator"]),
         report_figures._rolled_agencies(session, start, end)),
    )


@pytest.fixture
def history(sessions: sessionmaker[Session]) -> Iterator[sessionmaker[Session]]:  # noqa: F811
    """A database holding a random history around a Makassar day."""
    random_history(random.Random(77), sessions, 150, check_each=False)
    yield sessions


@pytest.mark.parametrize("threshold", [5.0, 0.0, 3.0, 10.0])
@pytest.mark.parametrize("last_day", [27, 28])
def test_given_makassar_days_when_reported_then_rollups_give_the_raw_reports_figures(
        history: sessionmaker[Session], threshold: float, last_day: int) -> None:
    """The whole report for one or two days in Asia/Makassar (+08, no DST; two days hold a
    whole UTC day, read from day rows), for several whole-second short-abandon thresholds, is
    the same read from roll-ups as read from every call."""
    options = report_period.ReportOptions(dt.date(2026, 11, 27), dt.date(2026, 11, last_day),
                                          timezone="Asia/Makassar",
                                          short_abandon_seconds=threshold)
    with history() as session:
        rolled = report_figures.build_report(session, options, now=NOW)
        raw = report_figures.build_report(session, options, now=NOW, use_rollups=False)
    assert rolled == raw
    assert rolled["summary"]["offered"] > 10 and rolled["operators"] and rolled["agencies"]
    assert sum(h["offered"] for h in rolled["hourly"]) == rolled["summary"]["offered"]


@pytest.mark.parametrize("start_minute,end_minute", [(17, 43), (0, 59), (59, 1), (30, 30)])
def test_given_partial_hours_at_both_ends_when_reported_then_edges_come_from_the_rows(
        history: sessionmaker[Session], start_minute: int, end_minute: int) -> None:
    """A period starting and ending inside an hour: whole hours from the roll-ups, the
    partial ones from the calls, and the tables equal those read from the calls alone."""
    options = report_period.ReportOptions(dt.date(2026, 11, 27), dt.date(2026, 11, 27),
                                          timezone="Asia/Makassar")
    base = dt.datetime(2026, 11, 26, 15, 0, tzinfo=dt.UTC)
    start = base + dt.timedelta(minutes=start_minute, seconds=0.5)
    end = base + dt.timedelta(hours=49, minutes=end_minute)  # a whole UTC day inside
    assert rollups.edge_ranges(start, end)  # there are partial hours to read
    with history() as session:
        raw, rolled = _raw_and_rolled(session, start, end, options)
    assert rolled == raw
    assert raw[0]["summary"]["offered"] > 10


def test_given_a_period_inside_one_hour_when_reported_then_it_is_read_from_the_rows(
        history: sessionmaker[Session]) -> None:
    """Less than an hour: no roll-up row can be used, the rows alone decide."""
    options = report_period.ReportOptions(dt.date(2026, 11, 27), dt.date(2026, 11, 27),
                                          timezone="Asia/Makassar")
    start = dt.datetime(2026, 11, 26, 16, 0, 0, 500000, tzinfo=dt.UTC)
    end = start + dt.timedelta(minutes=59)
    assert rollups.hours(start, end)[0] == rollups.hours(start, end)[1]
    with history() as session:
        raw, rolled = _raw_and_rolled(session, start, end, options)
    assert rolled == raw


@pytest.mark.parametrize("timezone,threshold", [
    ("Asia/Kolkata", 5.0), ("Asia/Makassar", 4.5), ("Asia/Makassar", 12.0)])
def test_given_what_rollups_cannot_answer_when_reported_then_rows_are_read(
        history: sessionmaker[Session], timezone: str, threshold: float) -> None:
    """What the roll-ups cannot answer exactly (a +05:30 zone, a 4.5 s or 12 s threshold) is read
    from the calls: the report is the raw one."""
    options = report_period.ReportOptions(dt.date(2026, 11, 27), dt.date(2026, 11, 27),
                                          timezone=timezone, short_abandon_seconds=threshold)
    assert not report_figures._rollups_usable(options)
    with history() as session:
        assert report_figures.build_report(session, options, now=NOW) == \
            report_figures.build_report(session, options, now=NOW, use_rollups=False)


def test_given_short_second_buckets_then_every_whole_second_threshold_is_decided() -> None:
    """A duration's bucket says "shorter than t" exactly as the comparison does, for every
    whole-second threshold the roll-ups answer (0..SHORT_MAX) and the edge durations."""
    durations = [None, -3.0, -0.0001, 0.0, 0.5, 4.999999, 5.0, 5.000001, 9.999999, 10.0, 599.9,
                 600.0, 1e6]
    for outcome in ("abandoned_ivr", "abandoned_queue"):
        for duration in durations:
            bucket = rollups.short_second(outcome, duration)
            for threshold in range(0, rollups.SHORT_MAX + 1):
                expected = duration is not None and duration < threshold
                assert (bucket < threshold) == expected, (duration, threshold)
    assert rollups.short_second("answered", 1.0) == rollups.NEVER_SHORT


def test_given_calls_logged_before_0008_when_upgraded_then_rollups_are_backfilled(
        db_url: str) -> None:  # noqa: F811
    """Migration 0008 fills the roll-ups from the calls and legs already in the log."""
    from sqlalchemy import text

    from dispatcher.calllog import db

    assert db.upgrade(db_url, "0004") == "0004"
    engine = db.make_engine(db_url)  # noqa: F811
    try:
        arrival = dt.datetime(2026, 11, 27, 3, 10)
        with engine.begin() as connection:
            connection.execute(text(
                "INSERT INTO agencies (id, code, name, active) VALUES (1, 'police', 'Polisi', "
                "true)"))
            connection.execute(text(
                "INSERT INTO operators (id, code, name, active) VALUES (1, 'op201', 'A', true)"))
            for i, (outcome, answer, operator) in enumerate(
                    [("answered", 12.5, 1), ("answered", 30.0, 1), ("abandoned_ivr", None, None)]):
                connection.execute(text(
                    "INSERT INTO calls (id, linkedid, direction, caller_number, caller_name, "
                    "dialed, started_at, outcome, answered_by_id, queue_passes, answer_seconds, "
                    "talk_seconds, duration_seconds, source, test) VALUES (:id, :linkedid, "
                    "'inbound', '0812', '', '112', :at, :outcome, :operator, 1, :answer, 60.0, "
                    ":duration, 'ami', false)"),
                    {"id": i + 1, "linkedid": f"{i}.1", "at": arrival, "outcome": outcome,
                     "operator": operator, "answer": answer, "duration": 3.5})
            connection.execute(text(
                "INSERT INTO legs (call_id, seq, kind, channel, uniqueid, agency_id, "
                "call_started_at, started_at, result, ring_seconds, fallback) VALUES "
                "(1, 2, 'transfer_attempt', '', '', 1, :at, :at, 'answered', 7.5, false)"),
                {"at": arrival})
        assert db.upgrade(db_url) == db.head_revision()
        with db.make_sessionmaker(engine)() as session:
            assert rollups.differences(session) == []
            kept = rollups.stored(session)
        hour = dt.datetime(2026, 11, 27, 3, tzinfo=dt.UTC)
        assert kept.calls[(hour, "all", "inbound", "", 0, "answered", rollups.NEVER_SHORT)] == (
            [2, 42_500_000, 120_000_000, 0, 1, 1], 30.0)
        assert kept.calls[(hour, "all", "inbound", "", 0, "abandoned_ivr", 3)][0][0] == 1
        assert kept.agencies[(hour, 1)] == ([1, 1, 1, 0, 0, 0, 0, 0, 1, 7_500_000, 0], 7.5)
    finally:
        engine.dispose()
