"""Builds the siaga server: one object makes every part and hands each what it needs.

:func:`prepare` turns the center's config into a run directory (secrets, generated Asterisk
configuration); :func:`build_server` assembles the service tree that ``siaga up`` runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twisted.application import internet
from twisted.application.service import MultiService, Service
from twisted.internet import defer, threads
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool

from dialplans.render import AsteriskPaths, render_all, write_config
from dispatcher.alerts.callback import DialerSettings
from dispatcher.alerts.incident import IncidentInput
from dispatcher.alerts.service import AlertSettings
from dispatcher.api.service import ensure_operator_token, make_api
from dispatcher.callbacks.missed import missed_from_journey
from dispatcher.callbacks.owed import CallbackList
from dispatcher.callbacks.store import WriterCallbackStore, owed_callbacks
from dispatcher.calllog.cel import ReconcileResult
from dispatcher.calllog.db import transaction
from dispatcher.calllog.journey import Directory, JourneyRecord
from dispatcher.calllog.report import ReportOptions, build_report
from dispatcher.calllog.service import CallLogService
from dispatcher.config import Center
from dispatcher.credentials import Credentials, ensure_credentials
from dispatcher.guard import GUARD_FILE, GuardPolicy, SipGuardService
from dispatcher.hotline.service import HotlineService, MissedCallWatcher
from dispatcher.metrics.collector import Sources
from dispatcher.metrics.lag import ReactorLag
from dispatcher.metrics.resource import MetricsResource, today_reader
from dispatcher.retention.service import RetentionService
from dispatcher.selftest.wiring import build_selftest
from dispatcher.tls import https_options, install_for_asterisk
from dispatcher.web.push import PushHub
from dispatcher.web.site import build_site, report_text
from dispatcher.web.wallboard import (
    WALLBOARD_CALLBACKS,
    incidents_document,
    wallboard_document,
)
from ivr.prompts import build_prompts, stock_sound_dirs
from pbx.ami.connection import AMIClient
from pbx.ami.connection import Credentials as AMICredentials
from pbx.ami.model import LiveModel
from pbx.ami.service import AMIService
from pbx.ami.sync import ModelSync
from pbx.asterisk import AsteriskService
from pbx.console import AsteriskConsole
from pbx.privilege import PRIVATE_DIR, RunUser, run_user, secure_state
from pbx.provision import AsteriskInstall


@dataclass(frozen=True)
class Prepared:
    """A center ready for Asterisk: its paths, secrets and the generated asterisk.conf."""

    center: Center
    install: AsteriskInstall
    paths: AsteriskPaths
    creds: Credentials
    run_user: RunUser | None = None

    @property
    def asterisk_conf(self) -> Path:
        """The generated asterisk.conf that Asterisk is started with."""
        return self.paths.etc / "asterisk.conf"

    @property
    def asterisk_binds(self) -> tuple[Path, ...]:
        """The directories Asterisk uses, mounted into its root filesystem (not the state
        directory itself: the secrets and the database stay out of Asterisk's reach)."""
        return (self.center.run_dir, self.paths.recordings)

    @property
    def asterisk_out(self) -> Path:
        """Asterisk's console output, written by the supervisor: in a directory Asterisk's
        user cannot write to, so no link it plants there redirects root's writes."""
        return self.center.run_dir / "asterisk.out"

    @property
    def asterisk_log(self) -> Path:
        """Asterisk's own log of notices, warnings and errors."""
        return self.paths.log / "messages.log"


def prepare(center: Center, install: AsteriskInstall) -> Prepared:
    """Create the state directory, secrets and generated Asterisk configuration."""
    center.state_dir.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    paths = AsteriskPaths.for_center(center, install.moddir, install.datadir)
    paths.make()
    creds = ensure_credentials(center)
    user = run_user(install.rootfs)
    write_config(render_all(center, creds, paths, run_user=user), paths.etc)
    if center.tls is not None:
        install_for_asterisk(center.tls.certificate, center.tls.key, paths.etc)
    # The IVR's prompts, spoken from the config's texts (stock sounds without espeak-ng).
    build_prompts(center, paths.sounds, stock_dirs=stock_sound_dirs(install.datadir,
                                                                    install.rootfs))
    secure_state(center.state_dir, shared=center.run_dir, reads=(paths.etc, paths.sounds),
                 writes=(paths.run, paths.log, paths.spool, paths.db, paths.recordings),
                 user=user, traverse_state=install.rootfs is None)
    return Prepared(center, install, paths, creds, user)



class ThreadPoolService(Service):
    """A thread pool for blocking reads (reports), started and stopped with the server."""

    def __init__(self, name: str, max_threads: int = 2) -> None:
        self.pool = ThreadPool(0, max_threads, name=name)

    def startService(self) -> None:  # noqa: N802
        super().startService()
        self.pool.start()

    def stopService(self) -> None:  # noqa: N802
        super().stopService()
        self.pool.stop()


class SiagaServer(MultiService):
    """The server's service tree; its parts are attributes for whoever needs to reach them.

    Children start in the order they were added and stop in reverse: Asterisk first, the
    HTTP site last (so it never serves without the parts behind it).
    """

    log = Logger()

    def __init__(self, prepared: Prepared) -> None:
        super().__init__()
        self.prepared = prepared
        self.parts: dict[str, object] = {}

    def add(self, name: str, part: object) -> object:
        """Keep ``part`` under ``name``; a Service also joins the tree."""
        self.parts[name] = part
        if isinstance(part, Service):
            part.setName(name)
            part.setServiceParent(self)
        return part

    def __getattr__(self, name: str) -> object:
        parts = self.__dict__.get("parts", {})
        if name in parts:
            return parts[name]
        raise AttributeError(name)

    @defer.inlineCallbacks
    def when_ready(self):  # noqa: ANN201 (Deferred[None])
        """Fires once AMI is logged in and Asterisk says it is fully booted.

        An adopted Asterisk was started on an earlier render: it reloads the new one. Both
        go through the control socket (the AMI user may not run CLI commands).
        """
        yield self.ami.when_ready()
        yield self.console.run("core waitfullybooted", timeout=120)
        if self.asterisk.adopted_pid is not None:
            self.log.info("reloading the adopted Asterisk's configuration")
            yield self.console.run("core reload")


def build_server(reactor, prepared: Prepared,  # noqa: ANN001 (any reactor)
                 adopt_pid: int | None = None) -> SiagaServer:
    """Assemble the server for a prepared center. ``reactor`` is the only global it gets.

    ``adopt_pid`` is an Asterisk already running on this state directory, to keep.
    Blocking set-up (the database schema upgrade) happens here, before the reactor runs.
    """
    center = prepared.center
    server = SiagaServer(prepared)
    server.add("asterisk", AsteriskService(
        reactor, reactor, prepared.install, prepared.asterisk_conf,
        prepared.asterisk_binds, prepared.asterisk_out, adopt_pid=adopt_pid,
    ))
    ami = server.add("ami", AMIService(
        reactor,
        TCP4ClientEndpoint(reactor, center.ami.host, center.ami.port, timeout=5),
        AMICredentials(prepared.creds.ami_username, prepared.creds.ami_secret),
    ))
    model = server.add("model", LiveModel(reactor.seconds))
    server.add("model_sync", ModelSync(ami, model))

    # The few CLI commands the server needs go through Asterisk's console socket, which only
    # root and Asterisk's own user may open: the AMI user has no `command` class.
    console = server.add("console", AsteriskConsole(reactor, reactor, prepared.paths.run))

    # SIP scans and password guessing: a source that keeps failing authentication is
    # refused by a res_pjsip ACL for a while, reloaded through the console socket.
    guard = server.add("sip_guard", SipGuardService(
        reactor, GuardPolicy(center.security, reactor,
                             trusted=[center.trunk.host] if center.trunk else []),
        prepared.paths.etc / GUARD_FILE,
        lambda: console.reload_module("res_pjsip.so")))
    guard.reset()
    guard.subscribe(ami)

    # The call log: schema brought to head (blocking, before the reactor runs), journeys
    # built from every AMI event, completed from Asterisk's CEL file after any gap in AMI.
    calllog = server.add("calllog", CallLogService(
        reactor, center.database_url, Directory.from_center(center),
        cel_path=str(prepared.paths.log / "cel-custom" / "Master.csv"),
    ))
    calllog.prepare(center)
    ami.subscribe_all(lambda event: calllog.event_received(event.fields))

    # Asterisk's runs at the latest login: another run since means the calls up when AMI
    # was lost died with the old process.
    logins: dict[str, int] = {}

    def ami_connected(client: AMIClient) -> None:
        client.on_connection_lost(lambda _client: calllog.connection_lost())
        runs, seen = server.asterisk.runs, logins.get("runs")
        logins["runs"] = runs
        if seen is not None and runs != seen:
            finished_unseen(calllog.close_cut())
        else:
            calllog.forget_cut()
        calllog.reconcile()

    ami.on_connected(ami_connected)

    sessions = calllog.sessions
    # Reports read in a pool of their own so a long report never delays a write.
    readers = server.add("readers", ThreadPoolService("siaga-reports"))

    def run_report(query: dict[str, Any]) -> defer.Deferred[tuple[str, str]]:
        options = ReportOptions(start=query["from"], end=query["to"],
                                language=query["language"])

        def work() -> tuple[str, str]:
            with transaction(sessions) as session:
                return report_text(query, build_report(session, options))

        return threads.deferToThreadPool(reactor, readers.pool, work)

    # The hotline's server side: queue control and transfers over AMI (the console's verbs),
    # and the callback list of abandoned and dropped calls, persisted through the writer.
    # Retrying writes: a callback owed while the database restarts is stored once it is back.
    callbacks = CallbackList(WriterCallbackStore(calllog.writer.submit_retrying),
                             max_open=center.callbacks.max_open,
                             max_per_source=center.callbacks.max_per_source)
    # Callbacks a previous run still owed (blocking read: the reactor is not running yet).
    with transaction(sessions) as session:
        callbacks.restore(owed_callbacks(session).missed)

    hotline = server.add("hotline", HotlineService(ami, center, callbacks, clock=reactor))
    missed = server.add("missed_calls", MissedCallWatcher(ami, reactor, callbacks,
                                                          service=hotline))
    missed.start()

    # Panic-button alerts and incidents: the API under /api, its services before the site.
    # Without a trunk a callback number is dialled as a local endpoint (test centers).
    dial = "PJSIP/{number}@trunk" if center.trunk else "PJSIP/{number}"
    api = make_api(
        reactor, center, calllog.writer, sessions, ami,
        settings=AlertSettings(dialer=DialerSettings(citizen_dial=dial),
                               master_key=prepared.creds.master_key),
        operator_token=ensure_operator_token(center.state_dir), hotline=hotline,
    )
    server.add("alerts", api.service)

    # An incident's citizen now talking with an agency (the operator's transfer or
    # conference, seen in the call's journey) moves the incident to handed_to_agency.
    def handed_over(record: JourneyRecord, agency: str) -> None:
        if record.incident_ref is not None:
            api.alerts.report(record.incident_ref, IncidentInput.HAND_TO_AGENCY,
                              detail=f"{agency} answered", agency=agency)

    calllog.builder.on_handoff = handed_over

    # Calls that ended while the server was away reach the log through CEL: those missed
    # (abandoned or dropped) are owed a callback like the ones seen live, and a button's
    # call opens its incident.
    def reconciled(result: ReconcileResult) -> None:
        finished_unseen(result.records)

    # Also the calls cut by Asterisk's death, closed after the fact.
    def finished_unseen(records: list[JourneyRecord]) -> None:
        now = reactor.seconds()
        for record in records:
            missed_call = missed_from_journey(record, center.hotline, now)
            if missed_call is not None and not callbacks.has_call(missed_call.linkedid):
                callbacks.add(missed_call, now)
            if api.alerts.watcher is not None:
                api.alerts.watcher.on_finished_call(record)

    calllog.on_reconciled = reconciled

    # Recordings and CEL files kept within the configured age and size: file work in a
    # thread of its own (a long pass never delays a report or a scrape), the CEL rename in
    # the writer thread that also reconciles CEL.
    files = server.add("retention_files", ThreadPoolService("siaga-retention", 1))
    server.add("retention", RetentionService(
        reactor, center.retention, sessions, center.recordings_dir,
        Path(calllog.cel_path) if calllog.cel_path else None,
        blocking=lambda fn, *args: threads.deferToThreadPool(reactor, files.pool, fn, *args),
        write=calllog.writer.submit, reconcile=calllog.reconcile))

    # The continuous self-test: the center calls its own hotline from a child process and
    # raises an alarm after two failures in a row.
    selftest = None
    if center.selftest.enabled:
        selftest = server.add("selftest", build_selftest(reactor, center, prepared.creds,
                                                         calllog.writer))

    def wallboard() -> dict[str, Any]:
        return wallboard_document(model, center, reactor.seconds(),
                                  callbacks.page(0, WALLBOARD_CALLBACKS), callbacks.open_count,
                                  selftest.status() if selftest else None)

    # The live push channel (/events): pages follow the wallboard as AMI, the model's
    # resyncs and the callback list change it, and the incidents as their feed does.
    push = server.add("push", PushHub(reactor))
    push.add_view("wallboard", wallboard)
    ami.subscribe_all(lambda _event: push.changed("wallboard"))
    server.model_sync.on_resynced(lambda _model: push.changed("wallboard"))
    callbacks.on_change = lambda _entry: push.changed("wallboard")
    feed = api.alerts.feed
    push.add_view("incidents", lambda: incidents_document(feed.since(max(0, feed.last - 500))))
    feed.listeners.append(lambda _item: push.changed("incidents"))

    site = build_site(
        center, prepared.creds, reactor.seconds, wallboard=wallboard,
        reports=run_report, api=api.resource, request_factory=api.request_factory,
        reactor=reactor, push=push,
    )
    # How late the reactor runs its timers: the figure that tells a blocked reactor thread.
    lag = server.add("reactor_lag", ReactorLag(reactor))
    if center.metrics.enabled:
        # /metrics reads the live parts at scrape time; today's figures in the readers' pool.
        site.resource.putChild(b"metrics", MetricsResource(
            center.metrics,
            Sources(model, center, reactor.seconds, ami=ami, asterisk=server.asterisk,
                    writer=calllog.writer, alerts=api.alerts, callbacks=callbacks,
                    selftest=selftest, lag=lag),
            today_reader(reactor, readers.pool, sessions, reactor.seconds)))
    server.add("site", site)
    if center.tls is None:
        server.add("http", internet.TCPServer(center.http.port, site,
                                              interface=center.http.host))
    else:
        # HTTPS replaces HTTP on the same port: no plain listener is left to carry a
        # password or a session in clear.
        server.add("http", internet.SSLServer(
            center.http.port, site, https_options(center.tls.certificate, center.tls.key),
            interface=center.http.host))
    return server
