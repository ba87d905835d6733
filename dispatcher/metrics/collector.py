"""What ``/metrics`` reports, read from the server's live parts at scrape time (no polling).

:class:`Sources` names the parts a scrape reads; :class:`CenterCollector` turns them into
Prometheus metric families when the registry collects. Everything here runs on the reactor
thread and only reads in-memory state; the one database figure (today's service level) is
read beforehand in a thread pool and handed in as ``today``.

Not exported because the feature does not exist yet: node health (scale-out). No placeholder
value is invented for it. The self-test's figures appear once a test call has finished
(before that there is no result to report, and its age would be a made-up number).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.orm import Session
from twisted.internet import defer, threads
from twisted.python.threadpool import ThreadPool

from dialplans.contract import QUEUE_NAME
from dispatcher.calllog.db import transaction
from dispatcher.calllog.report_figures import SERVICE_LEVELS, summary
from dispatcher.calllog.report_period import ReportOptions
from dispatcher.config.model import Center
from dispatcher.hotline.desks import operator_state
from pbx.ami.model import LiveModel

__all__ = ["OPERATOR_STATES", "CenterCollector", "Sources", "TodayReader", "today_reader",
           "today_summary"]

# Every state a desk can be in, so each is exported (0 included) and a dashboard's series
# never vanish when no desk is in one.
OPERATOR_STATES = ("available", "ringing", "on call", "paused", "offline", "logged out")
REPORT_TIMEZONE = ReportOptions.timezone  # the reports' day; metrics' "today" is the same


@dataclass
class Sources:
    """The parts a scrape reads. Any but ``model`` and ``center`` may be None (not built).

    ``ami`` is an ``AMIService``, ``asterisk`` an ``AsteriskService``, ``writer`` the call
    log's ``CallLogWriter``, ``alerts`` the ``AlertService``, ``callbacks`` the hotline's
    ``CallbackList``.
    """

    model: LiveModel
    center: Center
    clock: Callable[[], float]
    ami: Any = None
    asterisk: Any = None
    writer: Any = None
    alerts: Any = None
    callbacks: Any = None
    selftest: Any = None  # the SelfTestService (dispatcher.selftest)
    lag: Any = None  # the ReactorLag probe (dispatcher.metrics.lag)
    # A topology's nodes: a callable returning [{"name", "up", ...}] (dispatcher.cluster).
    nodes: Any = None


def today_summary(session: Session, now: float, timezone: str = REPORT_TIMEZONE
                  ) -> dict[str, Any]:
    """The report's summary for the local day of ``now`` (blocking: run in a thread)."""
    today = dt.datetime.fromtimestamp(now, ZoneInfo(timezone)).date()
    return summary(session, ReportOptions(start=today, end=today, timezone=timezone))


TodayReader = Callable[[], "defer.Deferred[dict[str, Any] | None]"]


def today_reader(reactor: Any, pool: ThreadPool, sessions: Any,
                 clock: Callable[[], float]) -> TodayReader:
    """Reads today's summary in ``pool`` (never on the reactor thread)."""
    def read() -> defer.Deferred[dict[str, Any] | None]:
        now = clock()

        def work() -> dict[str, Any]:
            with transaction(sessions) as session:
                return today_summary(session, now)

        return threads.deferToThreadPool(reactor, pool, work)

    return read


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


class CenterCollector(Collector):
    """One scrape's metrics. ``today`` is :func:`today_summary`'s result, or None when the
    database could not be read (the day's figures are then left out, and
    ``siaga_calllog_readable`` says 0)."""

    def __init__(self, sources: Sources, today: dict[str, Any] | None) -> None:
        self.sources = sources
        self.today = today

    def collect(self) -> Iterator[Metric]:
        """Read every source now."""
        yield from self._queue()
        yield from self._pbx()
        yield from self._calllog()
        yield from self._alerts()
        yield from self._callbacks()
        yield from self._selftest()
        yield from self._reactor()

    def _reactor(self) -> Iterator[Metric]:
        lag = self.sources.lag
        if lag is None:
            return
        yield _gauge("siaga_reactor_lag_seconds",
                     "How late the server's event loop ran its latest timer.", lag.latest)
        yield _gauge("siaga_reactor_lag_max_seconds",
                     "The latest a timer of the server's event loop ran since it started.",
                     lag.max)

    def _queue(self) -> Iterator[Metric]:
        s = self.sources
        now = s.clock()
        queue = s.model.queues.get(QUEUE_NAME)
        waits = [max(0.0, now - c.wait_start) for c in queue.callers.values()] if queue else []
        yield _gauge("siaga_queue_callers_waiting",
                     "Callers waiting in the operators' queue now.", len(waits))
        yield _gauge("siaga_queue_longest_wait_seconds",
                     "How long the longest-waiting caller has waited (0: nobody waits).",
                     max(waits, default=0.0))
        members = queue.members if queue is not None else {}
        counts = dict.fromkeys(OPERATOR_STATES, 0)
        for op in s.center.operators:
            member = members.get(f"PJSIP/{op.extension}")
            state = ("logged out" if member is None
                     else operator_state(member.status, member.paused, member.in_call))
            counts[state] = counts.get(state, 0) + 1
        family = GaugeMetricFamily("siaga_operators", "Operator desks by state.",
                                   labels=["state"])
        for state, n in counts.items():
            family.add_metric([state.replace(" ", "_")], n)
        yield family

    def _pbx(self) -> Iterator[Metric]:
        s = self.sources
        channels = list(s.model.channels.values())
        yield _gauge("siaga_calls_up", "Calls in Asterisk now (distinct linked ids).",
                     len({c.linkedid for c in channels if c.linkedid}))
        yield _gauge("siaga_channels_up", "Channels in Asterisk now.", len(channels))
        if s.ami is not None:
            client = s.ami.client
            yield _gauge("siaga_ami_connected", "1 while the AMI connection is logged in.",
                         int(client is not None and bool(client.logged_in)))
            yield _counter("siaga_ami_logins", "AMI logins since the server started.",
                           s.ami.connections)
        if s.nodes is not None:
            family = GaugeMetricFamily("siaga_node_up",
                                       "1 while a node's AMI is logged in (a scale-out "
                                       "topology's Asterisk nodes).", labels=["node"])
            for node in s.nodes():
                family.add_metric([node["name"]], int(node["up"]))
            yield family
        if s.asterisk is not None:
            yield _gauge("siaga_asterisk_up", "1 while an Asterisk process is running.",
                         int(s.asterisk.pid is not None))
            # runs counts the processes the server spawned; the first is not a restart (so
            # the replacement of an adopted Asterisk that died is not counted either).
            yield _counter("siaga_asterisk_restarts",
                           "Times Asterisk died and was started again.",
                           max(0, s.asterisk.runs - 1))

    def _calllog(self) -> Iterator[Metric]:
        s = self.sources
        if s.writer is not None:
            yield _gauge("siaga_calllog_writer_backlog",
                         "Call log writes waiting for the writer thread.", s.writer.backlog)
            yield _counter("siaga_calllog_writes", "Call log writes committed.",
                           s.writer.written)
            yield _counter("siaga_calllog_write_failures", "Call log writes that failed.",
                           s.writer.failed)
            yield _gauge("siaga_calllog_writes_held",
                         "Journeys and callbacks held while the database is away, retried "
                         "in order until it returns.", s.writer.held)
        yield _gauge("siaga_calllog_readable",
                     "1 if this scrape could read today's figures from the call log.",
                     int(self.today is not None))
        if self.today is None:
            return
        yield _gauge("siaga_calls_offered_today",
                     "Hotline calls offered today (the reports' definition, local day).",
                     self.today["offered"])
        yield _gauge("siaga_calls_answered_today", "Hotline calls answered today.",
                     self.today["answered"])
        yield _gauge("siaga_calls_abandoned_today", "Hotline calls abandoned today.",
                     self.today["abandoned"])
        within = GaugeMetricFamily(
            "siaga_calls_answered_within_today",
            "Hotline calls answered within N seconds of arrival today (NENA-STA-020.1).",
            labels=["seconds"])
        by_seconds = {sl["seconds"]: sl["answered_within"]
                      for sl in self.today["service_levels"]}
        for seconds, _target in SERVICE_LEVELS:
            within.add_metric([str(seconds)], by_seconds.get(seconds, 0))
        yield within

    def _alerts(self) -> Iterator[Metric]:
        alerts = self.sources.alerts
        if alerts is None:
            return
        counts = alerts.counts
        yield _counter("siaga_alerts_received", "Panic alerts received by the API.",
                       counts.received)
        yield _counter("siaga_alerts_committed", "Panic alerts stored (a new alert).",
                       counts.committed)
        yield _counter("siaga_alerts_duplicate",
                       "Retries of an alert already stored (same alert id).",
                       counts.duplicates)
        refused = CounterMetricFamily("siaga_alerts_refused",
                                      "Panic alerts refused, by error code.", labels=["code"])
        for code, n in sorted(counts.refused.items()):
            refused.add_metric([code], n)
        yield refused

    def _callbacks(self) -> Iterator[Metric]:
        s = self.sources
        family = GaugeMetricFamily("siaga_callbacks_owed",
                                   "Callbacks the center owes citizens now, by why.",
                                   labels=["reason"])
        if s.callbacks is not None:
            family.add_metric(["missed_call"], len(s.callbacks.pending()))
        dialer = getattr(s.alerts, "dialer", None)
        if dialer is not None:
            family.add_metric(["alert"], len(dialer.active) + len(dialer.waiting))
        yield family

    def _selftest(self) -> Iterator[Metric]:
        selftest = self.sources.selftest
        if selftest is None:
            return
        status = selftest.status()
        yield _gauge("siaga_selftest_alarm",
                     "1 while the self-test alarm is raised (failed test calls in a row).",
                     int(bool(status["alarm"])))
        yield _gauge("siaga_selftest_failures_in_row",
                     "Self-test calls failed in a row (0 after a pass).",
                     status["failures_in_row"])
        yield _counter("siaga_selftest_runs", "Self-test calls started since the server started.",
                       selftest.runs)
        if status["last_ok"] is None:
            return
        yield _gauge("siaga_selftest_ok", "1 if the latest self-test call passed every stage.",
                     int(bool(status["last_ok"])))
        yield _gauge("siaga_selftest_age_seconds",
                     "Seconds since the latest self-test call finished.", status["age_s"])
