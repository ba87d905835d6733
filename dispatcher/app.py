"""Builds the siaga server: one object makes every part and hands each what it needs.

:func:`prepare` turns the center's config into a run directory (secrets, generated Asterisk
configuration); :func:`build_server` assembles the service tree that ``siaga up`` runs.

:class:`SiagaServer` has one typed ``get_<part>()`` per part. Each builds its part on first
use from the parts it needs (asked for through their own ``get_``) and keeps it; a part that
is a ``Service`` then joins the server's tree, so it starts after the parts it was given and
stops before them. The builder only assembles: the rules (who is owed a callback, what a
hand-off does to an incident, who may read the metrics) live in their features.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from twisted.application import internet
from twisted.application.service import MultiService, Service
from twisted.internet import defer, threads
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.logger import Logger
from twisted.web.resource import Resource

from dialplans import contract
from dialplans.render import AsteriskPaths, render_all, write_config
from dispatcher.alerts.journeys import button_calls_finished, incident_handed_off
from dispatcher.alerts.service import AlertService
from dispatcher.alerts.settings import AlertSettings
from dispatcher.api.service import ApiParts, make_api
from dispatcher.callbacks.owed import CallbackList
from dispatcher.callbacks.store import WriterCallbackStore, owed_callbacks
from dispatcher.calllog.cel import ReconcileResult
from dispatcher.calllog.db import transaction
from dispatcher.calllog.journey import Directory, JourneyRecord
from dispatcher.calllog.service import CallLogService
from dispatcher.config.model import Center
from dispatcher.console.actions import ConsoleActions
from dispatcher.console.floor import TalkClock, desks_source
from dispatcher.console.handoffs import HandoffBoard
from dispatcher.console.location import CardLocations, sip_row
from dispatcher.console.pidf import SipLocation
from dispatcher.console.sip_location import HepListener, SipLocations
from dispatcher.console.spy import SpyService
from dispatcher.console.views import ConsoleViews, publish_console
from dispatcher.credentials import Credentials, ensure_credentials, ensure_operator_token
from dispatcher.guard import GUARD_FILE, GuardPolicy, SipGuardService
from dispatcher.hotline.journeys import owe_missed_callbacks
from dispatcher.hotline.service import HotlineService, MissedCallWatcher
from dispatcher.metrics.collector import Sources, today_reader
from dispatcher.metrics.lag import ReactorLag
from dispatcher.pools import ReadPool, ThreadPoolService
from dispatcher.retention.service import RetentionService
from dispatcher.selftest.service import SelfTestService
from dispatcher.selftest.wiring import build_selftest
from dispatcher.tls import https_options, install_for_asterisk
from dispatcher.web.console_call import CallEndpoint
from dispatcher.web.console_desk import CallbackNowEndpoint, DeskEndpoint
from dispatcher.web.console_incident import CaseParts, FlaggedPage, incident_endpoints
from dispatcher.web.console_location import LocationEndpoint
from dispatcher.web.console_supervisor import pool_reads, supervisor_endpoints
from dispatcher.web.limits import GuardedSite
from dispatcher.web.metrics import MetricsResource
from dispatcher.web.push import PushHub, supervisors_only
from dispatcher.web.site import Console, build_site, report_runner
from dispatcher.web.wallboard import incidents_source, wallboard_source
from ivr.hold import write_hold_sound
from ivr.prompts import build_prompts, stock_sound_dirs
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
    write_hold_sound(paths.sounds)  # what a held citizen hears (musiconhold.conf)
    secure_state(center.state_dir, shared=center.run_dir, reads=(paths.etc, paths.sounds),
                 writes=(paths.run, paths.log, paths.spool, paths.db, paths.recordings),
                 user=user, traverse_state=install.rootfs is None)
    return Prepared(center, install, paths, creds, user)


Part = TypeVar("Part")


def part(build: Callable[[SiagaServer], Part]) -> Callable[[SiagaServer], Part]:
    """Make ``get_<name>`` build its part once, on first use, and keep it; a Service joins
    the server's tree (named ``<name>``) once built, after the parts it was built from."""
    name = build.__name__.removeprefix("get_")

    @functools.wraps(build)
    def get(server: SiagaServer) -> Part:
        if name in server._parts:
            return server._parts[name]  # type: ignore[no-any-return]
        if name in server._building:
            raise RuntimeError(f"the server's {name} needs itself to be built")
        server._building.add(name)
        try:
            built = build(server)
        finally:
            server._building.discard(name)
        server._parts[name] = built
        if isinstance(built, Service):
            built.setName(name)
            built.setServiceParent(server)
        return built

    return get


class SiagaServer(MultiService):
    """The server: its service tree, and one typed ``get_<part>()`` per part.

    Children start in the order they were built and stop in reverse: Asterisk first, the
    HTTP listener last (so it never serves without the parts behind it). ``reactor`` is the
    only global any part gets, through this object.
    """

    log = Logger()

    #: Seconds at most a page connecting right after start waits for the live model's first
    #: resync before its snapshot (Asterisk down: it gets one anyway).
    PUSH_HOLD_SECONDS = 3.0

    def __init__(self, reactor: Any, prepared: Prepared,  # noqa: ANN401 (any reactor)
                 adopt_pid: int | None = None) -> None:
        super().__init__()
        self.reactor = reactor
        self.prepared = prepared
        self.center: Center = prepared.center
        self.creds: Credentials = prepared.creds
        #: An Asterisk already running on this state directory, to keep.
        self.adopt_pid = adopt_pid
        self._parts: dict[str, object] = {}
        self._building: set[str] = set()

    def setup(self) -> None:
        """Build every part, in the order they start (blocking set-up, such as the database
        schema upgrade, happens here: call it before the reactor runs)."""
        self.get_asterisk()
        self.get_ami()
        self.get_model_sync()
        self.get_sip_guard()
        self.get_calllog()
        self.get_readers()
        self.get_hotline()
        self.get_missed_calls()
        self.get_alerts()
        self.get_sip_locations()
        self.get_retention()
        self.get_selftest()
        self.get_reactor_lag()
        self.get_http()

    @defer.inlineCallbacks
    def when_ready(self):  # noqa: ANN201 (Deferred[None])
        """Fires once AMI is logged in and Asterisk says it is fully booted.

        An adopted Asterisk was started on an earlier render: it reloads the new one. Both
        go through the control socket (the AMI user may not run CLI commands).
        """
        yield self.get_ami().when_ready()
        yield self.get_console().run("core waitfullybooted", timeout=120)
        if self.get_asterisk().adopted_pid is not None:
            self.log.info("reloading the adopted Asterisk's configuration")
            yield self.get_console().run("core reload")

    # -- Asterisk and what speaks to it ----------------------------------------------------

    @part
    def get_asterisk(self) -> AsteriskService:
        """The Asterisk process, started (or adopted) and supervised."""
        p = self.prepared
        return AsteriskService(self.reactor, self.reactor, p.install, p.asterisk_conf,
                               p.asterisk_binds, p.asterisk_out, adopt_pid=self.adopt_pid)

    @part
    def get_ami(self) -> AMIService:
        """The reconnecting AMI connection every feature's actions and events go through."""
        ami = self.center.ami
        return AMIService(
            self.reactor, TCP4ClientEndpoint(self.reactor, ami.host, ami.port, timeout=5),
            AMICredentials(self.creds.ami_username, self.creds.ami_secret))

    @part
    def get_model(self) -> LiveModel:
        """The live model of channels, bridges, queues and endpoints."""
        return LiveModel(self.reactor.seconds)

    @part
    def get_model_sync(self) -> ModelSync:
        """Keeps the live model current from AMI (events, and a resync after each login)."""
        return ModelSync(self.get_ami(), self.get_model())

    @part
    def get_console(self) -> AsteriskConsole:
        """The few CLI commands the server needs, through Asterisk's console socket (only
        root and Asterisk's own user may open it: the AMI user has no ``command`` class)."""
        return AsteriskConsole(self.reactor, self.reactor, self.prepared.paths.run)

    @part
    def get_sip_guard(self) -> SipGuardService:
        """SIP scans and password guessing: a source that keeps failing authentication is
        refused by a res_pjsip ACL for a while, reloaded through the console socket."""
        center = self.center
        guard = SipGuardService(
            self.reactor,
            GuardPolicy(center.security, self.reactor,
                        trusted=[center.trunk.host] if center.trunk else []),
            self.prepared.paths.etc / GUARD_FILE,
            partial(self.get_console().reload_module, "res_pjsip.so"),
            events=self.get_ami())
        guard.reset()  # before Asterisk starts: no block of an earlier run stays
        return guard

    # -- the call log ----------------------------------------------------------------------

    @part
    def get_calllog(self) -> CallLogService:
        """Journeys built from every AMI event, completed from Asterisk's CEL file after any
        gap in AMI; the schema brought to head here (blocking, before the reactor runs)."""
        center = self.center
        calllog = CallLogService(
            self.reactor, center.database_url, Directory.from_center(center),
            cel_path=str(self.prepared.paths.log / "cel-custom" / "Master.csv"),
            on_reconciled=self._calls_reconciled, on_handoff=self._call_handed_off,
            ami=self.get_ami(), asterisk=self.get_asterisk(), on_cut=self._calls_ended_unseen)
        calllog.prepare(center)
        return calllog

    def _calls_reconciled(self, result: ReconcileResult) -> None:
        self._calls_ended_unseen(result.records)

    def _calls_ended_unseen(self, records: list[JourneyRecord]) -> None:
        # Calls that ended while the server was away (found in CEL), or cut by Asterisk's
        # death, reach the features as live ones do.
        now = self.reactor.seconds()
        owe_missed_callbacks(self.get_callbacks(), records, self.center.hotline, now)
        button_calls_finished(self.get_alerts(), records)

    def _call_handed_off(self, record: JourneyRecord, agency: str) -> None:
        incident_handed_off(self.get_alerts(), record, agency)
        if record.incident_ref is None:  # an incident an operator opened from the call
            self.get_case_parts().handed_off(record.linkedid, agency)

    @part
    def get_readers(self) -> ThreadPoolService:
        """Reports read in a pool of their own, so a long report never delays a write."""
        return ThreadPoolService("siaga-reports")

    # -- the hotline -----------------------------------------------------------------------

    @part
    def get_callbacks(self) -> CallbackList:
        """Abandoned and dropped calls owed a callback, persisted through the writer with
        retrying writes (one owed while the database restarts is stored once it is back),
        with those a previous run still owed (a blocking read: the reactor is not running
        yet)."""
        limits = self.center.callbacks
        calllog = self.get_calllog()
        callbacks = CallbackList(WriterCallbackStore(calllog.writer.submit_retrying),
                                 max_open=limits.max_open, max_per_source=limits.max_per_source)
        with transaction(calllog.sessions) as session:
            callbacks.restore(owed_callbacks(session).missed)
        return callbacks

    @part
    def get_hotline(self) -> HotlineService:
        """Queue control and transfers over AMI (the console's verbs), and callbacks."""
        return HotlineService(self.get_ami(), self.center, self.get_callbacks(),
                              clock=self.reactor)

    @part
    def get_handoffs(self) -> HandoffBoard:
        """Each call's hand-offs to agencies (ringing, answered, failed → fallback), from
        the dialplan's agency events: the console's push view ``handoffs``."""
        board = HandoffBoard((a.key for a in self.center.agencies), self.reactor.seconds)
        self.get_ami().subscribe_all(board.on_event)
        return board

    @part
    def get_console_actions(self) -> ConsoleActions:
        """The console's actions on an operator's own call (transfer, consult, hold...)."""
        return ConsoleActions(self.get_ami(), self.get_model(), self.center,
                              self.get_hotline(), self.get_handoffs())

    @part
    def get_missed_calls(self) -> MissedCallWatcher:
        """Hotline calls missed live (abandoned, dropped) put on the callback list."""
        return MissedCallWatcher(self.get_ami(), self.reactor, self.get_callbacks(),
                                 service=self.get_hotline())

    # -- panic alerts and incidents ----------------------------------------------------------

    @part
    def get_alert_reads(self) -> ReadPool:
        """The alert service's database reads (device credentials, incidents)."""
        return ReadPool(self.reactor, self.get_calllog().sessions)

    @part
    def get_alerts(self) -> AlertService:
        """Panic-button alerts and incidents, their operator-first callbacks and buttons."""
        return AlertService.for_center(
            self.reactor, self.center, self.get_calllog().writer.submit,
            self.get_alert_reads().run, self.get_ami(),
            AlertSettings.for_center(self.center, self.creds.master_key))

    # -- keeping files and testing the line ------------------------------------------------

    @part
    def get_retention_files(self) -> ThreadPoolService:
        """Retention's file work, in a thread of its own (a long pass delays nothing)."""
        return ThreadPoolService("siaga-retention", 1)

    @part
    def get_retention(self) -> RetentionService:
        """Recordings and CEL files kept within the configured age and size (the CEL rename
        in the writer thread that also reconciles CEL)."""
        calllog, files = self.get_calllog(), self.get_retention_files()
        return RetentionService(
            self.reactor, self.center.retention, calllog.sessions, self.center.recordings_dir,
            Path(calllog.cel_path) if calllog.cel_path else None,
            blocking=partial(threads.deferToThreadPool, self.reactor, files.pool),
            write=calllog.writer.submit, reconcile=calllog.reconcile)

    @part
    def get_selftest(self) -> SelfTestService | None:
        """The continuous self-test, when configured: the center calls its own hotline from
        a child process and raises an alarm after two failures in a row."""
        if not self.center.selftest.enabled:
            return None
        return build_selftest(self.reactor, self.center, self.creds,
                              self.get_calllog().writer)

    @part
    def get_reactor_lag(self) -> ReactorLag:
        """How late the reactor runs its timers: the figure that tells a blocked reactor."""
        return ReactorLag(self.reactor)

    # -- HTTP ----------------------------------------------------------------------------------

    @part
    def get_api(self) -> ApiParts:
        """The JSON API under /api: alerts, incidents and the hotline's callbacks."""
        return make_api(self.get_alerts(), ensure_operator_token(self.center.state_dir),
                        self.get_hotline())

    @part
    def get_metrics(self) -> MetricsResource | None:
        """/metrics, when enabled: the live parts read at scrape time, today's figures in
        the readers' pool."""
        center, reactor = self.center, self.reactor
        if not center.metrics.enabled:
            return None
        calllog = self.get_calllog()
        sources = Sources(self.get_model(), center, reactor.seconds, ami=self.get_ami(),
                          asterisk=self.get_asterisk(), writer=calllog.writer,
                          alerts=self.get_alerts(), callbacks=self.get_callbacks(),
                          selftest=self.get_selftest(), lag=self.get_reactor_lag())
        return MetricsResource(center.metrics, sources, today_reader(
            reactor, self.get_readers().pool, calllog.sessions, reactor.seconds))

    @part
    def get_site(self) -> GuardedSite:
        """The console's pages, the wallboard, reports, the API and the metrics."""
        center, reactor = self.center, self.reactor
        api = self.get_api()
        return build_site(
            center, self.creds, reactor.seconds,
            wallboard=self.wallboard(),
            reports=report_runner(reactor, self.get_readers().pool,
                                  self.get_calllog().sessions),
            api=api.resource, request_factory=api.request_factory, reactor=reactor,
            metrics=self.get_metrics(), push=self.get_push(),
            console_endpoints=self.console_endpoints, console_pages=self.console_pages)

    def wallboard(self) -> Callable[[], dict[str, Any]]:
        """The wallboard's document, computed at each read (the page, the push channel)."""
        return wallboard_source(self.get_model(), self.center, self.reactor.seconds,
                                self.get_callbacks(), self.get_selftest())

    def console_endpoints(self, console: Console) -> dict[str, Resource]:
        """The console's JSON endpoints, by name under ``/console/api/`` (each a
        ``dispatcher.web.console_api.ConsoleEndpoint``, given the parts it acts with)."""
        endpoints: dict[str, Resource] = {}
        endpoints["desk"] = DeskEndpoint(console, self.get_hotline())
        endpoints["callback_now"] = CallbackNowEndpoint(console, self.get_hotline())
        endpoints["location"] = LocationEndpoint(console, self.get_card_locations())
        endpoints.update(incident_endpoints(console, self.get_case_parts()))
        endpoints["call"] = CallEndpoint(console, self.get_console_actions())
        endpoints.update(supervisor_endpoints(
            console, self.get_spy(), pool_reads(self.reactor, self.get_readers().pool,
                                                self.get_calllog().sessions),
            self.center.recordings_dir))
        return endpoints

    def console_pages(self, console: Console) -> dict[str, Resource]:
        """The console's pages beside ``/console`` itself, by name (``/console/<name>``)."""
        return {"flagged": FlaggedPage(console, self.get_case_parts())}

    @part
    def get_case_parts(self) -> CaseParts:
        """The call card's history and case work: the live model (whose call), the readers,
        the call log's writer."""
        return CaseParts(self.get_model(), lambda: self.center, self.get_alert_reads().run,
                         self.get_calllog().writer.submit, self.reactor.seconds,
                         publish=self.get_alerts().feed.publish,
                         facts=self.get_calllog().builder.facts)

    @part
    def get_sip_locations(self) -> SipLocations:
        """Locations callers' INVITEs carried (PIDF-LO), joined to their calls and kept in
        the call log; Asterisk's copies of SIP messages heard on the loopback when
        configured (``console.sip_location_port``)."""
        reactor, calllog = self.reactor, self.get_calllog()

        def keep(linkedid: str, location: SipLocation) -> None:
            now = dt.datetime.fromtimestamp(reactor.seconds(), dt.UTC)
            calllog.writer.submit_retrying(sip_row, linkedid, location, now).addErrback(
                lambda f: self.log.failure("keeping call {l}'s SIP location", f, l=linkedid))

        locations = SipLocations(reactor.seconds, keep)
        self.get_ami().subscribe("VarSet", lambda e: locations.event_received(e.fields))
        port = self.center.console_map.sip_location_port
        if port:
            listener = HepListener(locations, contract.hep_password(self.creds.master_key))
            internet.UDPServer(port, listener, interface="127.0.0.1",
                               reactor=reactor).setServiceParent(self)
        return locations

    @part
    def get_card_locations(self) -> CardLocations:
        """The call card's location: alert GPS, a button's place, the INVITE's PIDF-LO."""
        builder, sip = self.get_journeys(), self.get_sip_locations()

        def incident_of(linkedid: str) -> int | None:
            journey = builder.journeys.get(linkedid) or builder.aliases.get(linkedid)
            record = journey.record if journey is not None else None
            return record.incident_ref if record is not None else None

        return CardLocations(self.get_model(), self.get_alert_reads().run,
                             self.reactor.seconds, incident_of, sip.of_call)

    @part
    def get_spy(self) -> SpyService:
        """Supervisors' listen, whisper and barge (ChanSpy from their own phone), each use
        written to the call log."""
        return SpyService(self.get_ami(), self.get_model(), lambda: self.center.supervisors,
                          lambda: tuple(op.extension for op in self.center.operators),
                          self.get_calllog().writer.submit_retrying, self.reactor.seconds)

    @part
    def get_talk_clock(self) -> TalkClock:
        """When each desk's call began talking (for the supervisor's durations)."""
        talk = TalkClock(self.reactor.seconds)
        self.get_ami().subscribe_all(talk.on_event)
        return talk

    @part
    def get_journeys(self) -> Any:  # noqa: ANN401 (a JourneyTracker's facts and listeners)
        """The call log's live journeys the card reads (category, language, priority)."""
        return self.get_calllog().builder

    @part
    def get_console_views(self) -> ConsoleViews:
        """The console's parts behind its push views (each desk's card, the lists)."""
        return ConsoleViews(self.get_model(), self.get_journeys(), lambda: self.center,
                            self.get_callbacks())

    @part
    def get_push(self) -> PushHub:
        """The live push channel (/events): pages follow the wallboard as AMI events, the
        model's resyncs and the callback list change it, and the incidents as their feed
        does."""
        reactor = self.reactor
        push = PushHub(reactor)
        # Until the first resync the model lacks the calls already up: a page reconnecting
        # after a restart waits for it (a few seconds at most) rather than see them vanish.
        push.hold(self.PUSH_HOLD_SECONDS)
        self.get_model_sync().on_resynced(lambda _model: push.release())
        push.add_view("wallboard", self.wallboard())
        self.get_ami().subscribe_all(lambda _event: push.changed("wallboard"))
        self.get_model_sync().on_resynced(lambda _model: push.changed("wallboard"))
        self.get_callbacks().on_change = lambda _entry: (push.changed("wallboard"),
                                                         push.changed("console"))
        # Every desk's state and caller: the supervisors' floor, never an operator's page.
        push.add_view("desks", desks_source(self.get_model(), self.center, reactor.seconds,
                                            self.get_talk_clock()),
                      audience=supervisors_only)
        self.get_ami().subscribe_all(lambda _event: push.changed("desks"))
        self.get_model_sync().on_resynced(lambda _model: push.changed("desks"))
        feed = self.get_alerts().feed
        push.add_view("incidents", incidents_source(feed))
        feed.listeners.append(lambda _item: push.changed("incidents"))
        # The operator's desk and card (per operator), and the console's lists.
        views = publish_console(push, self.get_console_views(), self.get_ami(),
                                self.get_model_sync(), feed, self.get_alert_reads().run)
        # Keyed by every call: each page gets its own calls' entries only.
        handoffs = self.get_handoffs()
        push.add_personal_view("handoffs", views.own_calls(handoffs.document))
        handoffs.listeners.append(lambda: push.changed("handoffs"))
        actions = self.get_console_actions()
        push.add_personal_view("call_actions",
                               lambda staff: actions.document_for(staff.extension))
        self.get_ami().subscribe_all(lambda _event: push.changed("call_actions"))
        return push

    @part
    def get_http(self) -> Service:
        """The site's listener. With TLS configured, HTTPS replaces HTTP on the same port:
        no plain listener is left to carry a password or a session in clear."""
        http, tls, site = self.center.http, self.center.tls, self.get_site()
        if self.center.http_intake_processes:
            # Intake processes accept on the port, take alerts up to the commit and answer
            # the incident feed from their mirror; this process keeps the writer, AMI and
            # the callbacks and serves what they forward.
            from dispatcher.api.intake_process import IntakePool

            return IntakePool(self.reactor, self.get_alerts(), site, http.host, http.port,
                              self.center.http_intake_processes, self.center.database_url,
                              tls=(tls.certificate, tls.key) if tls is not None else None,
                              limits=self.center.http_limits,
                              operator_token=ensure_operator_token(self.center.state_dir))
        if tls is None:
            return internet.TCPServer(http.port, site, interface=http.host,
                                      reactor=self.reactor)
        return internet.SSLServer(http.port, site, https_options(tls.certificate, tls.key),
                                  interface=http.host, reactor=self.reactor)


def build_server(reactor: Any, prepared: Prepared,  # noqa: ANN401 (any reactor)
                 adopt_pid: int | None = None) -> SiagaServer:
    """Assemble the server for a prepared center. ``reactor`` is the only global it gets.

    ``adopt_pid`` is an Asterisk already running on this state directory, to keep.
    Blocking set-up (the database schema upgrade) happens here, before the reactor runs.
    """
    server = SiagaServer(reactor, prepared, adopt_pid)
    server.setup()
    return server
