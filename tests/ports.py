"""Ports for the servers tests start, that no other process takes before the server binds.

A test picks a port, writes it into a config, and the server binds it seconds later. A port
the kernel chose for ``bind(0)`` is free at the moment it is chosen only: until the server
binds it, the kernel may hand the same port to anyone else (another pytest-xdist worker,
another developer's test run, a benchmark, any outgoing connection), and the server then
fails to start.

So ports come from a range below the kernel's ephemeral range (``ip_local_port_range``,
32768-60999 by default), which the kernel never hands out by itself, and above the RTP ranges
of Asterisk (10000-20000) and of pjsua2 (a random base in 20000-30000). The range is cut into
blocks; each process leases one block with an ``flock`` on a file in the temporary directory
(released by the kernel when the process ends, however it ends), so no two processes hand
out the same port. Within its block a process hands ports out in turn, every
:data:`STRIDE`-th one with the ports above it up to the next free too (SIPp's media echo
also binds the port two above the one it is given), skipping any that cannot be bound right
now (a server of an earlier test may still hold it).

Where no block can be leased (all taken, or a machine whose ephemeral range covers ours) the
kernel's choice is used, as before.
"""

from __future__ import annotations

import fcntl
import os
import socket
import tempfile
import threading
from pathlib import Path

# [first, last) of the leased ports.
RANGE = (30100, 32700)
BLOCK = 400
# Ports handed out are this far apart; each comes with the ones up to the next.
STRIDE = 4
LOCK_DIR = Path(tempfile.gettempdir()) / "siaga-test-ports"

_lock = threading.Lock()
_block: range | None = None
_lease_fd: int | None = None
_leased = False  # a lease was tried (taken or not) in this process
_next = 0


def _ephemeral() -> tuple[int, int]:
    """The kernel's ephemeral port range (its default when it cannot be read)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _lease() -> range | None:
    """Lease a free block for this process (None when none can be had)."""
    global _lease_fd
    low, high = _ephemeral()
    if RANGE[1] > low and RANGE[0] <= high:
        return None  # the kernel may hand out ports of our range itself
    try:
        LOCK_DIR.mkdir(mode=0o1777, exist_ok=True)
    except OSError:
        return None
    for first in range(RANGE[0], RANGE[1] - BLOCK + 1, BLOCK):
        try:
            fd = os.open(LOCK_DIR / f"block-{first}.lock", os.O_RDWR | os.O_CREAT, 0o666)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        _lease_fd = fd  # kept open (not inherited by children) for the process's life
        return range(first, first + BLOCK)
    return None


def _bindable(host: str, first: int) -> bool:
    """Whether TCP and UDP sockets can bind ``host`` on ``first`` and the ports up to
    ``first + STRIDE`` right now."""
    for port in range(first, first + STRIDE):
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            with socket.socket(socket.AF_INET, kind) as s:
                try:
                    s.bind((host, port))
                except OSError:
                    return False
    return True


def _kernel_choice(host: str, kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def free_port(kind: int = socket.SOCK_STREAM, host: str = "127.0.0.1") -> int:
    """A port on ``host`` for a server a test is about to start (TCP and UDP both free).

    ``kind`` matters only where no block could be leased (the kernel's choice is of a kind).
    """
    global _block, _leased, _next
    with _lock:
        if not _leased:
            _leased = True
            _block = _lease()
        if _block is not None:
            starts = _block[::STRIDE]
            for _ in range(len(starts)):
                port = starts[_next % len(starts)]
                _next += 1
                if _bindable(host, port):
                    return port
    return _kernel_choice(host, kind)
