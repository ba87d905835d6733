"""Freed memory given back to the system (``dispatcher.heap.give_back``)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from dispatcher import heap


def resident_mb() -> float:
    """This process's resident memory (MB)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * 4096 / 2**20


@pytest.mark.skipif(heap._TRIM is None, reason="the C library has no malloc_trim")
def test_given_a_threads_garbage_kept_resident_when_given_back_then_the_process_shrinks(
        ) -> None:
    """A pass in a worker thread builds 60 MB of blocks and frees all but one in a hundred
    (what stays live pins the arena, so malloc's own trimming at free cannot return it):
    the memory stays resident until ``give_back``, which returns most of it."""
    kept: list[bytearray] = []

    def transient() -> None:
        blocks = [bytearray(4000) for _ in range(15_000)]  # above pymalloc's size: malloc
        for block in blocks:
            block[::512] = b"x" * len(block[::512])  # touched: resident
        kept.extend(blocks[::100])

    worker = threading.Thread(target=transient)
    worker.start()
    worker.join()
    before = resident_mb()
    assert heap.give_back() is True
    after = resident_mb()
    assert before - after > 20, (before, after)
    assert len(kept) == 150  # the pinning blocks lived through it
