"""Report figures against a day of calls computed by hand.

The day (2026-11-27, Asia/Jakarta, UTC+7); times below are local. X = 0811000.

====  =====  ===========================  ========  ======  ====  =========
call  time   what                         answer s  talk s  op    category
====  =====  ===========================  ========  ======  ====  =========
c1    10:00  answered (X)                 9         60      201   police
c2    10:05  answered                     18        120     202   police
c3    11:00  answered (X)                 25        30      201   police
c4    11:10  abandoned in the menu, 12 s  -         -       -     -
c5    11:20  abandoned in the menu, 3 s   short: excluded (X)
c6    12:00  abandoned in the queue (X)   -         -       -     fire
c7    13:00  queued twice, answered       40        60      202   health
c8    14:00  failed transfer + fallback   10        97      201   police
c9    23:59:50 answered after midnight    15        60      201   police
c10   15:00  operator-first callback      (outbound: not offered)
====  =====  ===========================  ========  ======  ====  =========

Plus one call the day before and one at 00:30 the day after (outside the period).

Offered 8 (9 inbound, less c5). Answered 6; abandoned 2 (1 menu, 1 queue).
ASA (9+18+25+40+10+15)/6 = 19.5 s. Within 15 s: c1, c8, c9 = 3/8 = 37.5 %.
Within 20 s: c1, c2, c8, c9 = 4/8 = 50 %. AHT (60+120+30+60+97+60)/6 = 71.17 s.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from sqlalchemy.orm import Session

from dispatcher.calllog import (
    db,
    journey,
    report_figures,
    report_period,
    store_callbacks,
    store_journeys,
)
from tests.unit.calllog import calllog_scenarios as sc

X = "0811000"
HOUR = 3600.0
DAY = report_period.ReportOptions(dt.date(2026, 11, 27), dt.date(2026, 11, 27))
NOW = dt.datetime(2026, 11, 28, 1, 0, tzinfo=dt.UTC)


def day_of_calls() -> list[journey.JourneyRecord]:
    """The journeys of the table in the module docstring (T0 is 10:00 local)."""
    t = sc.T0
    timelines = [
        sc.answered_call("c1", t, number=X, answer_at=9, talk=60),
        sc.answered_call(
            "c2", t + 300, answer_at=18, talk=120, operator_ext="202", number="0812001"
        ),
        sc.answered_call("c3", t + HOUR, number=X, answer_at=25, talk=30),
        sc.abandoned_in_ivr("c4", t + HOUR + 600, after=12, number="0812004"),
        sc.abandoned_in_ivr("c5", t + HOUR + 1200, after=3, number=X),
        sc.abandoned_in_queue("c6", t + 2 * HOUR, after=20, number=X),
        sc.queued_twice("c7", t + 3 * HOUR),
        sc.failed_transfer_with_fallback("c8", t + 4 * HOUR),
        sc.answered_call("c9", t + 14 * HOUR - 10, answer_at=15, talk=60, number="0812009"),
        sc.callback_call("c10", t + 5 * HOUR),
        sc.answered_call("before", t - 24 * HOUR, number=X),
        sc.answered_call("after", t + 14.5 * HOUR, number=X),
    ]
    return [journey.run(tl.ami(), sc.DIRECTORY)[0] for tl in timelines]


@pytest.fixture
def session() -> Iterator[Session]:
    """An in-memory database holding the day of calls and three callbacks."""
    engine = db.make_engine("sqlite://")
    db.upgrade(engine)
    sessions = db.make_sessionmaker(engine)
    with db.transaction(sessions) as s:
        for record in day_of_calls():
            store_journeys.save_journey(s, record)
        in_day = dt.datetime(2026, 11, 27, 5, 0, tzinfo=dt.UTC)
        done = store_callbacks.create_callback(s, "0812004", origin_linkedid="c4", now=in_day)
        store_callbacks.set_callback_state(s, done.id, "done", now=in_day)
        store_callbacks.create_callback(s, "0812222", origin_linkedid="c6", now=in_day)
        store_callbacks.create_callback(s, "0819999", now=in_day - dt.timedelta(days=1))
    with sessions() as s:
        yield s
    engine.dispose()


def test_given_the_day_when_reported_then_offered_answered_abandoned_match_the_hand_count(
    session: Session,
):
    """8 offered (the 3 s menu abandon excluded), 6 answered, 2 abandoned (1 menu, 1 queue);
    the callback is outbound, not offered; the calls of other days are out."""
    s = report_figures.build_report(session, DAY, now=NOW)["summary"]
    assert (s["offered"], s["answered"], s["abandoned"]) == (8, 6, 2)
    assert (s["abandoned_ivr"], s["abandoned_queue"], s["short_abandons_excluded"]) == (1, 1, 1)
    assert (s["unanswered"], s["dropped"]) == (0, 0)
    assert (s["outbound_calls"], s["outbound_answered"]) == (1, 1)
    assert s["answered_percent"] == 75.0 and s["abandoned_percent"] == 25.0


def test_given_the_day_when_reported_then_asa_aht_and_service_levels_match(session: Session):
    """ASA 19.5 s, AHT 71.2 s, longest answer 40 s; 37.5 % within 15 s (target 90 %, not met),
    50 % within 20 s (target 95 %, not met)."""
    s = report_figures.build_report(session, DAY, now=NOW)["summary"]
    assert s["asa_seconds"] == 19.5
    assert s["aht_seconds"] == round(427 / 6, 1)
    assert s["max_answer_seconds"] == 40.0
    assert [
        (x["seconds"], x["answered_within"], x["percent"], x["target_percent"], x["met"])
        for x in s["service_levels"]
    ] == [(15, 3, 37.5, 90.0, False), (20, 4, 50.0, 95.0, False)]


def test_given_a_call_queued_twice_when_reported_then_it_counts_once(session: Session):
    """c7 went through the queue twice: one offered call, one answered, flagged requeued."""
    data = report_figures.build_report(session, DAY, now=NOW)
    assert data["summary"]["requeued"] == 1
    health = [c for c in data["categories"] if c["category"] == "health"]
    assert health == [
        {
            "category": "health",
            "offered": 1,
            "answered": 1,
            "abandoned": 0,
            "asa_seconds": 40.0,
            "aht_seconds": 60.0,
        }
    ]


def test_given_a_call_across_midnight_when_reported_then_it_counts_on_its_arrival_day(
    session: Session,
):
    """c9 arrived at 23:59:50 and was answered after midnight: it counts in hour 23 of the
    27th, not on the 28th (which has only the 00:30 call)."""
    data = report_figures.build_report(session, DAY, now=NOW)
    assert data["hourly"][23]["offered"] == 1 and data["hourly"][23]["answered"] == 1
    next_day = report_period.ReportOptions(dt.date(2026, 11, 28), dt.date(2026, 11, 28))
    s = report_figures.build_report(session, next_day, now=NOW)["summary"]
    assert (s["offered"], s["answered"]) == (1, 1)
    assert s["asa_seconds"] == 9.0  # the 00:30 call, not c9's 15 s


def test_given_the_day_when_reported_then_hours_are_local_and_sum_to_offered(session: Session):
    """Hourly distribution in Jakarta time."""
    hourly = report_figures.build_report(session, DAY, now=NOW)["hourly"]
    by_hour = {
        h["hour"]: (h["offered"], h["answered"], h["abandoned"], h["within_15"])
        for h in hourly
        if h["offered"]
    }
    assert by_hour == {
        10: (2, 2, 0, 1),
        11: (2, 1, 1, 0),
        12: (1, 0, 1, 0),
        13: (1, 1, 0, 0),
        14: (1, 1, 0, 1),
        23: (1, 1, 0, 1),
    }
    assert len(hourly) == 24


def test_given_the_day_when_reported_then_per_operator_figures_match(session: Session):
    """op201 answered c1, c3, c8, c9 (ASA 14.75, talk 247 s); op202 answered c2, c7."""
    report = report_figures.build_report(session, DAY, now=NOW)
    operators = {o["code"]: o for o in report["operators"]}
    assert set(operators) == {"op201", "op202"}
    op201, op202 = operators["op201"], operators["op202"]
    assert (op201["answered"], op201["talk_seconds"], op201["answered_within_15"]) == (4, 247.0, 3)
    assert op201["asa_seconds"] == round(59 / 4, 1)
    assert op201["aht_seconds"] == round(247 / 4, 1)
    assert (op202["answered"], op202["talk_seconds"], op202["asa_seconds"]) == (2, 180.0, 29.0)


def test_given_a_failed_transfer_when_reported_then_the_agency_row_shows_it(session: Session):
    """Police: 2 attempts, 1 answered after 6 s, 1 no-answer, 1 fallback, 60 s of talk."""
    (police,) = report_figures.build_report(session, DAY, now=NOW)["agencies"]
    assert police["code"] == "police"
    assert (police["transfers"], police["answered"], police["no_answers"], police["fallbacks"]) == (
        2,
        1,
        1,
        1,
    )
    assert (police["answer_seconds"], police["talk_seconds"]) == (6.0, 60.0)


def test_given_the_day_when_reported_then_categories_match(session: Session):
    """Police 5 (all answered, ASA 15.4), fire 1 abandoned, health 1, no category 1."""
    rows = {
        c["category"]: (c["offered"], c["answered"], c["abandoned"], c["asa_seconds"])
        for c in report_figures.build_report(session, DAY, now=NOW)["categories"]
    }
    assert rows == {
        "police": (5, 5, 0, 15.4),
        "fire": (1, 0, 1, None),
        "health": (1, 1, 0, 40.0),
        "": (1, 0, 1, None),
    }


def test_given_the_day_when_reported_then_callbacks_and_repeat_callers_match(session: Session):
    """Two callbacks made that day (one done, one pending), two open overall; X called 3
    counted times (its short abandon does not count)."""
    data = report_figures.build_report(session, DAY, now=NOW)
    assert data["callbacks"] == {
        "created": 2,
        "pending": 1,
        "ringing": 0,
        "done": 1,
        "failed": 0,
        "open_now": 2,
    }
    assert data["repeat_callers"] == {"numbers": 1, "calls": 3, "top": [{"number": X, "calls": 3}]}


@pytest.mark.parametrize(
    ("threshold", "offered", "abandoned_ivr", "excluded"),
    [
        (0.0, 9, 2, 0),
        (5.0, 8, 1, 1),
        (15.0, 7, 0, 2),
    ],
)
def test_given_a_short_abandon_threshold_when_reported_then_exclusions_follow_it(
    session: Session, threshold: float, offered: int, abandoned_ivr: int, excluded: int
):
    """The threshold is configurable: 0 keeps every abandon, 15 s also drops the 12 s one."""
    options = report_period.ReportOptions(DAY.start, DAY.end, short_abandon_seconds=threshold)
    s = report_figures.build_report(session, options, now=NOW)["summary"]
    assert (s["offered"], s["abandoned_ivr"], s["short_abandons_excluded"]) == (
        offered,
        abandoned_ivr,
        excluded,
    )
