"""The brain over a topology's nodes: the siaga server with one AMI and live model per node
(the builder of a scale-out center, as :mod:`dispatcher.app` is of a single one).

:class:`ClusterServer` is :class:`~dispatcher.app.SiagaServer` with the parts that speak to
Asterisk replaced: per node an ``AMIService`` (``ami-<node>``), a ``LiveModel`` kept by its
``ModelSync``, and a ``CallLogService`` (``calllog`` for the first node, ``calllog-<node>``
for the others) on the one PostgreSQL database, each reconciling its own node's CEL file
when the node's files are on this machine. Every feature (hotline, missed calls, alerts,
callbacks, the API, the wallboard, metrics, the console) is built as in a single center,
over :class:`~dispatcher.cluster.ami.ClusterAMI` and
:class:`~dispatcher.cluster.merged.MergedModel`; the console's card reads every node's live
journeys (:class:`~dispatcher.cluster.journeys.ClusterJourneys`), and its shared view has
the nodes (the pages' banner of a node down).

Node loss: a node's AMI lost drops its model from the merged view and marks it down on the
wallboard (``nodes``) and in the metrics (``siaga_node_up``). When the node is back (the
supervisor restarted it, ``runs`` went up; for a node supervised on another machine, the
start time it reports changed), its call log closes the journeys that were up
when it died as cut (Q.850 38) and the citizens among them are owed a callback, as a
single center does when its Asterisk dies; its model resyncs at the login, and then the
operators paused or logged out on the other nodes up are paused or logged out on it too
(:class:`~dispatcher.cluster.desks.DeskCarrier`: a restarted node opens every desk).
An operator's feature code (a pause or unpause dialled on one node) is repeated on the
other nodes up (:class:`~dispatcher.cluster.pauses.PauseMirror`).

Not run here: the SIP guard (the edge refuses password guessing), the recordings' retention
and the self-test (per node, not yet across nodes).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from twisted.application.service import MultiService
from twisted.internet import defer, threads
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure

from dialplans.render import AsteriskPaths
from dispatcher.app import Prepared, SiagaServer, part
from dispatcher.calllog.journey import Directory
from dispatcher.calllog.service import CallLogService
from dispatcher.cluster.ami import ClusterAMI, NodeLink
from dispatcher.cluster.desks import DeskCarrier
from dispatcher.cluster.journeys import ClusterJourneys
from dispatcher.cluster.merged import MergedModel
from dispatcher.cluster.pauses import PauseMirror
from dispatcher.cluster.remote import RemoteNodeCallLog
from dispatcher.hotline.service import HotlineService
from dispatcher.metrics.collector import Sources, today_reader
from dispatcher.topology import node_center
from dispatcher.web.metrics import MetricsResource
from dispatcher.web.wallboard import WALLBOARD_CALLBACKS, wallboard_document
from pbx.ami.attribution import EventKey
from pbx.ami.connection import Credentials as AMICredentials
from pbx.ami.model import LiveModel
from pbx.ami.service import AMIService
from pbx.ami.sync import ModelSync

__all__ = ["BrainStarter", "ClusterServer", "ClusterSync", "brain_prepared", "build_brain",
           "database_answers"]


class ClusterSync:
    """Every node's ``ModelSync`` as one: listeners hear each node's resyncs."""

    def __init__(self, syncs: list[ModelSync]) -> None:
        self.syncs = syncs

    def on_resynced(self, listener: Callable[[LiveModel], object]) -> None:
        """``listener(model)`` after each completed resync of any node."""
        for sync in self.syncs:
            sync.on_resynced(listener)

    @property
    def resyncing(self) -> bool:
        """True while any node's lists are being fetched."""
        return any(sync.resyncing for sync in self.syncs)


class ClusterServer(SiagaServer):
    """The server across nodes. ``asterisks``: the nodes this process supervises, by name
    (their ``runs`` tell a node's death from a lost connection); a node supervised
    elsewhere is judged by the start time it reports at each login
    (:class:`~dispatcher.cluster.remote.RemoteNodeCallLog`)."""

    def __init__(self, reactor: Any, prepared: Prepared,  # noqa: ANN401 (any reactor)
                 asterisks: Mapping[str, Any] | None = None) -> None:
        super().__init__(reactor, prepared)
        assert self.center.topology is not None, "a cluster server needs a topology"
        self.asterisks = dict(asterisks or {})
        self.event_key = EventKey()
        self._syncs: list[ModelSync] = []
        # name -> (up, since): when each node's AMI last logged in or was lost.
        self._node_state: dict[str, tuple[bool, float]] = {}
        self._node_listeners: list[Callable[[str, bool], object]] = []
        self._desks: DeskCarrier  # built with the links (get_links)
        self.pauses: PauseMirror  # likewise

    def setup(self) -> None:
        """Build every part, in the order they start."""
        self.get_links()
        self.get_node_calllogs()
        self.get_readers()
        self.get_hotline()
        self.get_missed_calls()
        self.get_alerts()
        self.get_reactor_lag()
        self.get_http()

    @defer.inlineCallbacks
    def when_ready(self):  # noqa: ANN201 (Deferred[None])
        """Fires once the first node's AMI is logged in."""
        yield self.get_ami().when_ready()

    # -- the nodes ---------------------------------------------------------------------------

    @part
    def get_links(self) -> list[NodeLink]:
        """Each node's AMI connection (a child service ``ami-<node>``) and live model."""
        assert self.center.topology is not None
        links = []
        for node in self.center.topology.nodes:
            ami = AMIService(
                self.reactor,
                TCP4ClientEndpoint(self.reactor, node.ami_host, node.ami_port, timeout=5),
                AMICredentials(self.creds.ami_username, self.creds.ami_secret),
                event_key=self.event_key)
            ami.setName(f"ami-{node.name}")
            ami.setServiceParent(self)
            model = LiveModel(self.reactor.seconds)
            sync = ModelSync(ami, model)
            self._syncs.append(sync)
            link = NodeLink(node.name, ami, model)
            self._node_state[node.name] = (False, self.reactor.seconds())
            ami.on_connected(lambda client, name=node.name: self._node_up(name, client))
            sync.on_resynced(lambda _model, name=node.name: self._desks.resynced(name))
            links.append(link)
        self._desks = DeskCarrier(
            links, lambda: [op.extension for op in self.center.operators],
            lambda link: HotlineService(link.ami, self.center))
        # An operator's feature code pauses them on the node they dialled: repeated on the
        # others (dispatcher.cluster.pauses).
        self.pauses = PauseMirror(
            links, lambda: [op.extension for op in self.center.operators],
            lambda link: HotlineService(link.ami, self.center), self.reactor.seconds)
        for link in links:
            link.ami.subscribe("QueueMemberPause",
                               lambda event, name=link.name: self.pauses.event(name, event))
        return links

    def _node_up(self, name: str, client: Any) -> None:  # noqa: ANN401
        self._desks.logged_in(name)
        self._node_changed(name, True)
        client.on_connection_lost(lambda _client: self._lost(name))

    def _lost(self, name: str) -> None:
        self._desks.lost(name)
        self._node_changed(name, False)

    def _node_changed(self, name: str, up: bool) -> None:
        was, _since = self._node_state[name]
        if was == up:
            return
        self._node_state[name] = (up, self.reactor.seconds())
        if up:
            self.log.info("node {node} is up (AMI logged in)", node=name)
        else:
            self.log.warn("node {node} is down (AMI lost): new calls go to the others",
                          node=name)
        for listener in tuple(self._node_listeners):
            listener(name, up)

    def nodes(self) -> list[dict[str, Any]]:
        """Each node: its name, whether its AMI is logged in, and for how long it has been
        so (seconds)."""
        now = self.reactor.seconds()
        return [{"name": name, "up": up, "since_s": max(0, round(now - since))}
                for name, (up, since) in self._node_state.items()]

    @part
    def get_ami(self) -> ClusterAMI:  # type: ignore[override]
        """The one AMI the features use: every node's events, actions where they belong."""
        return ClusterAMI(self.get_links(), self.event_key)

    @part
    def get_model(self) -> MergedModel:  # type: ignore[override]
        """The nodes up now, as one live model."""
        links = self.get_links()
        return MergedModel(lambda: [link.model for link in links if link.up],
                           self.reactor.seconds)

    @part
    def get_model_sync(self) -> ClusterSync:  # type: ignore[override]
        """Every node's model sync."""
        self.get_links()
        return ClusterSync(self._syncs)

    # -- the call log ----------------------------------------------------------------------

    def _node_calllog(self, name: str, url: Any) -> CallLogService:  # noqa: ANN401
        assert self.center.topology is not None
        node = self.center.topology.node(name)
        link = next(link for link in self.get_links() if link.name == name)
        asterisk = self.asterisks.get(name)
        cel = None
        if asterisk is not None:  # its files are on this machine
            log = AsteriskPaths.for_center(node_center(self.center, node), "", "").log
            cel = str(log / "cel-custom" / "Master.csv")
        kind = CallLogService if asterisk is not None else RemoteNodeCallLog
        return kind(
            self.reactor, url, Directory.from_center(self.center), cel_path=cel,
            on_reconciled=self._calls_reconciled, on_handoff=self._call_handed_off,
            ami=link.ami, asterisk=asterisk, on_cut=self._calls_ended_unseen)

    @part
    def get_calllog(self) -> CallLogService:
        """The first node's call log, whose database (and writer) the features share; the
        schema brought to head here (blocking, before the reactor runs)."""
        assert self.center.topology is not None
        calllog = self._node_calllog(self.center.topology.nodes[0].name,
                                     self.center.database_url)
        calllog.prepare(self.center)
        return calllog

    @part
    def get_node_calllogs(self) -> dict[str, CallLogService]:
        """Every node's call log (one database engine), by node name."""
        assert self.center.topology is not None
        first = self.get_calllog()
        logs = {self.center.topology.nodes[0].name: first}
        for node in self.center.topology.nodes[1:]:
            calllog = self._node_calllog(node.name, first.engine)
            calllog.setName(f"calllog-{node.name}")
            calllog.setServiceParent(self)
            logs[node.name] = calllog
        return logs

    # -- what the pages read -----------------------------------------------------------------

    def wallboard(self) -> Callable[[], dict[str, Any]]:
        """The wallboard's document with the nodes beside it, from one merge of the nodes'
        models per document (the page reads the model once per caller and agency phone)."""
        view, callbacks = self.get_model(), self.get_callbacks()
        selftest, clock = self.get_selftest(), self.reactor.seconds

        def document() -> dict[str, Any]:
            doc = wallboard_document(view.current(), self.center, clock(),
                                     callbacks.page(0, WALLBOARD_CALLBACKS),
                                     callbacks.open_count,
                                     selftest.status() if selftest is not None else None)
            doc["nodes"] = self.nodes()
            return doc

        return document

    @part
    def get_journeys(self) -> ClusterJourneys:
        """Every node's live journeys as one: the card of a call on any node finds its
        category, language and alert."""
        return ClusterJourneys([log.builder for log in self.get_node_calllogs().values()])

    @part
    def get_console_views(self):  # noqa: ANN201 (ConsoleViews)
        """The console's views, over the merged model and every node's journeys, with the
        nodes in the shared ``console`` view (the pages' banner of a node down)."""
        views = SiagaServer.get_console_views.__wrapped__(self)  # type: ignore[attr-defined]
        views.nodes = self.nodes
        return views

    @part
    def get_push(self):  # noqa: ANN201 (PushHub)
        """The push channel; a node going down or coming back changes the wallboard and
        the console's shared view (its ``nodes``)."""
        push = SiagaServer.get_push.__wrapped__(self)  # type: ignore[attr-defined]
        self._node_listeners.append(lambda _name, _up: (push.changed("wallboard"),
                                                        push.changed("console")))
        return push

    @part
    def get_metrics(self) -> MetricsResource | None:
        """/metrics, with ``siaga_node_up`` per node."""
        center, reactor = self.center, self.reactor
        if not center.metrics.enabled:
            return None
        calllog = self.get_calllog()
        sources = Sources(self.get_model(), center, reactor.seconds,  # type: ignore[arg-type]
                          ami=self.get_ami(), writer=calllog.writer, alerts=self.get_alerts(),
                          callbacks=self.get_callbacks(), lag=self.get_reactor_lag(),
                          nodes=self.nodes)
        return MetricsResource(center.metrics, sources, today_reader(
            reactor, self.get_readers().pool, calllog.sessions, reactor.seconds))


def build_brain(reactor: Any, prepared: Prepared,  # noqa: ANN401 (any reactor)
                asterisks: Mapping[str, Any] | None = None) -> ClusterServer:
    """Assemble the brain (blocking set-up: the database schema, before the reactor runs)."""
    server = ClusterServer(reactor, prepared, asterisks)
    server.setup()
    return server


def brain_prepared(center: Any, install: Any, creds: Any) -> Prepared:  # noqa: ANN401
    """What the brain needs of a prepared center: it renders and runs no Asterisk itself."""
    paths = AsteriskPaths.for_center(center, install.moddir if install else "",
                                     install.datadir if install else "")
    return Prepared(center, install, paths, creds)




def database_answers(url: str, timeout_s: int = 5) -> None:
    """Connect to the call log's database once (blocking: run it in a thread); raises
    what the connection raised."""
    from dispatcher.calllog.db import make_engine

    engine = make_engine(url, connect_args={"connect_timeout": timeout_s})
    try:
        with engine.connect():
            pass
    finally:
        engine.dispose()


class BrainStarter(MultiService):
    """Starts the brain once its database answers, and keeps trying until it does.

    A machine that boots the center and PostgreSQL together must not be left without a
    brain because the database came up a few seconds later. Each attempt probes the
    database in a thread (a host that does not answer never blocks the reactor), then
    builds the brain on the reactor thread (its schema upgrade is quick once the database
    answers) and starts it as a child. Attempts back off from 1 s to ``max_delay``.
    """

    log = Logger()

    def __init__(self, reactor: Any, prepared: Prepared,  # noqa: ANN401 (any reactor)
                 asterisks: Mapping[str, Any] | None = None, max_delay: float = 30.0,
                 probe: Callable[[str], None] = database_answers,
                 blocking: Callable[..., defer.Deferred[Any]] | None = None,
                 build: Callable[..., Any] | None = None) -> None:
        super().__init__()
        self.reactor = reactor
        self.prepared = prepared
        self.asterisks = asterisks
        self.max_delay = max_delay
        self.probe = probe
        #: Runs the probe off the reactor thread (the reactor's thread pool by default).
        self.blocking = blocking or (lambda f, *a: threads.deferToThreadPool(
            reactor, reactor.getThreadPool(), f, *a))
        self.build = build or build_brain
        self.brain: Any = None  # the ClusterServer, once built
        self.attempts = 0
        self._next: Any = None

    def startService(self) -> None:  # noqa: N802 -- Twisted's name
        """Try now (and again until it works)."""
        super().startService()
        self._attempt()

    def stopService(self) -> defer.Deferred[None]:  # noqa: N802 -- Twisted's name
        """Stop trying; stop the brain if it runs."""
        if self._next is not None and self._next.active():
            self._next.cancel()
        self._next = None
        return super().stopService()  # type: ignore[no-any-return]

    def _attempt(self) -> None:
        self._next = None
        if not self.running or self.brain is not None:
            return
        self.attempts += 1
        url = self.prepared.center.database_url
        self.blocking(self.probe, url).addCallbacks(self._answered, self._unreachable)

    def _answered(self, _: object) -> None:
        if not self.running:
            return
        try:
            brain = self.build(self.reactor, self.prepared, self.asterisks)
        except Exception as exc:  # noqa: BLE001 (any failure: try again later)
            self._unreachable(Failure(exc))
            return
        self.brain = brain
        brain.setName("brain")
        brain.setServiceParent(self)  # started now: this service runs
        self.log.info("the brain is up (attempt {n})", n=self.attempts)

    def _unreachable(self, failure: Failure) -> None:
        if not self.running:
            return
        delay = min(self.max_delay, 2.0 ** min(self.attempts - 1, 10))
        self.log.warn("the brain cannot start yet ({error}); the edge and the nodes carry "
                      "calls without it; trying again in {delay:.0f} s",
                      error=failure.getErrorMessage(), delay=delay)
        self._next = self.reactor.callLater(delay, self._attempt)
