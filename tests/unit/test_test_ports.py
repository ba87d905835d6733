"""The test suite's own port allocator (tests/ports.py): what makes parallel runs safe."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import ports

# A loopback address nothing else on the machine binds: the ports checked here are ours.
HOST = "127.0.0.77"


@pytest.fixture
def private_leases(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Leases taken in a lock directory of the test's own; their descriptors closed after."""
    monkeypatch.setattr(ports, "LOCK_DIR", tmp_path)
    monkeypatch.setattr(ports, "_lease_fd", None)
    fds: list[int] = []
    yield fds
    for fd in fds:
        os.close(fd)


def lease(fds: list[int]) -> range | None:
    block = ports._lease()
    if ports._lease_fd is not None:
        fds.append(ports._lease_fd)
        ports._lease_fd = None
    return block


def test_given_a_block_leased_when_another_lease_is_asked_then_it_gets_another_block(
        private_leases: list[int]) -> None:
    """Two leases (as two processes would take them) never share a port; the range's blocks
    run out rather than being handed out twice."""
    blocks = []
    for _ in range(100):  # bounded: a lease that never runs out is a failure, not a hang
        block = lease(private_leases)
        if block is None:
            break
        blocks.append(block)
    assert len(blocks) == (ports.RANGE[1] - ports.RANGE[0]) // ports.BLOCK
    taken = [port for block in blocks for port in block]
    assert len(taken) == len(set(taken))
    low, _high = ports._ephemeral()
    assert max(taken) < low  # the kernel never hands one out by itself


def test_given_a_port_beside_the_next_one_is_bound_when_a_port_is_asked_then_it_is_skipped(
        private_leases: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    """A port whose neighbours within the stride are not all free is not handed out, and
    ports handed out are a stride apart."""
    block = lease(private_leases)
    assert block is not None
    monkeypatch.setattr(ports, "_leased", True)
    monkeypatch.setattr(ports, "_block", block)
    monkeypatch.setattr(ports, "_next", 0)
    starts = block[::ports.STRIDE]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as busy:
        busy.bind((HOST, starts[0] + 2))
        first = ports.free_port(socket.SOCK_DGRAM, HOST)
        second = ports.free_port(socket.SOCK_STREAM, HOST)
    assert (first, second) == (starts[1], starts[2])
