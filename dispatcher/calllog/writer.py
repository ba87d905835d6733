"""Writes to the call log from the reactor thread without ever blocking it.

The reactor hands each write (a function of a session) to :class:`CallLogWriter`, which queues
it and returns a Deferred at once. One dedicated thread takes the queue in batches, runs each
batch in one transaction, and fires the Deferreds back on the reactor thread with
``callFromThread``. One thread, because SQLite allows one writer at a time anyway, and because it
keeps the writes in the order the reactor made them. ``stop()`` drains the queue before the
thread ends: nothing submitted before a clean shutdown is lost.

The database may go away for a while (PostgreSQL restarted, a full disk). A write whose caller
can wait (a journey: ``submit_retrying``) is then held, in order, and retried every
``retry_interval`` seconds until the database takes it; a write whose caller must hear now
(an alert's 201 or 503: ``submit``) fails at once, and is not held up behind the held ones.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorFromThreads
from twisted.logger import Logger
from twisted.python.failure import Failure

from dispatcher.calllog import store_journeys
from dispatcher.calllog.journey import JourneyBuilder, JourneyRecord

T = TypeVar("T")
_STOP = object()


class WriterStopped(Exception):
    """A write was submitted after ``stop()``."""


def database_unavailable(exc: BaseException) -> bool:
    """The database, not the write, failed: it is unreachable, restarting, full or read-only
    (worth trying the same write again later)."""
    return isinstance(exc, OperationalError) or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated)


class _Job:
    __slots__ = ("fn", "args", "kwargs", "deferred", "retry")

    def __init__(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
        retry: bool = False,
    ) -> None:
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.deferred: Deferred[Any] = Deferred()
        self.retry = retry


class CallLogWriter(Service):
    """A one-thread writer for the call log (a Twisted service: start/stop with the server).

    ``reactor`` needs only ``callFromThread``; ``sessions`` is the session factory.
    ``max_batch`` bounds how many writes share a transaction.
    """

    log = Logger()

    def __init__(
        self,
        reactor: IReactorFromThreads,
        sessions: sessionmaker[Session],
        max_batch: int = 200,
        retry_interval: float = 1.0,
        max_held: int = 100_000,
    ) -> None:
        self._reactor = reactor
        self._sessions = sessions
        self._max_batch = max_batch
        self._retry_interval = retry_interval
        self._max_held = max_held
        # Writer thread only: retrying writes the database refused, oldest first, and when
        # to try them again.
        self._held: list[_Job] = []
        self._retry_at = 0.0
        self._away = False  # writer thread: the database refused; said once until back
        self._queue: queue.Queue[Any] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._stopped: Deferred[None] | None = None
        self.batches = 0  # transactions committed (for tests and metrics)
        self.written = 0  # writes that succeeded
        self.failed = 0  # writes that failed (each logged by whoever submitted it)
        self.held = 0  # retrying writes waiting for the database to come back
        self.retried = 0  # times a held write was tried again

    # -- reactor side --------------------------------------------------------------------------

    def startService(self) -> None:
        """Start the writer thread."""
        super().startService()
        self.start()

    def stopService(self) -> Deferred[None]:
        """Drain and stop (``stop()``)."""
        super().stopService()
        return self.stop()

    def start(self) -> None:
        """Start the writer thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="calllog-writer", daemon=True)
            self._thread.start()

    def submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Deferred[T]:
        """Run ``fn(session, *args, **kwargs)`` in the writer thread, inside a transaction.

        Returns a Deferred that fires on the reactor thread with ``fn``'s result once committed,
        or fails with the exception (the other writes of its batch still commit).
        """
        return self._submit(_Job(fn, args, kwargs))

    def submit_retrying(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> Deferred[T]:
        """As :meth:`submit`, but while the database is unavailable (see
        :func:`database_unavailable`) the write is held and retried, after the writes held
        before it, until it commits; it fails only on another error, or at ``stop()`` if the
        database is still away. ``fn`` must be safe to run again (an upsert)."""
        return self._submit(_Job(fn, args, kwargs, retry=True))

    def _submit(self, job: _Job) -> Deferred[Any]:
        if self._stopping:
            return fail(WriterStopped("the call log writer is stopped"))
        self.start()
        self._queue.put(job)
        return job.deferred

    def save_journey(self, record: JourneyRecord) -> Deferred[Any]:
        """Queue a journey record (``store_journeys.save_journey``, retried while the database is
        away); fires with None when committed."""
        return self.submit_retrying(_save_journey, record)

    @property
    def backlog(self) -> int:
        """Writes submitted and not yet taken by the writer thread (approximate)."""
        return self._queue.qsize()

    def flush(self) -> Deferred[None]:
        """A Deferred that fires once every write submitted before it is committed."""
        return self.submit(_nothing)

    def stop(self) -> Deferred[None]:
        """Refuse new writes, commit every queued one, end the thread. Fires when done."""
        if self._stopped is not None:
            return _chain(self._stopped)
        self._stopping = True
        self._stopped = Deferred()
        if self._thread is None:
            self._stopped.callback(None)
        else:
            self._queue.put(_STOP)
        return _chain(self._stopped)

    def _fire(self, job: _Job, ok: bool, value: Any) -> None:
        # On the reactor thread.
        if ok:
            job.deferred.callback(value)
        else:
            job.deferred.errback(value)

    def _finished(self) -> None:
        assert self._stopped is not None
        self._stopped.callback(None)

    # -- writer thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        stop = False
        while not stop:
            batch: list[_Job] = []
            try:
                item = self._queue.get(timeout=self._wait_for_retry())
            except queue.Empty:
                item = None
            while item is not None:
                if item is _STOP:
                    stop = True
                elif item.retry and self._held:
                    self._held.append(item)  # behind the held ones: writes keep their order
                else:
                    batch.append(item)
                if len(batch) >= self._max_batch:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if self._held and (stop or time.monotonic() >= self._retry_at):
                held, self._held = self._held, []
                self.retried += len(held)
                for start in range(0, len(held), self._max_batch):
                    if self._held and not stop:  # still away: the rest waits, in order
                        self._held.extend(held[start:])
                        break
                    self._write(held[start:start + self._max_batch], final=stop)
            if batch:
                self._write(batch, final=stop)
            if self._away and not self._held:
                self._away = False
                self._reactor.callFromThread(self._said, "the call log database is back: "
                                             "every held write is committed")
            self.held = len(self._held)
        self._reactor.callFromThread(self._finished)

    def _said(self, message: str) -> None:
        # On the reactor thread: the log's observers are not the writer thread's business.
        self.log.warn(message)

    def _wait_for_retry(self) -> float | None:
        if not self._held:
            return None
        return max(0.0, self._retry_at - time.monotonic())

    def _hold(self, job: _Job) -> bool:
        if len(self._held) >= self._max_held:
            return False
        if not self._held:
            self._retry_at = time.monotonic() + self._retry_interval
        self._held.append(job)
        return True

    def _write(self, batch: list[_Job], final: bool = False) -> None:
        try:
            results = self._transaction(batch)
        except Exception as exc:
            # One write failed and took its batch's transaction down: redo them one by one so
            # only the guilty one fails. With the database away, each retrying write is held
            # (without trying it alone) and the others fail at once.
            if database_unavailable(exc) and not final:
                if not self._away:
                    self._away = True
                    self._reactor.callFromThread(
                        self._said, f"the call log database is unavailable ({exc.orig!r}): "
                        f"journeys are held and retried every {self._retry_interval:g} s")
                batch = [job for job in batch if not (job.retry and self._hold(job))]
                if not batch:
                    return
            if len(batch) == 1:
                self.failed += 1
                self._reactor.callFromThread(self._fire, batch[0], False, Failure())
                return
            for job in batch:
                self._write([job], final)
            return
        self.batches += 1
        self.written += len(batch)
        for job, result in zip(batch, results, strict=True):
            self._reactor.callFromThread(self._fire, job, True, result)

    def _transaction(self, batch: list[_Job]) -> list[Any]:
        with self._sessions() as session, session.begin():
            return [job.fn(session, *job.args, **job.kwargs) for job in batch]


def _chain(d: Deferred[None]) -> Deferred[None]:
    """A new Deferred firing with ``d`` (so several callers can wait for one stop)."""
    out: Deferred[None] = Deferred()

    def relay(result: Any) -> Any:
        out.callback(None)
        return result

    d.addBoth(relay)
    return out


def _nothing(session: Session) -> None:
    return None


def _save_journey(session: Session, record: JourneyRecord) -> None:
    store_journeys.save_journey(session, record)


class CallLogRecorder:
    """Glue for the server: feed it every AMI event; journeys go to the writer.

    ``clock`` gives the time for events without a ``Timestamp`` header.
    """

    def __init__(self, clock: Any, builder: JourneyBuilder, writer: CallLogWriter) -> None:
        self._clock = clock
        self._builder = builder
        self._writer = writer

    def event_received(self, event: dict[str, str]) -> list[Deferred[Any]]:
        """Apply one AMI event; return the Deferreds of the writes it caused."""
        return [
            self._writer.save_journey(record)
            for record in self._builder.feed(event, self._clock.seconds())
        ]

    def connection_lost(self) -> list[str]:
        """AMI is gone: forget journeys in progress (CEL reconciliation will complete them)."""
        return self._builder.abandon_all()
