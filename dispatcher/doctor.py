"""``siaga doctor``: is this center healthy, and if not, what to fix.

One line per check: config, Asterisk, AMI, database, disk, clock, ports. The checks only
look: they create no secret, database or directory (a missing one is reported instead).
The exit status is 1 when a check failed; a warning (e.g. NTP status unknown) keeps it 0.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml

from dispatcher.config.loader import load_center
from dispatcher.config.model import Center
from dispatcher.yamlnodes import ConfigError

OK, WARN, FAIL = "ok", "warn", "FAIL"

# Below this much free space in the state directory, recordings and the call log are at risk.
MIN_FREE_BYTES = 1 << 30
MIN_FREE_FRACTION = 0.05
# A clock before this is not set (a board without a battery-backed clock boots in 1970).
SANE_EPOCH = 1704067200  # 2024-01-01 UTC
TIMEOUT = 5.0


@dataclass(frozen=True)
class Check:
    """One finding: which part, how it is, what was seen, and what to do about it."""

    part: str
    status: str
    detail: str
    fix: str = ""

    def line(self) -> str:
        """The finding as the one line ``siaga doctor`` prints."""
        text = f"{self.status:<4} {self.part:<9} {self.detail}"
        return f"{text} -> {self.fix}" if self.fix else text


# --- what listens where -------------------------------------------------------------------

def _listening_inodes(port: int, protocol: str) -> dict[int, str]:
    """Socket inodes bound to ``port`` (TCP: listening; UDP: bound), with their address."""
    found: dict[int, str] = {}
    for table in (f"/proc/net/{protocol}", f"/proc/net/{protocol}6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            local, state, inode = cols[1], cols[3], int(cols[9])
            address, _, hex_port = local.rpartition(":")
            if int(hex_port, 16) != port:
                continue
            if protocol == "tcp" and state != "0A":  # LISTEN
                continue
            found[inode] = address
    return found


def port_owners(port: int, protocol: str) -> list[tuple[int, str]]:
    """The processes (pid, name) holding a socket bound to ``port``."""
    inodes = _listening_inodes(port, protocol)
    if not inodes:
        return []
    wanted = {f"socket:[{i}]" for i in inodes}
    owners: list[tuple[int, str]] = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            links = {os.readlink(fd) for fd in (proc / "fd").iterdir()}
        except OSError:
            continue
        if links & wanted:
            owners.append((int(proc.name), process_name(int(proc.name))))
    # A socket whose owner could not be read (another user's, without root) still counts.
    return owners or [(0, "unknown process")]


def process_name(pid: int) -> str:
    """A process's command line, short."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    words = [Path(a.decode(errors="replace")).name if i == 0 else a.decode(errors="replace")
             for i, a in enumerate(argv) if a]
    return " ".join(words[:4]) or "?"


def parent_pid(pid: int) -> int | None:
    """The parent of ``pid``, from /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rpartition(")")[2].split()[1])


# --- the checks ---------------------------------------------------------------------------

def _is_server(name: str) -> bool:
    words = name.split()
    return "up" in words and any(Path(w).name == "siaga" or w == "dispatcher.cli"
                                 for w in words)


def check_asterisk(center: Center, rootfs: str | None) -> list[Check]:
    """Provisioned? Running? Supervised by a server, or left alone after a crash?"""
    from pbx.asterisk import stale_pid
    from pbx.provision import locate

    install = locate(rootfs)
    if install is None:
        return [Check("asterisk", FAIL, "no Asterisk 20+ provisioned",
                      "run `siaga provision`")]
    where = f"in {install.rootfs}" if install.rootfs else f"at {install.binary}"
    pid = stale_pid(center.run_dir / "run")
    if pid is None:
        return [Check("asterisk", FAIL, f"Asterisk {install.version} {where} is not running",
                      "start the center: `systemctl start siaga` (or `siaga up`)")]
    parent = parent_pid(pid)
    if parent and _is_server(process_name(parent)):
        return [Check("asterisk", OK, f"Asterisk {install.version} running (pid {pid}), "
                      f"supervised by siaga up (pid {parent})")]
    # A server started after a crash adopts the Asterisk it finds: not its parent then. It is
    # known by the center's HTTP port, which only the server binds.
    servers = [owner for owner, name in port_owners(center.http.port, "tcp")
               if _is_server(name)]
    if servers:
        return [Check("asterisk", OK, f"Asterisk {install.version} running (pid {pid}), "
                      f"adopted by siaga up (pid {servers[0]})")]
    return [Check("asterisk", FAIL,
                  f"Asterisk running (pid {pid}) with no siaga server: calls reach the "
                  "queue, but no alerts, console or call log",
                  "start the server (`systemctl start siaga`); it adopts this Asterisk "
                  "without cutting calls")]


def read_ami_secret(center: Center) -> tuple[str, str] | None:
    """The AMI username and secret from the state directory, without creating them."""
    from dispatcher.credentials import AMI_USERNAME, FILE_NAME

    try:
        data = yaml.safe_load((center.state_dir / FILE_NAME).read_text()) or {}
    except (OSError, yaml.YAMLError):
        return None
    ami = data.get("ami") if isinstance(data, dict) else None
    if not isinstance(ami, dict) or not ami.get("secret"):
        return None
    return str(ami.get("username") or AMI_USERNAME), str(ami["secret"])


def ami_login(host: str, port: int, username: str, secret: str,
              timeout: float = TIMEOUT) -> str:
    """Log in to AMI and off again; the manager's greeting. Raises OSError or ValueError."""
    for value in (username, secret):
        if any(c in value for c in "\r\n"):
            raise ValueError("the AMI credentials hold a line break")
    with socket.create_connection((host, port), timeout=timeout) as sock:
        stream = sock.makefile("rwb")
        greeting = stream.readline().decode(errors="replace").strip()
        if not greeting.startswith("Asterisk Call Manager"):
            raise ValueError(f"not an Asterisk manager: {greeting[:60]!r}")
        stream.write(f"Action: Login\r\nActionID: doctor\r\nUsername: {username}\r\n"
                     f"Secret: {secret}\r\nEvents: off\r\n\r\n".encode())
        stream.flush()
        fields: dict[str, str] = {}
        while True:
            line = stream.readline()
            if not line:
                raise ValueError("the manager closed the connection")
            text = line.decode(errors="replace").strip()
            if not text:
                if fields.get("ActionID") == "doctor":
                    break
                fields = {}
                continue
            key, _, value = text.partition(":")
            fields[key.strip()] = value.strip()
        if fields.get("Response") != "Success":
            raise ValueError(f"login refused: {fields.get('Message', 'no reason given')}")
        stream.write(b"Action: Logoff\r\n\r\n")
        stream.flush()
        return greeting


def check_ami(center: Center) -> list[Check]:
    """Log in with the generated secret."""
    creds = read_ami_secret(center)
    where = f"{center.ami.host}:{center.ami.port}"
    if creds is None:
        return [Check("ami", FAIL, f"no AMI secret in {center.state_dir}",
                      "start the center once; it generates its secrets")]
    try:
        greeting = ami_login(center.ami.host, center.ami.port, *creds)
    except ConnectionRefusedError:
        return [Check("ami", FAIL, f"nothing listens on {where}",
                      "start the center; if it runs, its Asterisk was started from another "
                      "config: restart it (`systemctl restart siaga`)")]
    except (OSError, ValueError) as exc:
        return [Check("ami", FAIL, f"{where}: {exc}",
                      "restart the center so Asterisk reloads the generated manager.conf")]
    return [Check("ami", OK, f"logged in as {creds[0]} on {where} ({greeting})")]


def check_database(center: Center) -> list[Check]:
    """Connect, and compare the schema's revision with the packaged migrations' head."""
    from sqlalchemy.engine import make_url

    from dispatcher.calllog.db import current_revision, head_revision, make_engine

    url = make_url(center.database_url)
    shown = url.render_as_string(hide_password=True)
    if url.drivername.startswith("sqlite") and url.database not in (None, "", ":memory:"):
        if not Path(url.database).exists():
            return [Check("database", FAIL, f"{shown} does not exist",
                          "start the center once (it creates it), or restore a backup "
                          "(`siaga restore`)")]
    try:
        engine = make_engine(center.database_url)
        try:
            current = current_revision(engine)
        finally:
            engine.dispose()
    except Exception as exc:  # noqa: BLE001 (any driver error is the finding itself)
        return [Check("database", FAIL, f"{shown}: {str(exc).splitlines()[0][:200]}",
                      "check database.url, that the server is up and the password right")]
    head = head_revision()
    if current != head:
        return [Check("database", FAIL, f"{shown}: schema at {current}, the code needs {head}",
                      "restart the center (it upgrades the schema at start)")]
    return [Check("database", OK, f"{shown}: schema at head ({head})")]


def check_disk(center: Center) -> list[Check]:
    """Free space in the state directory, and that it can be written."""
    state = center.state_dir
    if not state.is_dir():
        return [Check("disk", FAIL, f"{state} does not exist",
                      "start the center once, or `siaga install` (both create it)")]
    usage = shutil.disk_usage(state)
    free_gb = usage.free / 1e9
    checks: list[Check] = []
    if usage.free < MIN_FREE_BYTES or usage.free < usage.total * MIN_FREE_FRACTION:
        checks.append(Check("disk", FAIL, f"{state}: only {free_gb:.2f} GB free of "
                            f"{usage.total / 1e9:.1f} GB",
                            "free space, or lower retention.recordings limits"))
    else:
        checks.append(Check("disk", OK, f"{state}: {free_gb:.1f} GB free "
                            f"({usage.free / usage.total:.0%})"))
    try:
        with tempfile.TemporaryFile(dir=state):
            pass
    except OSError as exc:
        checks.append(Check("disk", FAIL, f"{state} cannot be written: {exc.strerror}",
                            "remount it read-write / fix its owner (root) and mode"))
    return checks


def check_clock(now: float | None = None,
                run: Callable[[list[str]], str | None] | None = None) -> list[Check]:
    """The time is plausible, and NTP's sync state when timedatectl answers."""
    now = time.time() if now is None else now
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(now))
    if now < SANE_EPOCH:
        return [Check("clock", FAIL, f"the clock says {stamp}",
                      "set the time and enable NTP (`timedatectl set-ntp true`)")]
    answer = (run or _run)(["timedatectl", "show", "--property=NTPSynchronized", "--value"])
    if answer is None:
        return [Check("clock", WARN, f"{stamp}; NTP sync unknown (timedatectl did not answer)",
                      "make sure the host's clock is kept by NTP (call times, reports)")]
    if answer.strip() == "yes":
        return [Check("clock", OK, f"{stamp}, NTP synchronized")]
    return [Check("clock", FAIL, f"{stamp}, NTP not synchronized",
                  "enable NTP: `timedatectl set-ntp true` (and check the time server)")]


def _run(argv: list[str]) -> str | None:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


def check_ports(center: Center) -> list[Check]:
    """SIP, AMI and HTTP: bound, and by whom."""
    wanted: list[tuple[str, int, str, str]] = [
        ("SIP", center.sip.port, "udp" if center.sip_transport == "udp" else "tcp", "asterisk"),
        ("AMI", center.ami.port, "tcp", "asterisk"),
        ("HTTP", center.http.port, "tcp", "siaga"),
    ]
    if center.tls is not None:
        wanted.append(("SIP TLS", center.tls.sip_port, "tcp", "asterisk"))
    checks = []
    for label, port, proto, owner in wanted:
        owners = port_owners(port, proto)
        what = f"{label} {proto}/{port}"
        if not owners:
            checks.append(Check("ports", FAIL, f"{what}: nothing bound",
                                "start the center (or look in its log why this one failed)"))
            continue
        names = ", ".join(f"{name} (pid {pid})" if pid else name for pid, name in owners)
        if any(owner in name for _, name in owners):
            checks.append(Check("ports", OK, f"{what}: {names}"))
        else:
            checks.append(Check("ports", FAIL, f"{what}: taken by {names}",
                                f"stop that program or give the center another {label} "
                                "port in its config"))
    return checks


def diagnose(config: Path | None, state_dir: str | None = None,
             rootfs: str | None = None) -> list[Check]:
    """Every check, in order; the config's failure stops the rest (they all need it)."""
    if config is None:
        return [Check("config", FAIL, "no config found",
                      "give --config FILE, set SIAGA_CONFIG, or `siaga install` the center")]
    try:
        center = load_center(config, state_dir=state_dir)
    except ConfigError as exc:
        return [Check("config", FAIL, str(exc), "correct the config file and run again")]
    except OSError as exc:
        return [Check("config", FAIL, f"{config}: {exc.strerror}", "give a readable file")]
    checks = [Check("config", OK, f"{config}: {center.name}")]
    for step in (lambda: check_asterisk(center, rootfs), lambda: check_ami(center),
                 lambda: check_database(center), lambda: check_disk(center), check_clock,
                 lambda: check_ports(center)):
        checks.extend(step())
    return checks


def exit_code(checks: Iterable[Check]) -> int:
    """1 when a check failed, else 0."""
    return 1 if any(c.status == FAIL for c in checks) else 0


def _cmd_doctor(args: argparse.Namespace) -> int:
    from dispatcher.cli import find_config

    checks = diagnose(find_config(args.config), args.state_dir, args.rootfs)
    if args.json:
        print(json.dumps([c.__dict__ for c in checks], indent=2))
    else:
        for check in checks:
            print(check.line())
    sys.stdout.flush()
    return exit_code(checks)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``siaga doctor``."""
    from dispatcher.cli import add_config_args

    p = sub.add_parser("doctor", help="check the center and say what to fix")
    add_config_args(p)
    p.add_argument("--rootfs", help="the Asterisk root filesystem (default: $SIAGA_ROOTFS)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_doctor)
