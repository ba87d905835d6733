"""``siaga backup`` / ``siaga restore`` on SQLite and on a real PostgreSQL: a restored center
gives the same supervisors' report, keeps its recordings and its phones' passwords, and
nothing readable by others is written."""

from __future__ import annotations

import datetime as dt
import itertools
import os
import stat
from pathlib import Path

import pytest
import yaml
from sqlalchemy.orm import Session, sessionmaker

from dispatcher.calllog import db, report_figures, store_callbacks, store_journeys
from dispatcher.cli import main
from dispatcher.config.loader import load_center
from dispatcher.credentials import ensure_credentials
from tests.harness import EXAMPLE_CONFIG
from tests.unit.calllog.test_report_figures import DAY, NOW, day_of_calls

_names = itertools.count()


def fill(sessions: sessionmaker[Session]) -> None:
    """The report tests' day of calls, and callbacks done and owed."""
    with db.transaction(sessions) as s:
        for record in day_of_calls():
            store_journeys.save_journey(s, record)
        in_day = dt.datetime(2026, 11, 27, 5, 0, tzinfo=dt.UTC)
        done = store_callbacks.create_callback(s, "0812004", origin_linkedid="c4", now=in_day)
        store_callbacks.set_callback_state(s, done.id, "done", now=in_day)
        store_callbacks.create_callback(s, "0812222", origin_linkedid="c6", now=in_day)


def report_of(url: str) -> dict:
    """The supervisors' report of the test day over the database at ``url``."""
    engine = db.make_engine(url)
    try:
        with db.make_sessionmaker(engine)() as s:
            return report_figures.build_report(s, DAY, now=NOW)
    finally:
        engine.dispose()


def center_config(tmp_path: Path, db_url: str) -> Path:
    """The example city on the test database."""
    doc = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    doc["database"] = {"url": db_url}
    path = tmp_path / "center.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    return path


def empty_target(request: pytest.FixtureRequest, db_url: str, tmp_path: Path) -> str:
    """A new, empty database of the same kind as ``db_url``."""
    if db_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / 'restored-db' / 'siaga.db'}"
    server = request.getfixturevalue("postgres_server")
    name = f"siaga_restored_{os.getpid()}_{next(_names)}"
    server.admin(f'CREATE DATABASE "{name}"')
    request.addfinalizer(lambda: server.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    return server.url(name)


def modes(folder: Path) -> set[tuple[str, int]]:
    """(kind, permission bits) of everything under ``folder``, itself included."""
    out = {("dir", stat.S_IMODE(folder.stat().st_mode))}
    for path in folder.rglob("*"):
        out.add(("dir" if path.is_dir() else "file", stat.S_IMODE(path.stat().st_mode)))
    return out


def test_given_a_center_when_backed_up_and_restored_into_a_fresh_state_dir_then_all_is_equal(
        request: pytest.FixtureRequest, db_url: str, sessions: sessionmaker[Session],
        tmp_path: Path) -> None:
    """Backup of a center with a day of calls, recordings and secrets; restore into a new
    state directory and an empty database: the report over it equals the original's, the
    recordings and secrets are byte for byte the same, and every file is 0600 in 0700
    folders."""
    fill(sessions)
    config = center_config(tmp_path, db_url)
    state = tmp_path / "state"
    center = load_center(config, state_dir=state)
    creds = ensure_credentials(center)
    (state / "recordings").mkdir(parents=True)
    (state / "recordings" / "c1.wav").write_bytes(os.urandom(5000))
    (state / "recordings" / "c7.wav").write_bytes(os.urandom(3000))
    out = tmp_path / "backup"

    assert main(["backup", "--config", str(config), "--state-dir", str(state),
                 "--out", str(out)]) == 0
    assert modes(out) <= {("dir", 0o700), ("file", 0o600)}

    target = empty_target(request, db_url, tmp_path)
    new_state = tmp_path / "new-state"
    assert main(["restore", "--config", str(config), "--state-dir", str(new_state),
                 "--from", str(out), "--db", target]) == 0

    assert report_of(target) == report_of(db_url)
    assert report_of(target)["summary"]["offered"] == 8  # the day's calls are really there
    for name in ("c1.wav", "c7.wav"):
        assert (new_state / "recordings" / name).read_bytes() == (
            state / "recordings" / name).read_bytes()
    restored = ensure_credentials(center.with_overrides(state_dir=new_state))
    assert restored.password(center.operators[0].extension) == creds.password(
        center.operators[0].extension)
    assert modes(new_state) <= {("dir", 0o700), ("file", 0o600)}


def test_given_a_restored_center_when_restored_again_over_it_then_refused_and_unchanged(
        request: pytest.FixtureRequest, db_url: str, sessions: sessionmaker[Session],
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A restore never overwrites: into a state directory that is not empty, or a database
    that has tables (the center's own), it stops with a reason and changes nothing."""
    fill(sessions)
    config = center_config(tmp_path, db_url)
    state = tmp_path / "state"
    ensure_credentials(load_center(config, state_dir=state))
    out = tmp_path / "backup"
    assert main(["backup", "--config", str(config), "--state-dir", str(state),
                 "--out", str(out)]) == 0
    before = report_of(db_url)
    # Into the center's own database (its config's URL): refused.
    assert main(["restore", "--config", str(config), "--state-dir", str(tmp_path / "n1"),
                 "--from", str(out)]) == 1
    assert "restore into a new" in capsys.readouterr().err
    assert not (tmp_path / "n1").exists()
    # Into the center's own state directory: refused.
    target = empty_target(request, db_url, tmp_path)
    assert main(["restore", "--config", str(config), "--state-dir", str(state),
                 "--from", str(out), "--db", target]) == 1
    assert "not empty" in capsys.readouterr().err
    assert report_of(db_url) == before


def test_given_a_damaged_backup_when_restored_then_refused_before_writing_anything(
        request: pytest.FixtureRequest, db_url: str, sessions: sessionmaker[Session],
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """One recording changed after the backup: the manifest's checksum catches it and the
    new state directory is not even created."""
    fill(sessions)
    config = center_config(tmp_path, db_url)
    state = tmp_path / "state"
    (state / "recordings").mkdir(parents=True)
    (state / "recordings" / "c1.wav").write_bytes(b"RIFF" + os.urandom(100))
    out = tmp_path / "backup"
    assert main(["backup", "--config", str(config), "--state-dir", str(state),
                 "--out", str(out)]) == 0
    (out / "recordings" / "c1.wav").write_bytes(b"RIFF" + os.urandom(100))
    target = empty_target(request, db_url, tmp_path)
    assert main(["restore", "--config", str(config), "--state-dir", str(tmp_path / "n"),
                 "--from", str(out), "--db", target]) == 1
    assert "damaged" in capsys.readouterr().err
    assert not (tmp_path / "n").exists()
