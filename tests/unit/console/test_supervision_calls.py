"""A supervisor's spy call is the center's own: kept in the call log, out of the reports."""

from __future__ import annotations

import datetime as dt

from dispatcher.calllog import db, journey, report_figures, report_period, store_journeys
from tests.unit.calllog import calllog_scenarios as sc


def spy_call(linkedid: str = "s1", t0: float = sc.T0) -> sc.Timeline:
    """The supervisor's phone (290, no operator) rung by the server into the spy context:
    answered, 20 s on, hung up (to the call log it looks like a short call in the menu)."""
    tl = sc.Timeline(linkedid, t0)
    tl.channel(0.0, linkedid, f"PJSIP/290-{linkedid}", "201", "listen")
    tl.answer(1.0, linkedid)
    tl.mark(1.1, linkedid, "SUPERVISION", "listen")
    tl.hangup(21.0, linkedid, 16, by_self=True)
    tl.end(21.0)
    tl.events.sort(key=lambda e: float(e["Timestamp"]))
    tl.rows.sort(key=lambda r: r.eventtime)
    return tl


def test_given_a_spy_call_when_logged_live_or_from_cel_then_kept_as_the_centers_own() -> None:
    """The SIAGA_SUPERVISION mark makes the journey the center's own, from AMI and CEL."""
    from dispatcher.calllog.cel import build_journey

    live = journey.run(spy_call().ami(), sc.DIRECTORY)[0]
    assert live.test
    rebuilt = build_journey(spy_call().rows, sc.DIRECTORY)
    assert rebuilt is not None and rebuilt.test


def test_given_spy_calls_among_citizens_when_reported_then_only_citizens_count() -> None:
    """Two spy calls and a citizen's: the report counts one call, none abandoned."""
    engine = db.make_engine("sqlite://")
    db.upgrade(engine)
    sessions = db.make_sessionmaker(engine)
    records = [journey.run(tl.ami(), sc.DIRECTORY)[0] for tl in (
        spy_call("s1"), spy_call("s2", sc.T0 + 600), sc.answered_call("c1", sc.T0 + 900))]
    with db.transaction(sessions) as s:
        for record in records:
            store_journeys.save_journey(s, record)
    day = report_period.ReportOptions(dt.date(2026, 11, 27), dt.date(2026, 11, 27))
    with sessions() as s:
        summary = report_figures.build_report(s, day)["summary"]
    assert (summary["offered"], summary["answered"]) == (1, 1)
    engine.dispose()
