"""Retention inside a running center (`siaga up`): the periodic pass deletes an old
recording and keeps the one of an open incident, on the server's own threads and clock."""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dispatcher.calllog import rollups
from dispatcher.calllog.db import make_engine, make_sessionmaker, transaction
from dispatcher.calllog.models import Call, Incident
from tests.harness import SiagaProcess, running_center, wait_for

pytestmark = pytest.mark.asterisk


@pytest.fixture
def retention_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SiagaProcess]:
    """The example city with a pass every minute and recordings kept one day."""
    with running_center(tmp_path_factory.mktemp("retention-server"),
                        retention={"every_minutes": 1,
                                   "recordings": {"max_age_days": 1}}) as proc:
        yield proc


def old_file(folder: Path, name: str, days: float) -> Path:
    """A recording last written ``days`` ago."""
    path = folder / name
    path.write_bytes(b"RIFF" + b"\0" * 4000)
    t = time.time() - days * 86400
    os.utime(path, (t, t))
    return path


def test_given_old_recordings_when_the_server_runs_a_pass_then_only_the_closed_ones_go(
        retention_server: SiagaProcess) -> None:
    """Two 10-day-old recordings: one of a finished call, one of a call whose incident is
    still being worked on. Within two passes the first is gone; the second stays."""
    center = retention_server.center
    engine = make_engine(center.database_url)
    try:
        now = dt.datetime.now(dt.UTC)
        with transaction(make_sessionmaker(engine)) as s:
            incident = Incident(state="handed_to_agency", created_at=now, updated_at=now)
            s.add(incident)
            s.flush()
            s.add(Call(linkedid="1700000000.10", started_at=now, outcome="answered",
                       incident_id=incident.id))
            s.add(Call(linkedid="1700000000.20", started_at=now, outcome="answered"))
    finally:
        engine.dispose()
    folder = center.recordings_dir
    kept = old_file(folder, "1700000000.10.wav", 10)
    gone = old_file(folder, "1700000000.20.wav", 10)
    wait_for(lambda: not gone.exists(), 150, "the pass to delete the old recording")
    assert kept.exists()
    wait_for(lambda: "retention: deleted 1 recordings" in retention_server.output(), 10,
             "the pass's log line")


def test_given_a_running_center_when_backed_up_then_the_restore_has_its_log_and_secrets(
        retention_server: SiagaProcess, tmp_path: Path) -> None:
    """`siaga backup` while the server runs and writes (SQLite's online backup), then
    `siaga restore` into a new state directory: same calls, same report, same secrets."""
    import subprocess
    import sys

    from dispatcher.calllog.report_figures import build_report
    from dispatcher.calllog.report_period import ReportOptions

    center = retention_server.center
    engine = make_engine(center.database_url)
    now = dt.datetime.now(dt.UTC)
    try:
        with transaction(make_sessionmaker(engine)) as s:
            for i in range(50):
                s.add(Call(linkedid=f"1700000100.{i}", started_at=now, outcome="answered",
                           answer_seconds=float(i), duration_seconds=60.0))
            # Written around the call log's writer, so their report roll-ups are rebuilt here
            # as the migration's backfill does (the writer keeps them itself).
            s.flush()
            rollups.rebuild(s)
    finally:
        engine.dispose()
    siaga = str(Path(sys.executable).parent / "siaga")
    out, new_state = tmp_path / "backup", tmp_path / "restored"
    common = ["--config", str(retention_server.config)]
    subprocess.run([siaga, "backup", *common, "--state-dir", str(retention_server.state_dir),
                    "--out", str(out)], check=True, capture_output=True)
    done = subprocess.run([siaga, "restore", *common, "--state-dir", str(new_state),
                           "--from", str(out)], check=True, capture_output=True, text=True)
    assert str(new_state) in done.stdout
    day = now.date()
    options = ReportOptions(day - dt.timedelta(days=1), day + dt.timedelta(days=1))

    def report(url: str) -> dict:
        e = make_engine(url)
        try:
            with make_sessionmaker(e)() as s:
                return build_report(s, options, now=now)
        finally:
            e.dispose()

    restored_url = f"sqlite:///{new_state / 'siaga.db'}"
    assert report(restored_url) == report(center.database_url)
    assert report(restored_url)["summary"]["answered"] >= 50
    assert (new_state / "secrets.yaml").read_bytes() == (
        retention_server.state_dir / "secrets.yaml").read_bytes()
