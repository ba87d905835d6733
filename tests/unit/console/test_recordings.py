"""Which recording file and which of its bytes (dispatcher.console.recordings)."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from dispatcher.calllog import db
from dispatcher.calllog.models import Call, Recording
from dispatcher.console.recordings import (
    ByteRange,
    NoRecording,
    RangeNotSatisfiable,
    byte_range,
    recent_calls,
    recording_file,
)

T0 = dt.datetime(2026, 12, 7, 10, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize("header, expected", [
    (None, None),
    ("bytes=0-99", ByteRange(0, 99, 1000)),
    ("bytes=100-", ByteRange(100, 999, 1000)),
    ("bytes=-10", ByteRange(990, 999, 1000)),
    ("bytes=-5000", ByteRange(0, 999, 1000)),  # more than the file: the whole of it
    ("bytes=900-5000", ByteRange(900, 999, 1000)),  # past the end: cut to it
    ("bytes=999-999", ByteRange(999, 999, 1000)),
    (" bytes=0-0 ", ByteRange(0, 0, 1000)),
    ("bytes=5-2", None),  # not a range: ignored
    ("bytes=0-99,200-299", None),  # several: the whole file
    ("items=0-99", None),
    ("bytes=-", None),
    ("bytes=abc-", None),
    ("bytes=0-99\r\nX: y", None),
    ("bytes=" + "9" * 25 + "-", None),  # absurd numbers: not read
])
def test_given_a_range_header_when_read_then_the_bytes_or_the_whole_file(
        header: str | None, expected: ByteRange | None) -> None:
    """One range of the file, clipped to its end; anything else ignored (the whole file)."""
    assert byte_range(header, 1000) == expected


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=5000-6000", "bytes=-0"])
def test_given_a_range_past_the_end_when_read_then_not_satisfiable(header: str) -> None:
    """A range with no byte of the file: 416, with the file's size to say why."""
    with pytest.raises(RangeNotSatisfiable) as refused:
        byte_range(header, 1000)
    assert refused.value.size == 1000


def test_given_a_range_when_sent_then_its_content_range_header() -> None:
    """``Content-Range: bytes first-last/size`` and the length of that many bytes."""
    span = ByteRange(100, 1099, 5000)
    assert (span.content_range, span.length) == ("bytes 100-1099/5000", 1000)


@pytest.fixture
def sessions() -> Iterator[sessionmaker[Session]]:
    engine = db.make_engine("sqlite://")
    db.upgrade(engine)
    yield db.make_sessionmaker(engine)
    engine.dispose()


def _call(sessions: sessionmaker[Session], linkedid: str, *paths: str, test: bool = False,
          minutes: int = 0, outcome: str = "answered") -> int:
    with db.transaction(sessions) as session:
        call = Call(linkedid=linkedid, caller_number="0811", started_at=T0 + dt.timedelta(
            minutes=minutes), outcome=outcome, test=test)
        call.recordings = [Recording(path=p, channel="PJSIP/x-1", started_at=T0)
                           for p in paths]
        session.add(call)
        session.flush()
        return call.id


def test_given_a_call_with_its_recording_when_asked_then_the_file_in_the_folder(
        sessions: sessionmaker[Session], tmp_path: Path) -> None:
    """The call's row names the file; it is returned resolved, inside the folder."""
    folder = tmp_path / "recordings"
    folder.mkdir()
    (folder / "1.1.wav").write_bytes(b"RIFF")
    call_id = _call(sessions, "1.1", str(folder / "1.1.wav"))
    with sessions() as session:
        assert recording_file(session, call_id, folder) == (folder / "1.1.wav").resolve()


@pytest.mark.parametrize("stored", ["/etc/passwd", "{folder}/../secrets.yaml",
                                    "{folder}/link.wav", "{folder}", "relative.wav"])
def test_given_a_row_leading_out_of_the_folder_when_asked_then_refused(
        sessions: sessionmaker[Session], tmp_path: Path, stored: str) -> None:
    """A row someone changed to name another file (directly, by .., by a link planted in
    the folder, the folder itself) gives nothing."""
    folder = tmp_path / "recordings"
    folder.mkdir()
    (tmp_path / "secrets.yaml").write_text("ami_secret: x\n")
    os.symlink(tmp_path / "secrets.yaml", folder / "link.wav")
    call_id = _call(sessions, "2.1", stored.format(folder=folder))
    with sessions() as session, pytest.raises(NoRecording):
        recording_file(session, call_id, folder)


def test_given_no_recording_when_asked_then_refused(sessions: sessionmaker[Session],
                                                    tmp_path: Path) -> None:
    """No row, or a file gone (retention removed it), or no such call: NoRecording."""
    none = _call(sessions, "3.1")
    gone = _call(sessions, "3.2", str(tmp_path / "3.2.wav"))
    with sessions() as session:
        for call_id in (none, gone, 999):
            with pytest.raises(NoRecording):
                recording_file(session, call_id, tmp_path)


def test_given_calls_when_listed_then_newest_first_without_test_calls(
        sessions: sessionmaker[Session], tmp_path: Path) -> None:
    """The supervisor's list: finished calls, newest first, whether each has a recording,
    never the center's own calls (self-test, supervisors' spy calls)."""
    old = _call(sessions, "4.1", str(tmp_path / "4.1.wav"), minutes=1)
    new = _call(sessions, "4.2", minutes=2, outcome="abandoned_queue")
    _call(sessions, "4.3", minutes=3, test=True)
    _call(sessions, "4.4", minutes=4, outcome="in_progress")
    with sessions() as session:
        listed = recent_calls(session)
    assert [(c["id"], c["recording"]) for c in listed] == [(new, False), (old, True)]
    assert listed[0]["started_at"] == (T0 + dt.timedelta(minutes=2)).timestamp()
