"""Run a command under a system-call allow-list, as systemd's SystemCallFilter= does.

    python tests/seccomp.py @system-service,@mount -- COMMAND...

The groups are expanded by ``systemd-analyze syscall-filter`` (systemd's own lists); the
filter is built with libseccomp through ctypes, refuses every other call with EPERM (the
unit's SystemCallErrorNumber=EPERM), and is loaded just before the command is executed.
"""

from __future__ import annotations

import ctypes
import errno
import os
import subprocess
import sys

SCMP_ACT_ALLOW = 0x7FFF0000


def scmp_act_errno(number: int) -> int:
    """libseccomp's SCMP_ACT_ERRNO(number)."""
    return 0x00050000 | (number & 0xFFFF)


def expand(names: list[str], seen: set[str] | None = None) -> set[str]:
    """The system calls named, groups (``@name``) expanded through systemd-analyze."""
    seen = set() if seen is None else seen
    calls: set[str] = set()
    for name in names:
        if not name.startswith("@"):
            calls.add(name)
            continue
        if name in seen:
            continue
        seen.add(name)
        out = subprocess.run(["systemd-analyze", "syscall-filter", name], capture_output=True,
                             text=True, check=True).stdout
        members = [w.strip() for w in out.splitlines()[1:]
                   if w.strip() and not w.strip().startswith("#")]
        calls |= expand(members, seen)
    return calls


def load_filter(calls: set[str]) -> None:
    """Allow ``calls`` only, from now on, in this process and its children."""
    lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                     ctypes.c_uint]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    ctx = lib.seccomp_init(scmp_act_errno(errno.EPERM))
    if not ctx:
        raise OSError("seccomp_init failed")
    for call in sorted(calls):
        number = lib.seccomp_syscall_resolve_name(call.encode())
        if number < 0:  # not a call of this architecture
            continue
        if lib.seccomp_rule_add(ctx, SCMP_ACT_ALLOW, number, 0) != 0:
            raise OSError(f"seccomp_rule_add({call}) failed")
    if lib.seccomp_load(ctx) != 0:
        raise OSError("seccomp_load failed")


def main(argv: list[str]) -> None:
    """``GROUPS -- COMMAND...``."""
    split = argv.index("--")
    groups = ",".join(argv[:split]).replace(" ", ",").split(",")
    command = argv[split + 1:]
    calls = expand([g for g in groups if g])
    load_filter(calls)
    # The filter itself must hold, or a test under it would prove nothing: syslog(2) (read
    # the kernel log's size) is outside every list a unit here allows.
    assert "syslog" not in calls
    libc = ctypes.CDLL(None, use_errno=True)
    number = ctypes.CDLL("libseccomp.so.2").seccomp_syscall_resolve_name(b"syslog")
    if libc.syscall(number, 10, None, 0) != -1 or ctypes.get_errno() != errno.EPERM:
        sys.exit("seccomp: the filter is not in force")
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
