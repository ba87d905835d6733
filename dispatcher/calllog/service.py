"""The call log as one Twisted service for the server: writer, live journeys, reconciliation.

The server builds it once and hands it the reactor, the database URL, who is who (a
:class:`~dispatcher.calllog.journey.Directory`), where Asterisk writes CEL and the AMI
service whose events it follows::

    calllog = CallLogService(reactor, center.database_url, Directory.from_center(center),
                             cel_path=str(paths.log / "cel-custom" / "Master.csv"), ami=ami)
    calllog.prepare(center)            # blocking, before reactor.run(): schema + reference rows
    calllog.setServiceParent(server)   # starts the writer; reconciles now and every minute

Once started it takes every AMI event into the journeys, drops the journeys in progress when
the connection is lost and reconciles after every login (to catch up on what happened
meanwhile); stopped, it takes no more events.

Nothing here blocks the reactor once ``prepare`` is done.

Journeys tell the server what happened through their tracker's hooks (``calllog.builder``, a
:class:`~dispatcher.calllog.journey.JourneyTracker`): ``on_handoff(record, agency)`` when a
call's citizen first talks with an agency, ``on_unanswered(record)`` when a live journey
ended with nobody answering it (the finished record attached: the place to judge a missed
call from). Journeys rebuilt from CEL reach ``on_reconciled`` instead, with their records,
and those closed because Asterisk died are what :meth:`CallLogService.close_cut` returns.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session
from twisted.application.service import MultiService
from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from dispatcher.calllog import cel, db, store_journeys
from dispatcher.calllog.journey import Directory, JourneyBuilder, JourneyRecord
from dispatcher.calllog.phases import Effect, JourneyEnded
from dispatcher.calllog.writer import CallLogRecorder, CallLogWriter
from dispatcher.heap import give_back


class CallLogService(MultiService):
    """Owns the engine, the writer thread, the journey builder and the CEL reconciliation.

    ``reactor`` must provide ``callFromThread`` and ``callLater`` (``seconds``).
    """

    log = Logger()

    def __init__(
        self,
        reactor: Any,
        url: str | Engine,
        directory: Directory,
        cel_path: str | None = None,
        reconcile_every: float = 60.0,
        on_reconciled: Callable[[cel.ReconcileResult], object] | None = None,
        on_handoff: Callable[[JourneyRecord, str], object] | None = None,
        ami: Any = None,
        asterisk: Any = None,
        on_cut: Callable[[list[JourneyRecord]], object] | None = None,
    ) -> None:
        super().__init__()
        self._reactor = reactor
        self.engine = db.make_engine(url) if isinstance(url, str) else url
        self.sessions = db.make_sessionmaker(self.engine)
        self.directory = directory
        self.cel_path = cel_path
        self.writer = CallLogWriter(reactor, self.sessions)
        self.writer.setServiceParent(self)
        #: ``on_handoff(record, agency)``: a call's citizen now talks with an agency.
        self.builder = JourneyBuilder(directory, on_handoff=on_handoff)
        self.recorder = CallLogRecorder(reactor, self.builder, self.writer)
        self._reconcile_every = reconcile_every
        self._loop: LoopingCall | None = None
        self._waiters: list[Deferred[Any]] | None = None
        self._cut: list[Any] = []  # journeys up when AMI was lost (see close_cut)
        self._cut_at = 0.0
        #: Told of every completed pass (the server looks for missed calls among the
        #: journeys it added: calls made while it was away).
        self.on_reconciled = on_reconciled
        self.ami = ami
        self._unsubscribe: Callable[[], None] | None = None
        self._logins_watched = False
        #: The supervised Asterisk (its ``runs``: how many times it was started), to tell at
        #: a login whether the calls up when AMI was lost died with it; ``on_cut(records)``
        #: hears the journeys closed for that reason (:meth:`close_cut`).
        self.asterisk = asterisk
        self.on_cut = on_cut
        self._runs_at_login: int | None = None

    def prepare(self, center: Any | None = None) -> str | None:
        """Upgrade the schema and sync operators/agencies from the config (blocking: call it
        before the reactor runs). Returns the schema revision."""
        revision = db.upgrade(self.engine)
        if center is not None:
            with db.transaction(self.sessions) as session:
                store_journeys.sync_center(session, center)
        return revision

    def startService(self) -> None:
        """Start the writer, follow AMI, then reconcile now and every ``reconcile_every``
        seconds."""
        super().startService()
        if self.ami is not None:
            self._unsubscribe = self.ami.subscribe_all(
                lambda event: self.event_received(event.fields))
            if not self._logins_watched:  # once: AMIService has no way to remove a listener
                self._logins_watched = True
                self.ami.on_connected(self._ami_connected)
        if self.cel_path and self._reconcile_every > 0:
            self._loop = LoopingCall(self._scheduled_reconcile)
            self._loop.clock = self._reactor
            self._loop.start(self._reconcile_every, now=True).addErrback(
                lambda f: self.log.failure("CEL reconciliation loop stopped", f)
            )

    def stopService(self) -> Deferred[None]:
        """Stop following AMI and reconciling; drain the writer (every queued write is
        committed)."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        return super().stopService()  # type: ignore[no-any-return]

    # -- what the server feeds it --------------------------------------------------------------

    def event_received(self, event: dict[str, str]) -> list[Deferred[Any]]:
        """Every AMI event goes here; journeys are written as they start and finish."""
        return self.recorder.event_received(event)

    def _ami_connected(self, client: Any) -> None:
        if not self.running:
            return  # AMIService keeps its listeners; this one outlives a stopped service
        client.on_connection_lost(lambda _client: self.connection_lost())
        # Another run of Asterisk since the last login: the calls up when AMI was lost died
        # with the old process, and no CEL record will ever end them.
        runs = self.asterisk.runs if self.asterisk is not None else None
        seen, self._runs_at_login = self._runs_at_login, runs
        if seen is not None and runs != seen:
            records = self.close_cut()
            if self.on_cut is not None:
                self.on_cut(records)
        else:
            self.forget_cut()
        self.reconcile()

    def connection_lost(self) -> list[str]:
        """AMI is gone: drop journeys in progress; the next reconciliation completes them.

        They are also set aside (with the time): if Asterisk turns out to have died,
        :meth:`close_cut` closes them, since no CEL record will ever end them.
        """
        self._cut = list({id(j): j for j in self.builder.journeys.values()}.values())
        self._cut_at = self._reactor.seconds()
        return self.recorder.connection_lost()

    # Q.850 38, network out of order: the cause a carrier gives for calls its exchange lost.
    PBX_DIED_CAUSE = 38

    def close_cut(self) -> list[JourneyRecord]:
        """Asterisk died while the journeys set aside at :meth:`connection_lost` were up:
        they ended then, every channel hung up with :attr:`PBX_DIED_CAUSE` (so one not yet
        answered is ``dropped``). Each is written (retried while the database is away);
        returns the records. Asterisk's CEL holds no end for them: nothing else would."""
        cut, self._cut = self._cut, []
        records = []
        for journey in cut:
            if journey.record is None:
                continue
            uids = sorted(journey.channels, key=lambda uid: uid != journey.citizen)
            effects: list[Effect] = []
            for uid in uids:  # the citizen first: the call's cause is the citizen's
                effects += journey.hangup(self._cut_at, uid, cause=self.PBX_DIED_CAUSE,
                                          by_self=False)
            effects += journey.finish(self._cut_at)
            # Only the finished record is taken: like the journeys CEL rebuilds, these are
            # judged by the server from what close_cut returns, not through the live hooks.
            for record in (e.record for e in effects if isinstance(e, JourneyEnded)):
                records.append(record)
                self.writer.save_journey(record).addErrback(
                    lambda f, lid=record.linkedid: self.log.failure(
                        "journey {linkedid} cut by Asterisk's death not saved", f,
                        linkedid=lid))
        if records:
            self.log.warn("Asterisk died with {n} calls up: their journeys are closed",
                          n=len(records))
        return records

    def forget_cut(self) -> None:
        """AMI is back on the same Asterisk: the journeys set aside go on there (CEL
        completes them)."""
        self._cut = []

    def reconcile(self) -> Deferred[Any]:
        """Read the CEL file's new records in the writer thread; fires with the
        :class:`~dispatcher.calllog.cel.ReconcileResult` (None without a CEL file).

        One pass at a time: a call while one runs waits for that pass's result.
        """
        waiter: Deferred[Any] = Deferred()
        if self.cel_path is None:
            waiter.callback(None)
            return waiter
        if self._waiters is not None:
            self._waiters.append(waiter)
            return waiter
        self._waiters = [waiter]
        self.writer.submit(_reconcile, self.cel_path, self.directory).addBoth(self._passed)
        return waiter

    def _passed(self, result: Any) -> None:
        waiters, self._waiters = self._waiters or [], None
        if isinstance(result, cel.ReconcileResult):
            if result.saved:
                self.log.info("CEL reconciliation added {n} calls", n=len(result.saved))
            for offset, problem in result.bad_lines:
                self.log.warn(
                    "unreadable CEL line at {offset}: {problem}", offset=offset, problem=problem
                )
            if self.on_reconciled is not None:
                try:
                    self.on_reconciled(result)
                except Exception:
                    self.log.failure("handling the reconciled calls failed")
        for waiter in waiters:
            if isinstance(result, Failure):
                waiter.errback(result)
            else:
                waiter.callback(result)

    # A journey whose end AMI never reported is forgotten after this long without events (the
    # log keeps it in progress; CEL completes it).
    IDLE_JOURNEY_SECONDS = 4 * 3600.0

    def _scheduled_reconcile(self) -> Deferred[Any]:
        lost = self.builder.expire(self._reactor.seconds(), self.IDLE_JOURNEY_SECONDS)
        if lost:
            self.log.warn(
                "forgot {n} journeys without events for hours: {ids}", n=len(lost), ids=lost
            )
        # A failed pass is logged and the loop goes on: the next minute may succeed.
        return self.reconcile().addErrback(
            lambda f: self.log.failure("CEL reconciliation failed", f)
        )


def _reconcile(session: Session, path: str, directory: Directory | None
               ) -> cel.ReconcileResult:
    """A writer job: reconcile, then give back to the system the memory its rows took (a
    minute of CEL under load is megabytes, freed in the writer thread's malloc arena)."""
    try:
        return cel.reconcile(session, path, directory)
    finally:
        give_back()
