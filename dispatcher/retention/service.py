"""The retention service: every few minutes, rotate Asterisk's CEL file and delete what the
retention settings say is too old or too much (see :mod:`dispatcher.retention.policy`).

It runs on the reactor (a ``LoopingCall`` on the injected clock) and does no filesystem or
database work there: ``blocking(fn, *args)`` runs a pass in a thread pool, and the CEL file
is renamed by a job of the call log's writer (``write(fn, *args)``, the writer thread), the
same thread that reconciles CEL, so a rotation never lands in the middle of a
reconciliation.

CEL rotation: ``cel_custom`` opens its file for every record, so renaming ``Master.csv`` makes
Asterisk start a new one at the next record. The file is renamed only once the call log has
reconciled all of it (its cursor is at the end: no call in progress in it), so no record is
left behind in a rotated file unread; a busy file is tried again at the next pass.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker
from twisted.application.service import Service
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from dispatcher.calllog import store_journeys
from dispatcher.calllog.db import transaction
from dispatcher.config.model import Retention
from dispatcher.heap import give_back
from dispatcher.retention.policy import Pass, choose, delete, protected_recordings, scan

__all__ = ["RetentionReport", "RetentionService", "prune_recordings", "rotate_cel"]

DAY = 86400.0
MB = 1024 * 1024
Runner = Callable[..., "Deferred[Any]"]


@dataclass
class RetentionReport:
    """One pass: what happened to recordings and CEL files."""

    recordings: Pass | None = None
    cel: Pass | None = None
    rotated: str | None = None
    problems: list[str] = field(default_factory=list)


def prune_recordings(sessions: sessionmaker[Session], folder: Path, now: float,
                     settings: Retention) -> Pass:
    """Delete recordings past the age limit or the size cap, keeping protected ones.

    Blocking. If the call log cannot be read, nothing is deleted (the exception goes up):
    without knowing which incidents are open no recording is safe to delete.
    """
    if not settings.recordings_max_age_days and not settings.recordings_max_total_mb:
        # No limit: nothing may go, so nothing is listed (the folder holds a file per call,
        # tens of thousands a day: listing them all each pass cost megabytes for nothing).
        return Pass()
    with transaction(sessions) as session:
        protected = protected_recordings(session)
    doomed, result = choose(scan(folder, suffixes=(".wav", ".WAV", ".gsm", ".ulaw", ".alaw")),
                            now, settings.recordings_max_age_days * DAY,
                            settings.recordings_max_total_mb * MB, protected)
    return delete(doomed, result)


def prune_cel(cel_path: Path, now: float, settings: Retention) -> Pass:
    """Delete rotated CEL files (never the live one) past the age limit or the size cap."""
    stem, suffix = cel_path.stem, cel_path.suffix
    rotated = [f for f in scan(cel_path.parent, suffixes=(suffix,), exclude=(cel_path.name,))
               if f.path.name.startswith(stem + "-")]
    doomed, result = choose(rotated, now, settings.cel_max_age_days * DAY,
                            settings.cel_max_total_mb * MB)
    return delete(doomed, result)


def rotate_cel(session: Session, cel_path: str, rotate_bytes: int, now: float) -> str | None:
    """Rename the CEL file to ``<stem>-<UTC time><suffix>`` if it is at least
    ``rotate_bytes`` long and reconciled to its end; returns the new name, or None.

    Runs as a writer job (the call log's cursor is read in the writer's transaction)."""
    path = Path(cel_path)
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    if st.st_size < rotate_bytes:
        return None
    if store_journeys.cel_cursor(session, cel_path, st.st_ino, st.st_size) != st.st_size:
        return None  # a call still in progress in it, or not reconciled yet: next pass
    stamp = dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.stem}-{stamp}{path.suffix}")
    n = 1
    while target.exists():
        target = path.with_name(f"{path.stem}-{stamp}-{n}{path.suffix}")
        n += 1
    os.rename(path, target)
    return target.name


class RetentionService(Service):
    """Runs :meth:`run_once` every ``settings.every_minutes`` on ``clock``.

    ``blocking`` runs a function in a thread pool; ``write`` runs ``fn(session, ...)`` in the
    call log's writer thread; ``reconcile`` (optional) reads the CEL file into the log first.
    ``cel_path`` None: no CEL rotation.
    """

    name = "retention"
    log = Logger()

    def __init__(self, clock: IReactorTime, settings: Retention, sessions: sessionmaker[Session],
                 recordings_dir: Path, cel_path: Path | None, blocking: Runner, write: Runner,
                 reconcile: Callable[[], Deferred[Any]] | None = None) -> None:
        self.clock = clock
        self.settings = settings
        self.sessions = sessions
        self.recordings_dir = Path(recordings_dir)
        self.cel_path = Path(cel_path) if cel_path is not None else None
        self.blocking = blocking
        self.write = write
        self.reconcile = reconcile
        self.last: RetentionReport | None = None
        self._loop: LoopingCall | None = None

    def startService(self) -> None:  # noqa: N802 -- Twisted's name
        """Start the periodic passes (the first one after one interval, not at start-up:
        a center that just started has other work to do)."""
        super().startService()
        self._loop = LoopingCall(self._scheduled)
        self._loop.clock = self.clock
        self._loop.start(self.settings.every_minutes * 60.0, now=False).addErrback(
            lambda f: self.log.failure("retention loop stopped", f))

    def stopService(self) -> None:  # noqa: N802 -- Twisted's name
        """Stop the passes (one running finishes in its thread)."""
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    def _scheduled(self) -> Deferred[Any]:
        # A failed pass is logged; the next one may succeed.
        return self.run_once().addErrback(lambda f: self.log.failure("retention pass failed", f))

    @inlineCallbacks
    def run_once(self):  # noqa: ANN201 (Deferred[RetentionReport])
        """One pass: rotate CEL, prune rotated CEL files, prune recordings. Each part's
        failure is logged and noted, and the other parts still run."""
        report = RetentionReport()
        now = self.clock.seconds()
        s = self.settings
        if self.cel_path is not None:
            try:
                if self.reconcile is not None:
                    yield self.reconcile()
                report.rotated = yield self.write(rotate_cel, str(self.cel_path),
                                                  s.cel_rotate_mb * MB, now)
                if report.rotated:
                    self.log.info("CEL file rotated to {name}", name=report.rotated)
                report.cel = yield self.blocking(prune_cel, self.cel_path, now, s)
            except Exception as exc:
                self.log.failure("retention: CEL rotation or pruning failed")
                report.problems.append(f"cel: {exc}")
        try:
            report.recordings = yield self.blocking(prune_recordings, self.sessions,
                                                    self.recordings_dir, now, s)
        except Exception as exc:
            self.log.failure("retention: recordings were not pruned")
            report.problems.append(f"recordings: {exc}")
        try:
            yield self.blocking(give_back)  # the pass's lists, freed in a pool thread
        except Exception:
            self.log.failure("retention: freed memory not given back")
        for what, result in (("recordings", report.recordings), ("CEL files", report.cel)):
            if result is None:
                continue
            if result.deleted:
                self.log.info("retention: deleted {n} {what} ({mb:.1f} MB)", n=len(
                    result.deleted), what=what, mb=result.freed / MB)
            if result.over_cap:
                self.log.warn("retention: {what} still above the size cap: protected or "
                              "recent files alone exceed it", what=what)
            for problem in result.errors:
                self.log.error("retention: could not delete {problem}", problem=problem)
        self.last = report
        return report
