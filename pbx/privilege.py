"""Who Asterisk runs as, and who owns the files it reads and writes.

Asterisk parses every caller's SIP and runs the dialplan: a flaw in it must not hand over the
machine. The supervisor starts it as root (it needs root for the private mount namespace and
the chroot), and Asterisk then drops to its own unprivileged user (``runuser``/``rungroup``
in asterisk.conf). That user owns only what Asterisk writes (its run, log, spool and astdb
directories, the recordings); what it only reads (the generated configuration, the IVR's
prompts) stays root's, readable through the group. The center's state directory (secrets,
the call log database) stays root's alone: in a root filesystem Asterisk never walks through
it, because only the run and recordings directories are bind-mounted into its tree.

The root supervisor never writes into a directory Asterisk can write to (a link planted there
would redirect the write), and it changes owners without following links.
"""

from __future__ import annotations

import errno
import grp
import os
import pwd
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

# The user the Debian/Ubuntu asterisk package creates (and most other distributions).
ASTERISK_USER = "asterisk"

# Modes. Directories Asterisk writes to are its own; what it reads is group-readable only;
# nothing is readable by others.
PRIVATE_DIR = 0o700
SHARED_DIR = 0o750
SHARED_FILE = 0o640
PRIVATE_FILE = 0o600
# Asterisk's files: owner read/write, group read (the server, root, reads them anyway).
ASTERISK_UMASK = 0o027


@dataclass(frozen=True)
class RunUser:
    """An unprivileged account Asterisk drops to, with its ids as the kernel sees them."""

    name: str
    group: str
    uid: int
    gid: int


def _colon_file(path: Path, name: str) -> list[str] | None:
    """The fields of ``name``'s line in a passwd/group-style file, or None."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split(":")
        if len(fields) >= 4 and fields[0] == name:
            return fields
    return None


def run_user(rootfs: Path | None, name: str = ASTERISK_USER) -> RunUser | None:
    """The account Asterisk should run as, or None when it must keep the current user.

    In a root filesystem the account is read from its own /etc/passwd and /etc/group (the
    ids the chrooted Asterisk will have); for a system Asterisk from the host's. Dropping
    privileges needs root: a non-root supervisor runs Asterisk as itself.
    """
    if os.geteuid() != 0:
        return None
    if rootfs is not None:
        user = _colon_file(rootfs / "etc/passwd", name)
        if user is None or not user[2].isdigit() or not user[3].isdigit():
            return None
        gid = int(user[3])
        group = next((g[0] for g in _group_lines(rootfs / "etc/group") if g[2] == str(gid)),
                     None)
        if group is None:
            return None
        return RunUser(name, group, int(user[2]), gid)
    try:
        pw = pwd.getpwnam(name)
        gr = grp.getgrgid(pw.pw_gid)
    except KeyError:
        return None
    return RunUser(name, gr.gr_name, pw.pw_uid, pw.pw_gid)


def _group_lines(path: Path) -> Iterable[list[str]]:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    return [f for f in (line.split(":") for line in text.splitlines()) if len(f) >= 3]


def _fix(fd: int, mode: int, uid: int, gid: int) -> None:
    """Set owner and mode through an open descriptor (nothing to re-resolve, nothing to race)."""
    st = os.fstat(fd)
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        return  # a socket or FIFO Asterisk made: its own business
    if (uid != -1 and st.st_uid != uid) or (gid != -1 and st.st_gid != gid):
        os.fchown(fd, uid, gid)
    if stat.S_IMODE(st.st_mode) != mode:
        os.fchmod(fd, mode)


_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def _set(path: Path, mode: int, uid: int, gid: int, dir_fd: int | None = None) -> None:
    """Set owner and mode of ``path``, never through a link (Asterisk may have planted one
    in a directory it owns, or swap one in while this runs)."""
    try:
        fd = os.open(path, _OPEN_FLAGS, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO, errno.ENOENT, errno.EOPNOTSUPP):
            return  # a link, a socket, or gone since it was listed
        raise
    try:
        _fix(fd, mode, uid, gid)
    finally:
        os.close(fd)


def _tree(root: Path, dir_mode: int, file_mode: int, uid: int, gid: int) -> None:
    """Set owner and modes on ``root`` and everything below it.

    ``os.fwalk`` without following links walks by directory descriptors, so a directory
    swapped for a link while the walk runs leads nowhere outside the tree.
    """
    for _here, _dirs, files, dir_fd in os.fwalk(root, follow_symlinks=False):
        _fix(dir_fd, dir_mode, uid, gid)
        for name in files:
            _set(Path(name), file_mode, uid, gid, dir_fd=dir_fd)


def secure_state(state_dir: Path, *, shared: Path, reads: Iterable[Path],
                 writes: Iterable[Path], user: RunUser | None,
                 traverse_state: bool = False) -> None:
    """Give the state directory its owners and modes.

    ``state_dir``: root's only (0700), or 0710 with Asterisk's group when ``traverse_state``
    (a system Asterisk reaches its run directory through it: it may pass, not list).
    ``shared``: the directory holding everything Asterisk uses (0750, group Asterisk's).
    ``reads``: trees Asterisk only reads (root-owned, group-readable).
    ``writes``: trees Asterisk writes (its own; files 0640).
    Without a ``user`` the current user owns everything, with the same modes.
    """
    uid = gid = -1
    if user is not None:
        uid, gid = user.uid, user.gid
    _set(state_dir, 0o710 if traverse_state and user is not None else PRIVATE_DIR,
         -1, gid if traverse_state else -1)
    _set(shared, SHARED_DIR, -1, gid)
    for tree in reads:
        _tree(tree, SHARED_DIR, SHARED_FILE, 0 if user is not None else -1, gid)
    for tree in writes:
        _tree(tree, SHARED_DIR, SHARED_FILE, uid, gid)


def private_file(path: Path) -> None:
    """Create ``path`` empty if missing, and make it the owner's alone (0600).

    For files another library creates with its own default mode (SQLite's database: its
    journal and WAL files copy the database file's mode).
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, PRIVATE_FILE)
    try:
        os.fchmod(fd, PRIVATE_FILE)
    finally:
        os.close(fd)
