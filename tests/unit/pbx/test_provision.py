"""Provisioning decisions: what counts as ready, what is repaired, what is refused."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from pbx import provision as prov


def fake_rootfs(root: Path, ready: bool) -> None:
    (root / "usr/sbin").mkdir(parents=True)
    (root / "usr/sbin/asterisk").write_text("")
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/apt-get").write_text("")
    (root / "etc").mkdir()
    if ready:
        (root / prov.READY_MARKER).write_text("22.10.1\n")


def test_given_ready_rootfs_when_provisioned_again_then_nothing_is_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A second run with everything in place only checks: no debootstrap, no apt."""
    root = tmp_path / "rootfs"
    fake_rootfs(root, ready=True)

    def refuse(*a, **k):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError(f"ran {a}")

    monkeypatch.setattr(subprocess, "run", refuse)
    lines: list[str] = []
    found = prov.provision(root, prefer_system=False, say=lines.append)
    assert found.rootfs == root and found.version == "22.10.1"
    assert any("ready" in line and "s)" in line for line in lines)
    # the host's name was added so Asterisk does not look it up in DNS on every call
    import socket
    assert socket.gethostname() in (root / "etc/hosts").read_text()


def test_given_rootfs_without_marker_when_located_then_not_ready(tmp_path: Path) -> None:
    """An interrupted provisioning (no marker written last) is not taken as ready."""
    root = tmp_path / "rootfs"
    fake_rootfs(root, ready=False)
    assert prov.rootfs_asterisk(root) is None
    assert prov.locate(root, prefer_system=False) is None


def test_given_not_root_when_provisioning_is_needed_then_clear_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without root the error says why and what to do instead."""
    monkeypatch.setattr(prov.os, "geteuid", lambda: 1000)
    with pytest.raises(prov.ProvisionError, match="needs root"):
        prov.provision(tmp_path / "rootfs", prefer_system=False, say=lambda _l: None)


def test_given_no_debootstrap_when_provisioning_then_says_what_to_install(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A missing tool is named with the command that installs it."""
    monkeypatch.setattr(prov.os, "geteuid", lambda: 0)
    monkeypatch.setattr(prov.shutil, "which",
                        lambda tool: None if tool == "debootstrap" else f"/usr/bin/{tool}")
    with pytest.raises(prov.ProvisionError, match="apt-get install debootstrap"):
        prov.provision(tmp_path / "rootfs", prefer_system=False, say=lambda _l: None)


def test_given_rootfs_env_when_no_flag_then_env_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """SIAGA_ROOTFS moves the root filesystem; a flag beats it."""
    monkeypatch.setenv(prov.ROOTFS_ENV, "/srv/rootfs")
    assert prov.rootfs_path() == Path("/srv/rootfs")
    assert prov.rootfs_path("/x") == Path("/x")
    monkeypatch.delenv(prov.ROOTFS_ENV)
    assert prov.rootfs_path() == prov.DEFAULT_ROOTFS


def test_given_rootfs_asterisk_with_a_host_uid_when_provisioned_then_renumbered(
        tmp_path: Path) -> None:
    """A chrooted Asterisk whose uid and gid are a host account's (here the account running
    the test) would act as that account to the kernel: its ids are moved to numbers no host
    account has, its files follow, it leaves the host-numbered device groups; a second run
    changes nothing."""
    import grp
    import pwd

    from pbx.provision import _ensure_own_ids

    host_uid, host_gid = os.getuid(), os.getgid()
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/passwd").write_text(
        f"root:x:0:0:root:/root:/bin/sh\nasterisk:x:{host_uid}:{host_gid}:PBX:/x:/bin/false\n")
    (tmp_path / "etc/group").write_text(
        f"dialout:x:20:asterisk\naudio:x:29:other,asterisk\nasterisk:x:{host_gid}:\n")
    owned = tmp_path / "var/lib/asterisk/astdb"
    owned.parent.mkdir(parents=True)
    owned.write_text("")
    _ensure_own_ids(tmp_path)
    user = next(line.split(":") for line in (tmp_path / "etc/passwd").read_text().splitlines()
                if line.startswith("asterisk:"))
    uid, gid = int(user[2]), int(user[3])
    assert uid not in {p.pw_uid for p in pwd.getpwall()}
    assert gid not in {g.gr_gid for g in grp.getgrall()}
    assert f"asterisk:x:{gid}:" in (tmp_path / "etc/group").read_text()
    assert "dialout:x:20:\naudio:x:29:other\n" in (tmp_path / "etc/group").read_text()
    assert (owned.stat().st_uid, owned.stat().st_gid) == (uid, gid)
    before = (tmp_path / "etc/passwd").read_text(), (tmp_path / "etc/group").read_text()
    _ensure_own_ids(tmp_path)
    assert ((tmp_path / "etc/passwd").read_text(), (tmp_path / "etc/group").read_text()) == before
