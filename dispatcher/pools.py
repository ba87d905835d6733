"""Thread pools the server starts and stops with itself, for blocking work off the reactor.

:class:`ThreadPoolService` is a plain pool (reports, retention's file work);
:class:`ReadPool` runs database reads, each in its own read-only transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session, sessionmaker
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

__all__ = ["ReadPool", "ThreadPoolService"]


class ThreadPoolService(Service):
    """A thread pool for blocking work, started and stopped with the server."""

    def __init__(self, name: str, max_threads: int = 2) -> None:
        self.pool = ThreadPool(0, max_threads, name=name)

    def startService(self) -> None:  # noqa: N802 -- Twisted's name
        """Start the threads."""
        super().startService()
        self.pool.start()

    def stopService(self) -> None:  # noqa: N802 -- Twisted's name
        """Stop the threads (waits for running work)."""
        super().stopService()
        self.pool.stop()


class ReadPool(Service):
    """A few threads for database reads; ``run(fn, *args)`` → ``fn(session, *args)``."""

    name = "api-reads"

    def __init__(self, reactor: Any, sessions: sessionmaker[Session], threads: int = 4) -> None:
        self.reactor = reactor
        self.sessions = sessions
        self.pool = ThreadPool(minthreads=1, maxthreads=threads, name="api-reads")

    def startService(self) -> None:  # noqa: N802 -- Twisted's name
        """Start the threads."""
        super().startService()
        self.pool.start()

    def stopService(self) -> None:  # noqa: N802 -- Twisted's name
        """Stop the threads (waits for running reads)."""
        super().stopService()
        self.pool.stop()

    def run(self, fn: Callable[..., Any], *args: Any) -> Deferred[Any]:
        """Run ``fn(session, *args)`` in a pool thread, in a read-only transaction."""
        def work() -> Any:
            with self.sessions() as session, session.begin():
                return fn(session, *args)

        return deferToThreadPool(self.reactor, self.pool, work)
