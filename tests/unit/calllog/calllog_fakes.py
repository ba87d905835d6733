"""Fakes for the call log's Twisted edges: a reactor whose thread hand-offs the test pumps."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from twisted.internet.task import Clock

from tests.harness import PATIENCE


class ThreadedFakeReactor(Clock):
    """A ``task.Clock`` that also takes ``callFromThread``: calls queued by the writer thread
    run on the test's thread when it pumps, as the real reactor would run them on its own."""

    def __init__(self) -> None:
        super().__init__()
        self.thread_calls: queue.Queue[tuple[Callable[..., Any], tuple[Any, ...]]] = queue.Queue()
        self.threads: set[str] = set()

    def callFromThread(self, f: Callable[..., Any], *args: Any) -> None:  # noqa: N802
        """Queue ``f(*args)`` for the test's thread."""
        self.threads.add(threading.current_thread().name)
        self.thread_calls.put((f, args))

    def pump_until(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        """Run queued calls until ``condition`` holds; fail after ``timeout`` × ``PATIENCE``
        seconds (the writer thread is real, and a loaded machine slows it)."""
        deadline = time.monotonic() + timeout * PATIENCE
        while not condition():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("condition not reached before the deadline")
            try:
                f, args = self.thread_calls.get(timeout=min(0.05, remaining))
            except queue.Empty:
                continue
            f(*args)
