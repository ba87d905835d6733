"""``siaga install``: make the center a system service.

It puts the center's config where every ``siaga`` command finds it without ``--config``
(``/etc/siaga/siaga.yaml``) and writes a hardened systemd unit that runs ``siaga up`` on it,
restarted whenever it stops and leaving Asterisk running when the server itself dies (the
next start adopts it). It never starts or enables anything: it prints what to run.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import jinja2

from dispatcher.config.loader import load_center
from dispatcher.config.model import Center
from dispatcher.yamlnodes import ConfigError

UNIT_NAME = "siaga"
TEMPLATE = "siaga.service.j2"

# How long systemd waits for the server to stop: Asterisk gets 15 s after SIGTERM before the
# server kills it, then the call log is flushed.
STOP_SECONDS = 45
# A start builds the IVR prompts and waits for Asterisk to boot; a first start may also
# upgrade the database.
START_SECONDS = 300
WATCHDOG_SECONDS = 30

# Root's capabilities the service keeps; why each is there is said in the unit.
CAPABILITIES = (
    "CAP_SYS_ADMIN", "CAP_SYS_CHROOT", "CAP_SETUID", "CAP_SETGID", "CAP_CHOWN", "CAP_FOWNER",
    "CAP_DAC_OVERRIDE", "CAP_KILL", "CAP_NET_ADMIN",
)
# Only when the center listens on a port below 1024 (an HTTPS console on 443, SIP on 5060 is
# above).
PRIVILEGED_PORT_CAPABILITY = "CAP_NET_BIND_SERVICE"

# What PrivateTmp= and ProtectHome= hide from the service.
_TMP_DIRS = (Path("/tmp"), Path("/var/tmp"))
_HOME_DIRS = (Path("/home"), Path("/root"), Path("/run/user"))


class InstallError(RuntimeError):
    """The center cannot be installed as it is (the message says what to change)."""


@dataclass(frozen=True)
class UnitPlan:
    """Everything the unit is rendered from."""

    center_name: str
    argv: tuple[str, ...]
    environment: tuple[tuple[str, str], ...]
    state_dir: Path
    read_write_paths: tuple[Path, ...]
    needed_paths: tuple[Path, ...]
    capabilities: tuple[str, ...] = CAPABILITIES


def quote(word: str) -> str:
    """One word of a unit file's command line or assignment, quoted for systemd.

    Inside double quotes systemd reads C escapes; ``%`` starts a specifier and ``$`` an
    environment variable in ExecStart, so both are doubled.
    """
    if any(c in word for c in "\n\r\0"):
        raise InstallError(f"a unit file cannot hold a line break: {word!r}")
    escaped = (word.replace("\\", "\\\\").replace('"', '\\"')
               .replace("%", "%%").replace("$", "$$"))
    return f'"{escaped}"'


def quote_assignment(assignment: str) -> str:
    """A ``KEY=value`` of Environment=, quoted for systemd (no ``$`` expansion there)."""
    return quote(assignment).replace("$$", "$")


def _under(path: Path, roots: tuple[Path, ...]) -> Path | None:
    for root in roots:
        if path == root or root in path.parents:
            return path
    return None


def siaga_command() -> list[str]:
    """How this ``siaga`` is started: the script beside this Python, else ``python -m``."""
    script = Path(sys.executable).parent / "siaga"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "dispatcher.cli"]


def tmp_dir(center: Center) -> Path:
    """The service's temporary directory."""
    return center.state_dir / "tmp"


def plan(center: Center, config: Path, rootfs: Path | None, log_format: str = "json",
         environment: dict[str, str] | None = None) -> UnitPlan:
    """The unit for ``center`` whose config file is ``config``."""
    argv = (*siaga_command(), "up", "--config", str(config), "--log-format", log_format)
    # Temporary files (the IVR prompts' are made through one) go in the state directory: it
    # is writable under ProtectSystem=strict, and root's alone, wherever /tmp stands.
    env = {"LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1", "TMPDIR": str(tmp_dir(center))}
    if rootfs is not None:
        env["SIAGA_ROOTFS"] = str(rootfs)
    env.update(environment or {})
    writable = [center.state_dir]
    if rootfs is not None:
        writable.append(rootfs)
    code = Path(__file__).resolve().parent.parent
    # The interpreter too: a virtualenv's python is often a link into a home directory
    # (pyenv, uv), which ProtectHome= would hide.
    needed = [Path(argv[0]), Path(os.path.realpath(sys.executable)), Path(sys.base_prefix),
              config, center.state_dir, code, *writable]
    if center.tls is not None:
        needed += [center.tls.certificate, center.tls.key]
    ports = [center.sip.port, center.ami.port, center.http.port]
    if center.tls is not None:
        ports.append(center.tls.sip_port)
    capabilities = CAPABILITIES
    if min(ports) < 1024:
        capabilities += (PRIVILEGED_PORT_CAPABILITY,)
    return UnitPlan(center.name, argv, tuple(sorted(env.items())), center.state_dir,
                    tuple(writable), tuple(needed), capabilities)


def render_unit(unit: UnitPlan) -> str:
    """The text of the systemd unit."""
    hidden_tmp = next((p for p in unit.needed_paths if _under(p, _TMP_DIRS)), None)
    hidden_home = next((p for p in unit.needed_paths if _under(p, _HOME_DIRS)), None)
    loader = jinja2.FileSystemLoader(Path(__file__).parent / "deploy")
    env = jinja2.Environment(loader=loader, trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
    return env.get_template(TEMPLATE).render(
        center_name=unit.center_name.replace("%", "%%"),
        unit_name=f"{UNIT_NAME}.service",
        exec_start=" ".join(quote(a) for a in unit.argv),
        environment=[quote_assignment(f"{k}={v}") for k, v in unit.environment],
        read_write_paths=[quote(str(p)) for p in unit.read_write_paths],
        private_tmp=hidden_tmp is None, private_tmp_why=hidden_tmp,
        protect_home=hidden_home is None, protect_home_why=hidden_home,
        stop_seconds=STOP_SECONDS, start_seconds=START_SECONDS,
        watchdog_seconds=WATCHDOG_SECONDS, capabilities=unit.capabilities,
    )


def install(source: Path, target: Path, unit_dir: Path, rootfs: Path | None,
            log_format: str = "json") -> tuple[Path, Path]:
    """Copy the config to ``target`` and write the unit into ``unit_dir``; both paths.

    The copy must describe the same center: a relative ``state_dir`` would move with it, so
    such a config is refused before anything is written.
    """
    center = load_center(source)
    if source.resolve() != target.resolve():
        target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        staged = target.with_name(f".{target.name}.new")
        shutil.copyfile(source, staged)
        os.chmod(staged, 0o640)
        try:
            copied = load_center(staged)
        except ConfigError:
            staged.unlink()
            raise
        if copied.state_dir != center.state_dir:
            staged.unlink()
            raise InstallError(
                f"{source}: state_dir is relative to the file's folder and would move to "
                f"{copied.state_dir} in {target}; write it as an absolute path "
                f"({center.state_dir})")
        if target.exists() and filecmp.cmp(staged, target, shallow=False):
            staged.unlink()
        else:
            os.replace(staged, target)
    # ReadWritePaths= must exist when the service starts, and under ProtectSystem=strict
    # the server could not create the state directory itself.
    center.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp_dir(center).mkdir(mode=0o700, exist_ok=True)
    unit_text = render_unit(plan(center, target, rootfs, log_format))
    unit_dir.mkdir(parents=True, exist_ok=True)
    unit_path = unit_dir / f"{UNIT_NAME}.service"
    staged = unit_path.with_name(f".{unit_path.name}.new")
    staged.write_text(unit_text)
    os.chmod(staged, 0o644)
    os.replace(staged, unit_path)
    return target, unit_path


def _cmd_install(args: argparse.Namespace) -> int:
    from dispatcher.cli import find_config, installed_config, sysconfdir
    from pbx.provision import ProvisionError, locate, provision

    source = find_config(args.config)
    if source is None:
        sys.exit("siaga install: give --config FILE (the center's config to install)")
    found = locate(args.rootfs)
    if found is None:
        try:
            found = provision(args.rootfs)
        except ProvisionError as exc:
            sys.exit(f"siaga install: provisioning failed: {exc}")
    unit_dir = Path(args.unit_dir) if args.unit_dir else sysconfdir() / "systemd" / "system"
    try:
        config, unit = install(Path(source), installed_config(), unit_dir, found.rootfs,
                               args.log_format)
    except (ConfigError, InstallError) as exc:
        sys.exit(f"siaga install: {exc}")
    print(f"config: {config} (every siaga command reads it when given no --config)")
    print(f"unit:   {unit}")
    print("start it with: systemctl daemon-reload && systemctl enable --now "
          f"{UNIT_NAME}.service")
    print(f"logs: journalctl -u {UNIT_NAME}.service; check it: siaga doctor")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``siaga install``."""
    p = sub.add_parser("install", help="install the center as a systemd service")
    p.add_argument("--config", help="the center's config to install "
                   "(default: $SIAGA_CONFIG, else the installed one)")
    p.add_argument("--rootfs", help="the Asterisk root filesystem (default: $SIAGA_ROOTFS)")
    p.add_argument("--unit-dir", help="where to write siaga.service "
                   "(default: /etc/systemd/system)")
    p.add_argument("--log-format", choices=("json", "text"), default="json",
                   help="the service's log lines (default: json, one object a line)")
    p.set_defaults(func=_cmd_install)
