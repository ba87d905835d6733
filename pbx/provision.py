"""Find or provision an Asterisk to run.

A system Asterisk (version 20 or newer) is used as it is. Debian 12 has none, so otherwise a
Debian sid root filesystem with Asterisk 22 is built beside the host with debootstrap and apt,
and Asterisk is later run inside it (``chroot`` in a private mount namespace, see
:mod:`pbx.asterisk`). The root filesystem is a cache: it lives outside the repository, is
rebuilt when missing, and a half-built one left by an interrupted run is repaired by the next.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

DEFAULT_ROOTFS = Path("/var/lib/siaga/rootfs")
ROOTFS_ENV = "SIAGA_ROOTFS"
MIN_SYSTEM_VERSION = 20
# What the center needs inside the root filesystem. sip-tester is SIPp, for load benchmarks.
ROOTFS_PACKAGES = ("asterisk", "asterisk-core-sounds-en-gsm", "sip-tester")
READY_MARKER = ".siaga-ready"
ROOTFS_MODDIR = "/usr/lib/x86_64-linux-gnu/asterisk/modules"
APT_OPTS = ("-o", "Acquire::Check-Valid-Until=false", "-o", "Dpkg::Use-Pty=0")


class ProvisionError(RuntimeError):
    """Provisioning cannot go on; the message says what to do."""


@dataclass(frozen=True)
class AsteriskInstall:
    """Where an Asterisk lives and how it is started.

    ``rootfs`` is None for a system Asterisk. Paths in ``moddir`` and ``datadir`` are as
    Asterisk itself sees them (inside the root filesystem when there is one).
    """

    binary: str
    version: str
    moddir: str
    datadir: str
    rootfs: Path | None = None

    @property
    def sipp(self) -> list[str] | None:
        """The command prefix that runs SIPp, if it is installed."""
        if self.rootfs is None:
            found = shutil.which("sipp")
            return [found] if found else None
        if (self.rootfs / "usr/bin/sipp").exists():
            return ["chroot", str(self.rootfs), "/usr/bin/sipp"]
        return None


def rootfs_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The root filesystem's location: the flag, else ``$SIAGA_ROOTFS``, else the default."""
    if explicit:
        return Path(explicit)
    env = os.environ.get(ROOTFS_ENV)
    return Path(env) if env else DEFAULT_ROOTFS


def _version_of(cmd: list[str]) -> str | None:
    try:
        out = subprocess.run(cmd + ["-V"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"Asterisk\s+(\d+[\w.\-~+]*)", out)
    return m.group(1) if m else None


def _major(version: str) -> int:
    m = re.match(r"(\d+)", version)
    return int(m.group(1)) if m else 0


def system_asterisk() -> AsteriskInstall | None:
    """The system's Asterisk if it is new enough, else None."""
    binary = shutil.which("asterisk")
    if not binary:
        return None
    version = _version_of([binary])
    if not version or _major(version) < MIN_SYSTEM_VERSION:
        return None
    moddir = next(
        (d for d in (ROOTFS_MODDIR, "/usr/lib/asterisk/modules", "/usr/lib64/asterisk/modules")
         if Path(d).is_dir()),
        ROOTFS_MODDIR,
    )
    return AsteriskInstall(binary=binary, version=version, moddir=moddir,
                           datadir="/usr/share/asterisk")


def rootfs_asterisk(rootfs: Path) -> AsteriskInstall | None:
    """The Asterisk of a completely provisioned root filesystem, else None."""
    marker = rootfs / READY_MARKER
    if not marker.exists() or not (rootfs / "usr/sbin/asterisk").exists():
        return None
    version = marker.read_text().split()[0] if marker.read_text().strip() else "unknown"
    return AsteriskInstall(binary="/usr/sbin/asterisk", version=version, moddir=ROOTFS_MODDIR,
                           datadir="/usr/share/asterisk", rootfs=rootfs)


def locate(rootfs: str | os.PathLike[str] | None = None,
           prefer_system: bool = True) -> AsteriskInstall | None:
    """The Asterisk to run, without building anything: system first, then the root filesystem."""
    if prefer_system:
        found = system_asterisk()
        if found:
            return found
    return rootfs_asterisk(rootfs_path(rootfs))


def ready(rootfs: str | os.PathLike[str] | None = None) -> AsteriskInstall:
    """The Asterisk to run: the one found, else one provisioned now (ProvisionError if not)."""
    return locate(rootfs) or provision(rootfs)


def _in_rootfs(rootfs: Path, script: str, log: Path) -> None:
    """Run a shell script chrooted in ``rootfs`` with /proc mounted in a private namespace.

    The namespace dies with the command, so no mount outlives it, even on a crash.
    """
    wrapper = (
        'set -e; mount -t proc proc "$1/proc"; shift; exec chroot "$0" /bin/sh -ec "$1"'
    )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", LC_ALL="C.UTF-8",
               PATH="/usr/sbin:/usr/bin:/sbin:/bin")
    with log.open("ab") as out:
        proc = subprocess.run(
            ["unshare", "-m", "--propagation", "private", "sh", "-c", wrapper,
             str(rootfs), str(rootfs), script],
            stdout=out, stderr=subprocess.STDOUT, env=env,
        )
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-15:]
        raise ProvisionError(
            f"command in {rootfs} failed (exit {proc.returncode}); last lines of {log}:\n  "
            + "\n  ".join(tail)
        )


def provision(rootfs: str | os.PathLike[str] | None = None, prefer_system: bool = True,
              say: Callable[[str], None] = print) -> AsteriskInstall:
    """Make sure an Asterisk is there to run, building the root filesystem if needed.

    Each step is announced with its duration through ``say``. Idempotent: with everything in
    place it only checks, which takes well under a few seconds.
    """
    started = time.monotonic()

    def step(text: str, since: float) -> None:
        say(f"  {text} ({time.monotonic() - since:.1f} s)")

    if prefer_system:
        found = system_asterisk()
        if found:
            step(f"using the system Asterisk {found.version} at {found.binary}", started)
            return found
    root = rootfs_path(rootfs)
    ready = rootfs_asterisk(root)
    if ready:
        _ensure_hosts(root)
        _ensure_own_ids(root)
        step(f"Asterisk {ready.version} is ready in {root}", started)
        return ready

    if os.geteuid() != 0:
        raise ProvisionError(
            "no Asterisk 20+ is installed and building one needs root: run as root "
            "(or install Asterisk 20 or newer from your system's packages)"
        )
    for tool in ("debootstrap", "unshare", "chroot"):
        if not shutil.which(tool):
            raise ProvisionError(
                f"{tool} is missing: `apt-get install debootstrap util-linux coreutils` first"
            )
    root.parent.mkdir(parents=True, exist_ok=True)
    log = root.parent / "provision.log"
    partial = root.with_name(root.name + ".partial")

    if not (root / "usr/bin/apt-get").exists():
        # debootstrap does not resume: a half-made tree is thrown away and made anew.
        t = time.monotonic()
        say(f"  building a Debian sid root filesystem in {root} (log: {log})")
        shutil.rmtree(partial, ignore_errors=True)
        with log.open("ab") as out:
            proc = subprocess.run(
                ["debootstrap", "--variant=minbase", "sid", str(partial)],
                stdout=out, stderr=subprocess.STDOUT,
            )
        if proc.returncode != 0:
            raise ProvisionError(
                f"debootstrap failed (exit {proc.returncode}); is Debian's package registry "
                f"reachable? See {log}"
            )
        shutil.rmtree(root, ignore_errors=True)
        partial.rename(root)
        step("root filesystem built", t)

    _ensure_hosts(root)
    t = time.monotonic()
    say(f"  installing {' '.join(ROOTFS_PACKAGES)} in the root filesystem")
    apt = " ".join(APT_OPTS)
    _in_rootfs(
        root,
        f"dpkg --configure -a; apt-get {apt} -f install -y; "
        f"apt-get {apt} update -qq; "
        f"apt-get {apt} install -y -qq --no-install-recommends {' '.join(ROOTFS_PACKAGES)}",
        log,
    )
    step("packages installed", t)
    version = _version_of(["chroot", str(root), "/usr/sbin/asterisk"]) or "unknown"
    if _major(version) < MIN_SYSTEM_VERSION:
        raise ProvisionError(f"the root filesystem's Asterisk is {version}, need 20 or newer")
    _ensure_own_ids(root)
    (root / READY_MARKER).write_text(version + "\n")
    found = rootfs_asterisk(root)
    assert found is not None
    step(f"Asterisk {version} is ready in {root}", started)
    return found


def _ensure_hosts(root: Path) -> None:
    """Put the host's name in the root filesystem's /etc/hosts.

    Without it Asterisk resolves the machine's name through DNS on every call and logs errors.
    """
    hosts = root / "etc/hosts"
    name = socket.gethostname()
    text = hosts.read_text() if hosts.exists() else ""
    if re.search(rf"\s{re.escape(name)}(\s|$)", text):
        return
    hosts.parent.mkdir(parents=True, exist_ok=True)
    hosts.write_text(text + ("" if text.endswith("\n") or not text else "\n")
                     + f"127.0.0.1 localhost\n127.0.1.1 {name}\n")


# Where a renumbered asterisk account's ids are looked for: high, below the 65534 of nobody,
# far from the ranges distributions hand out to system accounts and people.
_OWN_ID_START = 64990
# What the asterisk package made in the root filesystem for its account.
_ASTERISK_TREES = ("etc/asterisk", "var/lib/asterisk", "var/log/asterisk", "var/spool/asterisk",
                   "run/asterisk", "var/run/asterisk", "usr/share/asterisk")


def _ids(path: Path, column: int = 2) -> dict[int, str]:
    out: dict[int, str] = {}
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return out
    for line in lines:
        fields = line.split(":")
        if len(fields) > column and fields[column].isdigit():
            out[int(fields[column])] = fields[0]
    return out


def _ensure_own_ids(root: Path, name: str = "asterisk") -> None:
    """Give the root filesystem's asterisk account a uid and gid no host account has.

    The kernel knows users by number only: if the chrooted Asterisk ran as a uid that is
    also, say, the host's postgres, it could signal and trace that account's processes and
    open its files. Idempotent: nothing changes once the ids are the root filesystem's own.
    """
    import grp
    import pwd

    passwd, group = root / "etc/passwd", root / "etc/group"
    users, groups = _ids(passwd), _ids(group)
    uid = next((u for u, n in users.items() if n == name), None)
    gid = next((g for g, n in groups.items() if n == name), None)
    if uid is None or gid is None:
        return
    _drop_supplementary(group, name)
    host_uids = {p.pw_uid for p in pwd.getpwall()}
    host_gids = {g.gr_gid for g in grp.getgrall()}
    if uid not in host_uids and gid not in host_gids:
        return
    new = next(i for i in range(_OWN_ID_START, 1000, -1)
               if i not in host_uids and i not in host_gids and i not in users
               and i not in groups)
    _renumber(passwd, name, {2: new, 3: new})
    _renumber(group, name, {2: new})
    # Anything else whose primary group was the old one keeps pointing at it: only the
    # asterisk account and group are renumbered.
    for tree in _ASTERISK_TREES:
        base = root / tree
        if not base.exists() or base.is_symlink():
            continue
        for here, dirs, files in os.walk(base):
            for entry in [here, *(os.path.join(here, x) for x in dirs + files)]:
                st = os.lstat(entry)
                if st.st_uid == uid or st.st_gid == gid:
                    os.chown(entry, new if st.st_uid == uid else -1,
                             new if st.st_gid == gid else -1, follow_symlinks=False)


def _drop_supplementary(group: Path, name: str) -> None:
    """Take ``name`` out of other groups' member lists (the package puts asterisk in dialout
    and audio, groups whose numbers are the host's too): it needs no device of the host."""
    lines = group.read_text().splitlines(keepends=True)
    changed = False
    for i, line in enumerate(lines):
        fields = line.rstrip("\n").split(":")
        if len(fields) >= 4 and name in fields[3].split(","):
            fields[3] = ",".join(m for m in fields[3].split(",") if m != name)
            lines[i] = ":".join(fields) + "\n"
            changed = True
    if changed:
        tmp = group.with_name(group.name + ".siaga-tmp")
        tmp.write_text("".join(lines))
        os.chmod(tmp, os.stat(group).st_mode & 0o7777)
        os.replace(tmp, group)


def _renumber(path: Path, name: str, columns: dict[int, int]) -> None:
    """Rewrite ``name``'s line of a passwd/group-style file with new ids (atomically)."""
    lines = path.read_text().splitlines(keepends=True)
    for i, line in enumerate(lines):
        fields = line.rstrip("\n").split(":")
        if fields and fields[0] == name:
            for column, value in columns.items():
                fields[column] = str(value)
            lines[i] = ":".join(fields) + "\n"
    tmp = path.with_name(path.name + ".siaga-tmp")
    tmp.write_text("".join(lines))
    os.chmod(tmp, os.stat(path).st_mode & 0o7777)
    os.replace(tmp, path)
