"""Generated Asterisk configuration: deterministic, secret-bearing files private, safe defaults."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import yaml

from dialplans.render import CONFIG_FILES, AsteriskPaths, render_all, write_config
from dispatcher.cli import main
from dispatcher.config.loader import load_center
from dispatcher.credentials import ensure_credentials
from pbx.privilege import RunUser
from tests.harness import EXAMPLE_CONFIG


def rendered(state: Path) -> dict[str, str]:
    center = load_center(EXAMPLE_CONFIG, state_dir=state)
    paths = AsteriskPaths.for_center(center, "/mods", "/usr/share/asterisk")
    return render_all(center, ensure_credentials(center), paths)


def test_given_same_config_when_rendered_twice_then_files_are_byte_identical(
        tmp_path: Path) -> None:
    """`siaga render` twice into two folders gives the same bytes in every file."""
    args = ["render", "--config", str(EXAMPLE_CONFIG), "--state-dir", str(tmp_path / "s")]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(CONFIG_FILES)
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
        mode = stat.S_IMODE((tmp_path / "a" / name).stat().st_mode)
        assert mode & 0o007 == 0, f"{name} is readable by others"


def test_given_first_run_when_credentials_made_then_private_and_kept(tmp_path: Path) -> None:
    """Secrets are generated once, kept across runs, unique per extension, mode 0600."""
    center = load_center(EXAMPLE_CONFIG, state_dir=tmp_path)
    first = ensure_credentials(center)
    second = ensure_credentials(center)
    assert first == second
    secrets_file = tmp_path / "secrets.yaml"
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    passwords = list(first.sip_passwords.values())
    assert len(set(passwords)) == len(passwords) == len(center.extensions())
    assert all(len(p) >= 20 for p in passwords)
    assert yaml.safe_load(secrets_file.read_text())["ami"]["secret"] == first.ami_secret


def test_given_example_when_rendered_then_ami_is_loopback_least_privilege(
        tmp_path: Path) -> None:
    """manager.conf binds loopback, permits only loopback, and grants no `system`, `config`
    or `command` writes: the AMI secret runs no CLI command (adding dialplan that runs a
    shell is one) and no program."""
    manager = rendered(tmp_path)["manager.conf"]
    assert "bindaddr = 127.0.0.1" in manager
    assert "deny = 0.0.0.0/0.0.0.0" in manager
    assert "permit = 127.0.0.0/255.0.0.0" in manager
    write = next(line for line in manager.splitlines() if line.startswith("write ="))
    classes = {c.strip() for c in write.split("=", 1)[1].split(",")}
    assert classes.isdisjoint({"system", "config", "command", "all"}), classes
    assert "webenabled = no" in manager


def test_given_example_when_rendered_then_anonymous_reaches_only_the_hotline(
        tmp_path: Path) -> None:
    """The anonymous endpoint's context holds exactly the hotline numbers."""
    files = rendered(tmp_path)
    pjsip = files["pjsip.conf"]
    anon = pjsip[pjsip.index("[anonymous]"):].split("\n\n", 1)[0]
    assert "context = public" in anon
    ext = files["extensions.conf"]
    public = ext[ext.index("[public]"):].split("\n\n", 1)[0]
    extens = [line.split("=>")[1].split(",")[0].strip()
              for line in public.splitlines() if line.startswith("exten")]
    assert extens == ["112", "11245"]
    assert "include" not in public


def test_given_example_when_accounts_json_then_every_extension_has_a_password(
        tmp_path: Path, capsys) -> None:  # noqa: ANN001
    """`siaga accounts --json` lists each extension with role, agency and password."""
    assert main(["accounts", "--json", "--config", str(EXAMPLE_CONFIG),
                 "--state-dir", str(tmp_path)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["sip"] == {"host": "127.0.0.1", "port": 5060, "transport": "udp"}
    assert doc["hotline"] == ["112", "11245"]
    by_ext = {a["extension"]: a for a in doc["accounts"]}
    assert by_ext["201"]["role"] == "operator" and by_ext["201"]["agency"] is None
    assert by_ext["311"]["role"] == "agency" and by_ext["311"]["agency"] == "fire"
    assert by_ext["901"]["role"] == "button"
    creds = ensure_credentials(load_center(EXAMPLE_CONFIG, state_dir=tmp_path))
    assert all(a["password"] == creds.password(a["extension"]) for a in doc["accounts"])


def test_given_written_config_when_rewritten_then_no_temp_files_left(tmp_path: Path) -> None:
    """Files are replaced atomically; no temporary file stays behind."""
    files = rendered(tmp_path / "s")
    write_config(files, tmp_path / "out")
    write_config(files, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(files)


def test_given_a_run_user_when_rendered_then_asterisk_drops_to_it(tmp_path: Path) -> None:
    """asterisk.conf names the unprivileged account Asterisk switches to after starting as
    root, and keeps dangerous functions away from AMI; without one, no runuser line."""
    center = load_center(EXAMPLE_CONFIG, state_dir=tmp_path)
    paths = AsteriskPaths.for_center(center, "/mods", "/usr/share/asterisk")
    user = RunUser("asterisk", "asterisk", 64990, 64990)
    conf = render_all(center, ensure_credentials(center), paths, run_user=user)["asterisk.conf"]
    lines = {line.split("=")[0].strip(): line.split("=", 1)[1].strip()
             for line in conf.splitlines() if "=" in line and not line.startswith(";")}
    assert lines["runuser"] == "asterisk" and lines["rungroup"] == "asterisk"
    assert lines["live_dangerously"] == "no"
    assert "runuser" not in rendered(tmp_path / "other")["asterisk.conf"]


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file another group needs root")
def test_given_a_folder_of_asterisks_group_when_a_file_is_rewritten_then_asterisk_can_read_it(
        tmp_path: Path) -> None:
    """A file written while the center runs (the SIP guard's ACL, rewritten by root) takes
    its folder's group, so an unprivileged Asterisk can still read it (0640)."""
    out = tmp_path / "etc"
    out.mkdir()
    os.chown(out, -1, 64990)
    old_umask = os.umask(0o077)  # the server's
    try:
        (path,) = write_config({"pjsip_guard.conf": "; nothing blocked\n"}, out)
    finally:
        os.umask(old_umask)
    assert path.stat().st_gid == 64990
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
