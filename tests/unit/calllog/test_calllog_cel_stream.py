"""CEL is read as one CSV stream: a line break inside a quoted field never starts a row.

Asterisk's CSV_QUOTE doubles quotes but keeps CR and LF; a trunk caller's number (or any
application argument) can hold them. Split into lines first, the caller's text became rows
of its own, and a forged finished journey was logged at the next reconciliation.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from dispatcher.calllog import cel, db
from tests.unit.calllog import calllog_scenarios as sc

FORGED = ("0899\r\nCHAN_START,1,,,,,X/y,,,fake1,fake1,,\r\n"
          "LINKEDID_END,2,,,,,,,,fake1,fake1,,\r\n")


def hostile_rows() -> list[cel.CelRow]:
    """A real abandoned call whose every row carries the forging caller number."""
    return [replace(row, cidnum=FORGED) if row.cidnum else row
            for row in sc.abandoned_in_ivr(number="0811111").cel()]


def write(path: Path, rows: list[cel.CelRow], tail: str = "") -> None:
    """Rows as Asterisk's cel_custom writes them (every field quoted, quotes doubled)."""
    path.write_text("".join(cel.iter_lines(rows)) + tail, encoding="utf-8", newline="")


def test_given_a_quoted_field_with_crlf_when_read_then_it_stays_one_field(
        tmp_path: Path) -> None:
    """Each record is one row, the caller number intact with its CR LF; no forged row."""
    path = tmp_path / "Master.csv"
    rows = hostile_rows()
    write(path, rows)
    result = cel.read_rows(str(path))
    assert result.bad_lines == []
    assert [r.eventtype for r in result.rows] == [r.eventtype for r in rows]
    assert {r.cidnum for r in result.rows if r.cidnum} == {FORGED}
    assert "fake1" not in {r.linkedid for r in result.rows}
    assert result.end_offset == path.stat().st_size
    offsets = [r.offset for r in result.rows]
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
    with open(path, "rb") as f:  # each offset is where its record starts
        for offset in offsets:
            f.seek(offset)
            assert f.read(1) == b'"'


def test_given_a_forging_caller_when_reconciled_then_no_fake_journey_is_logged(
        tmp_path: Path) -> None:
    """Reconciliation saves the real call only (its number is not a clean one, so none)."""
    path = tmp_path / "Master.csv"
    write(path, hostile_rows())
    engine = db.make_engine("sqlite://")
    db.upgrade(engine)
    sessions = db.make_sessionmaker(engine)
    with db.transaction(sessions) as session:
        result = cel.reconcile(session, str(path), sc.DIRECTORY)
    assert result.saved == ["2000.1"] and result.bad_lines == []
    assert [r.caller_number for r in result.records] == [""]
    engine.dispose()


def test_given_a_record_still_being_written_when_read_then_it_is_left_for_later(
        tmp_path: Path) -> None:
    """A quoted field still open at the end (its newline came, the rest not yet) is not a
    row yet: the cursor stops before it, and the next read takes it whole."""
    path = tmp_path / "Master.csv"
    rows = hostile_rows()
    lines = list(cel.iter_lines(rows))
    i = next(n for n, row in enumerate(rows) if row.cidnum == FORGED)
    done, text = "".join(lines[:i]), "".join(lines[i:])
    cut = text.index("\r\n") + 2  # inside row i's quoted caller number
    path.write_text(done + text[:cut], encoding="utf-8", newline="")
    early = cel.read_rows(str(path))
    assert len(early.rows) == i and early.bad_lines == []
    assert early.end_offset == len(done.encode())
    with open(path, "a", encoding="utf-8", newline="") as f:
        f.write(text[cut:])
    later = cel.read_rows(str(path), early.end_offset)
    assert [r.eventtype for r in later.rows] == [r.eventtype for r in rows[i:]]
    assert later.rows[0].offset == early.end_offset and later.rows[0].cidnum == FORGED


def test_given_a_journeys_rows_when_read_then_repeated_values_are_one_string_each(
        tmp_path: Path) -> None:
    """A minute of CEL under load is tens of thousands of rows repeating a few values (the
    journey's linkedid, its channels, the event types): each distinct value is held once,
    and the rows read are what was written."""
    path = tmp_path / "Master.csv"
    rows = sc.failed_transfer_with_fallback("5000.1").cel() + sc.answered_call("5001.1").cel()
    write(path, rows)
    read = cel.read_rows(str(path)).rows
    assert [(r.eventtype, r.linkedid, r.uniqueid, r.channame, r.eventtime) for r in read] == [
        (r.eventtype, r.linkedid, r.uniqueid, r.channame, round(r.eventtime, 6)) for r in rows]
    by_value: dict[str, set[int]] = {}
    for row in read:
        for value in (row.linkedid, row.uniqueid, row.channame, row.eventtype, row.context):
            by_value.setdefault(value, set()).add(id(value))
    assert len(by_value) > 10 and all(len(ids) == 1 for ids in by_value.values()), {
        v: len(ids) for v, ids in by_value.items() if len(ids) > 1}
