"""Owners and modes of the state directory, set without ever following a link."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from pbx.privilege import RunUser, private_file, run_user, secure_state


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def layout(tmp_path: Path) -> tuple[Path, Path, Path, Path]:
    state = tmp_path / "state"
    run = state / "run"
    etc, log = run / "etc", run / "log"
    for d in (etc, log / "cel-custom"):
        d.mkdir(parents=True)
    (etc / "pjsip.conf").write_text("secret")
    (log / "cel-custom" / "Master.csv").write_text("row\n")
    for p in (state, run, etc, log, etc / "pjsip.conf"):
        os.chmod(p, 0o777 if p.is_dir() else 0o666)
    return state, run, etc, log


def test_given_open_modes_when_secured_then_nothing_is_left_to_others(tmp_path: Path) -> None:
    """State 0700; the shared run directory 0750; configuration and Asterisk's files 0640,
    their directories 0750."""
    state, run, etc, log = layout(tmp_path)
    secure_state(state, shared=run, reads=[etc], writes=[log], user=None)
    assert mode(state) == 0o700 and mode(run) == 0o750
    assert mode(etc) == mode(log) == mode(log / "cel-custom") == 0o750
    assert mode(etc / "pjsip.conf") == mode(log / "cel-custom" / "Master.csv") == 0o640


@pytest.mark.skipif(os.geteuid() != 0, reason="changing owners needs root")
def test_given_links_planted_by_asterisk_when_secured_then_their_targets_are_untouched(
        tmp_path: Path) -> None:
    """Links in a directory Asterisk owns, to a file and to a directory of root's, are not
    followed: the targets keep their owner and mode while Asterisk's own files change."""
    state, run, etc, log = layout(tmp_path)
    victim_dir = tmp_path / "victim"
    victim_dir.mkdir(mode=0o700)
    victim = victim_dir / "shadow"
    victim.write_text("root only")
    os.chmod(victim, 0o600)
    (log / "planted").symlink_to(victim)
    (log / "planted-dir").symlink_to(victim_dir)
    user = RunUser("asterisk", "asterisk", 64991, 64991)
    secure_state(state, shared=run, reads=[etc], writes=[log], user=user)
    assert (victim.stat().st_uid, mode(victim)) == (0, 0o600)
    assert (victim_dir.stat().st_uid, mode(victim_dir)) == (0, 0o700)
    assert (log / "cel-custom" / "Master.csv").stat().st_uid == 64991
    assert (etc / "pjsip.conf").stat().st_uid == 0
    assert (etc / "pjsip.conf").stat().st_gid == 64991


def test_given_database_made_by_a_library_when_made_private_then_0600(tmp_path: Path) -> None:
    """A database file another library would create 0644 is made 0600 first (SQLite's
    journal and WAL files copy its mode)."""
    db = tmp_path / "siaga.db"
    old = os.umask(0o022)
    try:
        private_file(db)
    finally:
        os.umask(old)
    assert mode(db) == 0o600
    os.chmod(db, 0o644)
    private_file(db)
    assert mode(db) == 0o600


def test_given_rootfs_without_the_account_when_looked_up_then_none(tmp_path: Path) -> None:
    """No asterisk account in the root filesystem: Asterisk keeps the starting user (and the
    caller decides), rather than a guessed uid."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    (tmp_path / "etc/group").write_text("root:x:0:\n")
    assert run_user(tmp_path) is None


def test_given_umask_022_when_a_device_is_enrolled_on_a_fresh_center_then_files_private(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`siaga device add` before the server ever ran creates the state directory, the
    secrets and the database: none of them readable by others, under umask 022."""
    from dispatcher.cli import main
    from tests.harness import EXAMPLE_CONFIG

    state = tmp_path / "state"
    old = os.umask(0o022)
    try:
        assert main(["device", "add", "--config", str(EXAMPLE_CONFIG), "--state-dir",
                     str(state), "app-1", "--auth", "hmac"]) == 0
    finally:
        os.umask(old)
    capsys.readouterr()
    assert mode(state) == 0o700
    made = sorted(state.iterdir())
    assert [p.name for p in made if p.name.startswith("siaga.db")]
    assert {p.name: mode(p) for p in made} == {p.name: 0o600 for p in made}
