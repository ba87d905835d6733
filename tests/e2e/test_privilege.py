"""Least privilege, tried as an attacker would: the AMI secret cannot run CLI commands or
programs, Asterisk does not run as root, and the center's files are nobody else's to read,
even when the server is started under a permissive umask."""

from __future__ import annotations

import os
import pwd
import signal
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from pbx.privilege import run_user
from pbx.provision import locate
from tests.e2e.test_calllog_server import hotline_call_answered_by_operator, logged_call
from tests.harness import RunningAsterisk, SiagaProcess, wait_for, write_test_config

pytestmark = pytest.mark.asterisk

# A line of dialplan that would run a shell as Asterisk's user: what an attacker holding the
# AMI secret would add if the `command` class were granted.
EVIL_DIALPLAN = "dialplan add extension 4666,1,System(id>/tmp/siaga-pwned) into public"


def ids_of(pid: int) -> tuple[list[int], list[int]]:
    """The real, effective, saved and filesystem uids and gids of a process."""
    fields = dict(line.split(":", 1) for line in
                  Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return ([int(x) for x in fields["Uid"].split()], [int(x) for x in fields["Gid"].split()])


def test_given_running_asterisk_when_its_process_is_read_then_it_is_not_root(
        asterisk: RunningAsterisk) -> None:
    """Every uid and gid of the running Asterisk is its own account's: not root, and not a
    number any host account has (the kernel would treat it as that account)."""
    assert asterisk.proc is not None
    uids, gids = ids_of(asterisk.proc.pid)
    expected = run_user(asterisk.prepared.install.rootfs)
    assert expected is not None
    assert set(uids) == {expected.uid} and set(gids) == {expected.gid}
    assert 0 not in uids and 0 not in gids
    if asterisk.prepared.install.rootfs is not None:
        assert expected.uid not in {p.pw_uid for p in pwd.getpwall()}


def test_given_server_ami_secret_when_attacker_sends_cli_and_system_actions_then_refused(
        asterisk: RunningAsterisk) -> None:
    """With the server's own AMI credentials: `Command` (adding dialplan that runs a shell),
    reloads and config writes, an Originate of System() and a read of SHELL() are all
    refused, and the dialplan is unchanged."""
    watch = asterisk.ami()
    attempts = {
        "Command": {"Command": EVIL_DIALPLAN},
        "Reload": {},
        "ModuleLoad": {"Module": "pbx_config.so", "LoadType": "reload"},
        "UpdateConfig": {"SrcFilename": "extensions.conf", "DstFilename": "extensions.conf",
                         "Action-000000": "Append", "Cat-000000": "public",
                         "Var-000000": "exten", "Value-000000": "4666,1,System(id)"},
        "Originate": {"Channel": "Local/112@public", "Application": "System",
                      "Data": "id>/tmp/siaga-pwned", "Async": "false"},
        "Getvar": {"Variable": "SHELL(id)"},
    }
    for name, fields in attempts.items():
        response = watch.action(name, **fields)
        assert response is not None, watch.no_answer(name)
        assert response.status == "Error", (name, response.keys)
    assert "4666" not in asterisk.cli("dialplan show public")
    assert not (Path(asterisk.prepared.install.rootfs or "/") / "tmp/siaga-pwned").exists()


def test_given_running_asterisk_when_files_checked_then_it_writes_only_its_own_dirs(
        asterisk: RunningAsterisk) -> None:
    """Asterisk's user owns its run, log, spool, astdb and recordings directories; the
    configuration and prompts are root's (group-readable), so a compromised Asterisk cannot
    rewrite the dialplan it will load next."""
    user = asterisk.prepared.run_user
    assert user is not None
    paths = asterisk.prepared.paths
    for tree in (paths.run, paths.log, paths.spool, paths.db, paths.recordings):
        st = tree.stat()
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (user.uid, 0o750), tree
    for tree in (paths.etc, paths.sounds):
        for path in [tree, *tree.rglob("*")]:
            st = path.lstat()
            assert st.st_uid == 0 and st.st_gid == user.gid, path
            assert stat.S_IMODE(st.st_mode) in (0o750, 0o640), path
    # A system Asterisk walks through the state directory to its run directory: it may
    # pass (0710 with its group), not list. In a root filesystem it never sees it.
    private = 0o700 if asterisk.prepared.install.rootfs is not None else 0o710
    assert stat.S_IMODE(asterisk.center.state_dir.stat().st_mode) == private


@pytest.fixture
def center_under_umask_022(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SiagaProcess]:
    """`siaga up` started from a process whose umask is 022 (files 0644 unless the center
    says otherwise)."""
    tmp = tmp_path_factory.mktemp("umask-center")
    old = os.umask(0o022)
    proc = SiagaProcess(write_test_config(tmp / "center.yaml"), tmp / "state")
    try:
        proc.start()
        yield proc
    finally:
        os.umask(old)
        proc.stop()


def expected_modes(server: SiagaProcess, uid: int) -> dict[Path, tuple[int, int]]:
    """(owner, mode) of the files whose exact modes matter."""
    state = server.state_dir
    run = server.center.run_dir
    install = locate()
    system_asterisk = install is not None and install.rootfs is None
    return {
        state: (0, 0o710 if system_asterisk else 0o700),
        state / "secrets.yaml": (0, 0o600),
        state / "operator-api.token": (0, 0o600),
        state / "siaga.db": (0, 0o600),
        run / "asterisk.out": (0, 0o600),
        run / "etc" / "manager.conf": (0, 0o640),
        run / "log" / "messages.log": (uid, 0o640),
        run / "log" / "cel-custom" / "Master.csv": (uid, 0o640),
    }


def test_given_umask_022_when_center_runs_calls_and_adopts_then_files_are_private_and_work(
        center_under_umask_022: SiagaProcess, phones) -> None:  # noqa: ANN001
    """Under umask 022: a call while the server is down is recorded and written to CEL by the
    unprivileged Asterisk; the restarted server adopts it, reloads it through the control
    socket, and reads the call back from CEL; the IVR's prompts played. Then no file or
    directory of the state directory is open to others, and the secrets, the database, the
    logs, CEL and the recording have their exact owners and modes."""
    server = center_under_umask_022
    pid = server.asterisk_pid()
    assert pid is not None
    uids, _gids = ids_of(pid)
    assert 0 not in uids
    uid = uids[0]

    server.signal(signal.SIGKILL)
    server.wait_exit(10)
    caller = "0812555017"
    hotline_call_answered_by_operator(server, phones, caller)
    server.start()
    assert server.asterisk_pid() == pid
    assert "reloading the adopted Asterisk's configuration" in server.output()
    row = wait_for(lambda: logged_call(server, caller), 30, "the call reconciled from CEL")
    assert row["source"] == "cel"  # type: ignore[index]

    recordings = list(server.center.recordings_dir.glob("*.wav"))
    assert recordings, "the call was not recorded"
    for recording in recordings:
        st = recording.stat()
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (uid, 0o640), recording
        assert st.st_size > 44  # more than a WAV header: Asterisk wrote audio
    messages = (server.center.run_dir / "log" / "messages.log").read_text(errors="replace")
    assert "Permission denied" not in messages
    assert "does not exist in any format" not in messages

    for path, (owner, mode) in expected_modes(server, uid).items():
        st = path.stat()
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (owner, mode), path
    opened = [p for p in [server.state_dir, *server.state_dir.rglob("*")]
              if not p.is_symlink() and p.lstat().st_mode & 0o007]
    assert not opened, [f"{p} {stat.filemode(p.lstat().st_mode)}" for p in opened]
