"""`siaga install`: the systemd unit it writes, and how commands find the installed config."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dispatcher import install
from dispatcher.config.loader import load_center
from tests.harness import EXAMPLE_CONFIG

SIAGA = Path(sys.executable).parent / "siaga"


def config_with_state(tmp_path: Path, state_dir: str) -> Path:
    """The example city with its state directory at ``state_dir``."""
    doc = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    doc["state_dir"] = state_dir
    path = tmp_path / "center.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    return path


def settings(text: str) -> dict[str, list[str]]:
    """The unit's assignments by key."""
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def render(tmp_path: Path, state_dir: Path, rootfs: Path | None = None,
           needed: tuple[Path, ...] | None = None) -> str:
    """The unit for the example city with the given state directory; ``needed`` replaces
    the paths the service reads (this checkout's and interpreter's, by default)."""
    config = config_with_state(tmp_path, str(state_dir))
    center = load_center(config)
    unit = install.plan(center, config, rootfs)
    if needed is not None:
        unit = dataclasses.replace(unit, needed_paths=needed)
    return install.render_unit(unit)


def test_given_center_when_unit_rendered_then_it_restarts_keeps_asterisk_and_is_hardened(
        tmp_path: Path) -> None:
    """Restart=always, KillMode=process (a crash leaves Asterisk to be adopted), root, and
    the hardening directives, with the state directory and root filesystem writable."""
    state = Path("/var/lib/siaga/center")
    unit = settings(render(tmp_path, state, Path("/var/lib/siaga/rootfs"),
                           needed=(Path("/usr/bin/siaga"), Path("/etc/siaga/siaga.yaml"), state)))
    assert unit["Restart"] == ["always"]
    assert unit["KillMode"] == ["process"]
    assert unit["User"] == ["root"]
    assert unit["StartLimitIntervalSec"] == ["0"]
    for key in ("NoNewPrivileges", "ProtectKernelTunables", "ProtectControlGroups",
                "RestrictSUIDSGID", "PrivateTmp", "ProtectHome"):
        assert unit.get(key) == ["yes"], key
    assert unit["ProtectSystem"] == ["strict"]
    assert unit["ReadWritePaths"] == ['"/var/lib/siaga/center" "/var/lib/siaga/rootfs"']
    assert unit["RestrictNamespaces"] == ["mnt"]
    assert "CAP_SYS_ADMIN" in unit["CapabilityBoundingSet"][0]
    assert "CAP_SYS_CHROOT" in unit["CapabilityBoundingSet"][0]
    assert "CAP_NET_BIND_SERVICE" not in unit["CapabilityBoundingSet"][0]  # 5060, 8080
    assert unit["PrivateMounts"] == ["yes"]
    assert "PrivateUsers" not in unit
    # @system-service alone refuses mount(2): `unshare -m --propagation private` then fails.
    assert unit["SystemCallFilter"] == ["@system-service @mount"]
    assert unit["SystemCallErrorNumber"] == ["EPERM"]
    assert int(unit["TimeoutStopSec"][0]) > 15  # the server gives Asterisk 15 s to stop
    assert '"--log-format" "json"' in unit["ExecStart"][0]
    assert any("SIAGA_ROOTFS=/var/lib/siaga/rootfs" in e for e in unit["Environment"])


def test_given_state_dir_in_tmp_when_unit_rendered_then_private_tmp_is_left_out(
        tmp_path: Path) -> None:
    """A state directory in /tmp would vanish behind PrivateTmp: the unit says why it is off.
    (The code's own paths are given: a checkout under /tmp would be named first.)"""
    state = tmp_path / "state"
    text = render(tmp_path, state, needed=(Path("/usr/bin/siaga"), state))
    assert "PrivateTmp=yes" not in text
    assert f"# PrivateTmp is off: {state} would be hidden" in text


def test_given_interpreter_in_a_home_when_unit_rendered_then_protect_home_is_left_out(
        tmp_path: Path) -> None:
    """A Python under /root (pyenv, uv) would be hidden by ProtectHome: off, and why."""
    python = Path("/root/.pyenv/versions/3.11.7/bin/python3.11")
    text = render(tmp_path, Path("/var/lib/siaga/center"),
                  needed=(Path("/usr/bin/siaga"), python))
    assert "ProtectHome=yes" not in text
    assert f"# ProtectHome is off: {python} would be hidden." in text
    assert "PrivateTmp=yes" in text


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze missing: `make setup` installs systemd")
def test_given_rendered_unit_when_systemd_analyze_verifies_it_then_it_is_clean(
        tmp_path: Path) -> None:
    """`systemd-analyze verify` accepts the unit (it rejects e.g. a quoted WorkingDirectory,
    a relative path, an unknown directive), and its security exposure is printed."""
    state = tmp_path / "state"
    state.mkdir()
    unit = tmp_path / "siaga.service"
    unit.write_text(render(tmp_path, state, Path("/var/lib/siaga/rootfs")))
    proc = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr
    broken = tmp_path / "broken.service"
    broken.write_text(unit.read_text().replace("KillMode=process", "KillMode=sometimes"))
    proc = subprocess.run(["systemd-analyze", "verify", str(broken)], capture_output=True,
                          text=True, timeout=60)
    assert "kill mode" in proc.stderr  # the check can fail
    security = subprocess.run(["systemd-analyze", "security", "--offline=true", str(unit)],
                              capture_output=True, text=True, timeout=60)
    print(security.stdout.strip().splitlines()[-1] if security.stdout.strip() else "")


def test_given_words_with_specifiers_when_quoted_then_systemd_reads_them_back(
        tmp_path: Path) -> None:
    """A path with %, $, a quote or a space survives the unit's quoting; a line break is
    refused."""
    word = 'a b%c$d"e\\f'
    assert install.quote(word) == '"a b%%c$$d\\"e\\\\f"'
    with pytest.raises(install.InstallError):
        install.quote("a\nExecStartPre=/bin/sh")


def test_given_relative_state_dir_when_installed_then_refused_and_nothing_written(
        tmp_path: Path) -> None:
    """A relative state_dir would point elsewhere from /etc/siaga: refused, nothing copied."""
    source = config_with_state(tmp_path, "state")
    target = tmp_path / "etc" / "siaga" / "siaga.yaml"
    with pytest.raises(install.InstallError, match="absolute"):
        install.install(source, target, tmp_path / "units", None)
    assert not target.exists()
    assert not (tmp_path / "units").exists()


def run_siaga(env: dict[str, str], *args: str,
              cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The `siaga` command as an administrator types it."""
    return subprocess.run([str(SIAGA), *args], env=env, capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def test_given_installed_center_when_commands_run_without_config_then_they_find_it(
        tmp_path: Path) -> None:
    """`siaga accounts` alone: "no config" before install, the center's accounts after,
    read from <sysconfdir>/siaga/siaga.yaml; --config and $SIAGA_CONFIG still come first."""
    env = dict(os.environ, SIAGA_SYSCONFDIR=str(tmp_path / "etc"))
    env.pop("SIAGA_CONFIG", None)
    before = run_siaga(env, "accounts")
    assert before.returncode != 0 and "no config" in before.stderr
    source = config_with_state(tmp_path, str(tmp_path / "state"))
    target, unit = install.install(source, tmp_path / "etc" / "siaga" / "siaga.yaml",
                                   tmp_path / "etc" / "systemd" / "system", None)
    assert target.stat().st_mode & 0o777 == 0o640
    assert f'"--config" "{target}"' in unit.read_text()
    after = run_siaga(env, "accounts", "--json")
    assert after.returncode == 0, after.stderr
    assert yaml.safe_load(after.stdout)["hotline"] == ["112", "11245"]
    # An explicit choice wins over the installed config.
    other = tmp_path / "other.yaml"
    doc = yaml.safe_load(source.read_text())
    doc["hotline"]["numbers"] = ["113"]
    other.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    assert yaml.safe_load(run_siaga(dict(env, SIAGA_CONFIG=str(other)), "accounts",
                                    "--json").stdout)["hotline"] == ["113"]
    assert yaml.safe_load(run_siaga(env, "accounts", "--json", "--config",
                                    str(other)).stdout)["hotline"] == ["113"]


def test_given_console_on_port_443_when_unit_rendered_then_it_may_bind_it(
        tmp_path: Path) -> None:
    """A port below 1024 adds CAP_NET_BIND_SERVICE to the bounding set, and only then."""
    config = config_with_state(tmp_path, "/var/lib/siaga/center")
    doc = yaml.safe_load(config.read_text())
    doc["http"]["port"] = 443
    config.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    unit = settings(install.render_unit(install.plan(load_center(config), config, None)))
    assert "CAP_NET_BIND_SERVICE" in unit["CapabilityBoundingSet"][0]


def test_given_installed_center_when_report_and_device_run_without_config_then_its_db_is_used(
        tmp_path: Path) -> None:
    """`siaga db upgrade`, `siaga device add/list` and `siaga report` with no --config work
    on the installed center's database (in its state directory), not on a new ./state."""
    env = dict(os.environ, SIAGA_SYSCONFDIR=str(tmp_path / "etc"))
    for name in ("SIAGA_CONFIG", "SIAGA_DB_URL", "SIAGA_STATE_DIR"):
        env.pop(name, None)
    source = config_with_state(tmp_path, str(tmp_path / "state"))
    install.install(source, tmp_path / "etc" / "siaga" / "siaga.yaml",
                    tmp_path / "etc" / "systemd" / "system", None)
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    assert run_siaga(env, "db", "upgrade", cwd=cwd).returncode == 0
    assert (tmp_path / "state" / "siaga.db").exists()
    added = run_siaga(env, "device", "add", "app-1", "--json", cwd=cwd)
    assert added.returncode == 0, added.stderr
    listed = run_siaga(env, "device", "list", "--json", cwd=cwd)
    assert "app-1" in listed.stdout, listed.stderr
    report = run_siaga(env, "report", "--format", "json", cwd=cwd)
    assert report.returncode == 0, report.stderr
    assert yaml.safe_load(report.stdout)["summary"]["offered"] == 0
    assert not (cwd / "state").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="mounts need root")
def test_given_full_or_read_only_state_dir_when_doctor_runs_then_disk_fails_with_the_fix(
        tmp_path: Path) -> None:
    """The state directory on a 1 MB file system, then remounted read-only (in a private
    mount namespace): doctor's disk check fails each time and says what to do."""
    state = tmp_path / "state"
    state.mkdir()
    config = config_with_state(tmp_path, str(state))
    script = ('set -e; mount -t tmpfs -o size=1m none "$1"; shift; "$@" || true; '
              'echo ---; mount -o remount,ro "$0"; "$@" || true')
    doctor = [str(SIAGA), "doctor", "--config", str(config)]
    proc = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script,
                           str(state), str(state), *doctor],
                          capture_output=True, text=True, timeout=120)
    full, read_only = proc.stdout.split("---")
    assert "FAIL disk      " + f"{state}: only 0.00 GB free" in full, proc.stdout + proc.stderr
    assert "free space" in full
    assert f"FAIL disk      {state} cannot be written: Read-only file system" in read_only
