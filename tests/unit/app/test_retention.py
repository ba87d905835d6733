"""Retention of recordings and CEL files: real files in tmp_path, a real SQLite call log, and
a fake clock that drives the service's periodic passes."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker
from twisted.internet import defer, task

from dispatcher.calllog import db, store_journeys
from dispatcher.calllog.models import Call, Callback, Incident
from dispatcher.config.model import Retention
from dispatcher.retention.policy import MIN_AGE, FileInfo, choose
from dispatcher.retention.service import MB, RetentionService

NOW = 1_800_000_000.0
DAY = 86400.0


@pytest.fixture
def sessions(tmp_path: Path) -> sessionmaker[Session]:
    """A fresh SQLite call log with its schema."""
    engine = db.make_engine(f"sqlite:///{tmp_path / 'siaga.db'}")
    db.upgrade(engine)
    return db.make_sessionmaker(engine)


def stamp(t: float) -> dt.datetime:
    """A UTC datetime."""
    return dt.datetime.fromtimestamp(t, dt.UTC)


def add_call(sessions: sessionmaker[Session], linkedid: str, outcome: str = "answered",
             incident_state: str | None = None, callback_state: str | None = None) -> None:
    """A call in the log; with an incident in ``incident_state`` and/or a callback owed."""
    with db.transaction(sessions) as s:
        incident = None
        if incident_state is not None:
            incident = Incident(state=incident_state, created_at=stamp(NOW - 40 * DAY),
                                updated_at=stamp(NOW - 40 * DAY))
            s.add(incident)
            s.flush()
        call = Call(linkedid=linkedid, started_at=stamp(NOW - 40 * DAY), outcome=outcome,
                    incident_id=incident.id if incident else None)
        s.add(call)
        s.flush()
        if callback_state is not None:
            s.add(Callback(number="0812", state=callback_state, origin_call_id=call.id,
                           created_at=stamp(NOW - 40 * DAY), updated_at=stamp(NOW - 40 * DAY)))


def recording(folder: Path, name: str, age_days: float, size: int = 1000) -> Path:
    """A real file of ``size`` bytes last written ``age_days`` before NOW."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(b"\0" * size)
    os.utime(path, (NOW - age_days * DAY, NOW - age_days * DAY))
    return path


def service(sessions: sessionmaker[Session], tmp_path: Path, settings: Retention,
            cel: Path | None = None, clock: task.Clock | None = None) -> RetentionService:
    """The service on a fake clock set to NOW; its threads replaced by direct calls."""
    clock = clock or task.Clock()
    clock.advance(NOW)

    def write(fn: Callable[..., Any], *args: Any) -> defer.Deferred[Any]:
        def run() -> Any:
            with db.transaction(sessions) as s:
                return fn(s, *args)
        return defer.maybeDeferred(run)

    return RetentionService(clock, settings, sessions, tmp_path / "recordings", cel,
                            blocking=lambda fn, *a: defer.maybeDeferred(fn, *a), write=write)


def passed(svc: RetentionService) -> None:
    """Let the fake clock reach the service's next pass."""
    svc.startService()
    assert svc.last is None  # nothing before the first interval
    svc.clock.advance(svc.settings.every_minutes * 60)  # type: ignore[attr-defined]
    assert svc.last is not None and not svc.last.problems, svc.last
    svc.stopService()


def test_given_an_old_recording_and_an_open_incidents_when_the_pass_runs_then_only_the_first_goes(
        sessions: sessionmaker[Session], tmp_path: Path) -> None:
    """Both are 40 days old with a 30-day limit: the closed call's recording is deleted, the
    open incident's (and the in-progress call's, and the owed callback's) are kept, and so is
    a recent one."""
    add_call(sessions, "100.1")
    add_call(sessions, "100.2", incident_state="talking")
    add_call(sessions, "100.3", outcome="in_progress")
    add_call(sessions, "100.4", outcome="abandoned_queue", callback_state="pending")
    add_call(sessions, "100.5", incident_state="closed")
    folder = tmp_path / "recordings"
    old = recording(folder, "100.1.wav", 40)
    kept = [recording(folder, f"100.{i}.wav", 40) for i in (2, 3, 4)]
    closed = recording(folder, "100.5.wav", 40)
    recent = recording(folder, "100.9.wav", 2)
    svc = service(sessions, tmp_path, Retention(recordings_max_age_days=30))
    passed(svc)
    assert not old.exists() and not closed.exists()
    assert all(p.exists() for p in kept) and recent.exists()
    assert svc.last.recordings.kept_protected == 3  # type: ignore[union-attr]


def test_given_a_size_cap_when_the_pass_runs_then_oldest_unprotected_go_first(
        sessions: sessionmaker[Session], tmp_path: Path) -> None:
    """Six 1 MB recordings, cap 3 MB, the oldest protected: the next three oldest go and
    the total ends at the cap."""
    add_call(sessions, "200.0", incident_state="new")
    folder = tmp_path / "recordings"
    files = [recording(folder, f"200.{i}.wav", 10 - i, size=MB) for i in range(6)]
    svc = service(sessions, tmp_path, Retention(recordings_max_total_mb=3))
    passed(svc)
    assert [p.exists() for p in files] == [True, False, False, False, True, True]
    assert svc.last.recordings.total_after == 3 * MB  # type: ignore[union-attr]


def test_given_the_call_log_unreadable_when_the_pass_runs_then_no_recording_is_deleted(
        tmp_path: Path) -> None:
    """Without knowing which incidents are open nothing is safe to delete: the pass fails
    for recordings and leaves every file."""
    engine = db.make_engine(f"sqlite:///{tmp_path / 'missing' / 'x.db'}")
    old = recording(tmp_path / "recordings", "1.1.wav", 400)
    svc = service(db.make_sessionmaker(engine), tmp_path, Retention(recordings_max_age_days=1))
    svc.startService()
    svc.clock.advance(3600)  # type: ignore[attr-defined]
    assert svc.last is not None and svc.last.recordings is None
    assert svc.last.problems and old.exists()


def test_given_no_recording_limit_when_the_pass_runs_then_neither_folder_nor_log_is_read(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default keeps every recording: the pass deletes nothing, and lists nothing (a
    folder of a file per call, read each hour for nothing, cost the server megabytes), nor
    asks the call log, here unreadable, which would fail the pass if it were asked."""
    from dispatcher.retention import service as retention_service

    def listed(*_args: Any, **_kw: Any) -> list[FileInfo]:
        raise AssertionError("the folder was listed")

    monkeypatch.setattr(retention_service, "scan", listed)
    engine = db.make_engine(f"sqlite:///{tmp_path / 'missing' / 'x.db'}")
    old = recording(tmp_path / "recordings", "1.1.wav", 4000)
    svc = service(db.make_sessionmaker(engine), tmp_path, Retention())
    passed(svc)
    assert svc.last.recordings is not None and not svc.last.recordings.deleted  # type: ignore[union-attr]
    assert old.exists()


def test_given_a_young_file_over_the_cap_when_chosen_then_it_is_kept() -> None:
    """A file written in the last hour (a call being recorded) is never deleted."""
    young = FileInfo(Path("a.wav"), 10 * MB, NOW - MIN_AGE / 2)
    doomed, result = choose([young], NOW, max_age=1, max_total=MB)
    assert doomed == [] and result.over_cap


def test_given_a_big_reconciled_cel_file_when_the_pass_runs_then_it_is_rotated_and_old_ones_pruned(
        sessions: sessionmaker[Session], tmp_path: Path) -> None:
    """Master.csv past rotate_mb and reconciled to its end is renamed with the time; a
    rotated file older than the limit is deleted; a recent rotated one stays."""
    cel_dir = tmp_path / "cel-custom"
    master = recording(cel_dir, "Master.csv", 0, size=2 * MB)
    ancient = recording(cel_dir, "Master-20200101T000000Z.csv", 500)
    fresh = recording(cel_dir, "Master-20261101T000000Z.csv", 20)
    with db.transaction(sessions) as s:
        st = master.stat()
        store_journeys.set_cel_cursor(s, str(master), st.st_ino, st.st_size)
    svc = service(sessions, tmp_path, Retention(cel_rotate_mb=1, cel_max_age_days=365),
                  cel=master)
    passed(svc)
    assert svc.last.rotated and svc.last.rotated.startswith("Master-")  # type: ignore[union-attr]
    assert not master.exists() and (cel_dir / svc.last.rotated).exists()  # type: ignore[union-attr,operator]
    assert not ancient.exists() and fresh.exists()


def test_given_a_cel_file_not_fully_reconciled_when_the_pass_runs_then_it_is_not_rotated(
        sessions: sessionmaker[Session], tmp_path: Path) -> None:
    """Records past the call log's cursor (a call in progress) keep the file in place."""
    master = recording(tmp_path / "cel-custom", "Master.csv", 0, size=2 * MB)
    with db.transaction(sessions) as s:
        store_journeys.set_cel_cursor(s, str(master), master.stat().st_ino, MB)
    svc = service(sessions, tmp_path, Retention(cel_rotate_mb=1), cel=master)
    passed(svc)
    assert svc.last.rotated is None and master.exists()  # type: ignore[union-attr]
