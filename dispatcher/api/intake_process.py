"""Intake processes: several processes taking alerts on one listening socket, one writer.

One Python process spends most of an alert's time on HTTP parsing, JSON, the credential
check and the fields' validation, all on one reactor thread that also answers the feed, AMI
and the writer's results. With ``http.intake_processes: N`` the server (the *writer's*
process: it owns the call log writer, AMI and the callbacks) binds the API's socket itself
and starts N intake processes that accept on that same socket (the kernel spreads the
connections). Each intake serves ``POST /api/v1/alerts`` up to the commit: it hands the
alert over a private socket pair (:mod:`dispatcher.alerts.handoff`) and answers 201 only
when the writer says the alert is committed. The operators' incident feed is answered in
the intake too, from a mirror the writer keeps current over the same channel (each event
as it is published), so a notification does not wait on a second hop. Every other request
(incidents, enrolment, an alert's status, a feed poll from before the mirror's start) is
forwarded to the writer's own site over a UNIX socket in a private directory, with the
client's address in ``X-Siaga-Peer`` (set by the intake, never taken from the client), so
the loopback-only operator endpoints keep judging the real client.

The writer's process does not accept on the socket itself: its reactor is kept for commits,
the feed and AMI. An intake that dies is started again; alerts it had handed off still
commit (a client that saw no answer retries with the same ``alert_id`` and hears 200). If the
writer goes, each intake fails what it had pending with 503 and exits.

Run as ``python -m dispatcher.api.intake_process --listen-fd 3 --handoff-fd 4`` by
:class:`IntakePool` only; everything else it needs arrives in the channel's hello.
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
import shutil
import socket
import sys
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

from twisted.application.service import Service
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.protocol import Factory, ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.proxy import ProxyClient, ProxyClientFactory
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from dispatcher.alerts.auth import Authenticator, DeviceCredentials
from dispatcher.alerts.devices import DeviceVerbs
from dispatcher.alerts.errors import CredentialsRevoked
from dispatcher.alerts.feed import IncidentFeed
from dispatcher.alerts.handoff import FEED_FRAME, HandOffClient, HandOffServer
from dispatcher.alerts.intake import AlertRequest
from dispatcher.alerts.outcomes import AlertAccepted, AlertCounts
from dispatcher.alerts.settings import AlertSettings
from dispatcher.api.base import send_error
from dispatcher.api.errors import ApiError
from dispatcher.config.model import HttpLimits
from dispatcher.heap import freeze_startup_heap
from dispatcher.web.limits import GuardedSite

__all__ = ["PEER_HEADER", "IntakePool", "IntakeVerbs", "peer_request_factory"]

log = Logger(namespace="dispatcher.api.intake")

# The client's address as the intake saw it, on requests forwarded to the writer's site.
PEER_HEADER = b"x-siaga-peer"
# Whether that client's connection to the intake was TLS ("1") or not ("0").
SECURE_HEADER = b"x-siaga-peer-secure"
# How long an intake that lost its writer keeps its connections to flush the 503s.
_DRAIN_SECONDS = 1.0
_RESPAWN_SECONDS = 0.5


# -- the intake's side ----------------------------------------------------------------------


class IntakeVerbs(DeviceVerbs):
    """``post_alert`` in an intake process: credentials and fields checked here, the rest of
    the work (the checks that need state shared by every process, and the commit) in the
    writer's process (``AlertService.take_handed_off``)."""

    max_known_devices = 100_000

    def __init__(self, clock: Any, read: Any, settings: AlertSettings,
                 channel: HandOffClient) -> None:
        self.clock = clock
        self.read = read
        self.settings = settings
        self.channel = channel
        self.auth = Authenticator(settings.replay_window, master_key=settings.master_key)
        # The writer counts failed attempts of every process; an address it says is out
        # is refused here without a database read.
        self.failures = channel.blocked  # type: ignore[assignment]
        self.counts = AlertCounts()
        self.dialer = None
        self._devices: dict[str, tuple[float, DeviceCredentials | None]] = {}
        self._known: OrderedDict[str, DeviceCredentials] = OrderedDict()

    def _now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.clock.seconds(), dt.UTC)

    def _admit(self, device: DeviceCredentials) -> None:
        """The rate limit is the writer's: every process's alerts of a device add up there."""

    def _store(self, request: AlertRequest, device: DeviceCredentials, digest: str | None,
               source: str | None) -> Deferred[AlertAccepted]:
        d = self.channel.hand_off(request, device, digest, source)

        def refused(failure: Failure) -> Failure:
            if failure.check(CredentialsRevoked):  # the cached row is stale: read it again
                self._devices.pop(device.device_id, None)
                self._known.pop(device.device_id, None)
            return failure

        return d.addErrback(refused)


class IntakeRoot(Resource):
    """An intake's whole site: alert POSTs here, everything else to the writer's site."""

    isLeaf = True
    ALERT_PATHS = (b"/api/v1/alerts", b"/api/v1/alerts/")

    FEED_PATHS = (b"/api/v1/incidents/feed", b"/api/v1/incidents/feed/")

    def __init__(self, alerts_resource: Resource, forward: Resource,
                 feed: IncidentFeed | None = None, feed_resource: Resource | None = None
                 ) -> None:
        super().__init__()
        self.alerts_resource = alerts_resource
        self.forward = forward
        self.feed = feed
        self.feed_resource = feed_resource

    def render(self, request: Request) -> bytes | int:
        """Route: ``POST /api/v1/alerts`` served here, the feed's long-polls served here when
        the mirror holds them, the rest forwarded."""
        if request.method == b"POST" and request.path in self.ALERT_PATHS:
            request.postpath = []
            return self.alerts_resource.render(request)  # type: ignore[no-any-return]
        if (request.method == b"GET" and request.path in self.FEED_PATHS
                and self.feed is not None and self.feed_resource is not None
                and self.feed.holds(_after_arg(request))):
            request.postpath = []
            return self.feed_resource.render(request)  # type: ignore[no-any-return]
        return self.forward.render(request)  # type: ignore[no-any-return]


def _after_arg(request: Request) -> int:
    """The feed's ``after`` as routing sees it: a malformed one is answered (400) here, a
    missing one is 0 (only the writer holds the feed from its start)."""
    values = request.args.get(b"after")
    if not values:
        return 0
    raw = values[0]
    return int(raw) if raw.isdigit() and len(raw) <= 19 else 2**63


class _ForwardClient(ProxyClient):
    """Twisted's proxy client (it speaks HTTP/1.0 to the writer's site, so answers are never
    chunked), plus: the client going away closes the forwarded request (a console's event
    stream must not run on for nobody), and the writer going away before its answer's
    status is answered 503, not an empty 200."""

    _status_seen = False

    def connectionMade(self) -> None:  # noqa: N802 -- Twisted's name
        self.father.notifyFinish().addErrback(self._client_gone)
        super().connectionMade()

    def _client_gone(self, _: Failure) -> None:
        self._finished = True
        self.transport.loseConnection()

    def handleStatus(self, version: bytes, code: bytes, message: bytes) -> None:  # noqa: N802
        self._status_seen = True
        super().handleStatus(version, code, message)

    def handleHeader(self, key: bytes, value: bytes) -> None:  # noqa: N802
        # The writer's site closes after each forwarded request; the client's connection
        # to the intake stays as the client asked.
        if key.lower() == b"connection":
            return
        super().handleHeader(key, value)

    def handleResponsePart(self, buffer: bytes) -> None:  # noqa: N802
        if not self._finished:
            super().handleResponsePart(buffer)

    def handleResponseEnd(self) -> None:  # noqa: N802
        if not self._finished and not self._status_seen:
            self._finished = True
            _unavailable(self.father)
            self.transport.loseConnection()
            return
        super().handleResponseEnd()


def _unavailable(request: Request) -> None:
    request.write(send_error(request, ApiError(
        503, "unavailable", "the server is restarting; retry", {"Retry-After": "1"})))
    request.finish()


class _ForwardFactory(ProxyClientFactory):
    protocol = _ForwardClient
    noisy = False  # one factory per forwarded request: no "Starting factory" line for each

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:  # noqa: N802
        if not self.father.finished and not getattr(self.father, "_disconnected", False):
            _unavailable(self.father)


class ForwardToWriter(Resource):
    """Forwards a request to the writer's site on a UNIX socket, naming the client's
    address in ``X-Siaga-Peer`` (any such header from the client is replaced)."""

    isLeaf = True

    def __init__(self, reactor: Any, path: str) -> None:
        super().__init__()
        self.reactor = reactor
        self.path = path

    def render(self, request: Request) -> int:
        """Send the request on; the answer is written back as it comes."""
        if getattr(request, "too_large", False):
            return send_error(request, ApiError(  # type: ignore[return-value]
                413, "too_large", "the body is over the server's limit"))
        headers = request.getAllHeaders()
        headers[PEER_HEADER] = str(getattr(request.getClientAddress(), "host", "")).encode()
        headers[SECURE_HEADER] = b"1" if request.isSecure() else b"0"
        request.content.seek(0)
        body = request.content.read()
        # The body is whole now (de-chunked): say its length, never a transfer coding.
        headers.pop(b"transfer-encoding", None)
        headers[b"content-length"] = str(len(body)).encode("ascii")
        factory = _ForwardFactory(request.method, request.uri, b"HTTP/1.0", headers, body,
                                  request)
        self.reactor.connectUNIX(self.path, factory, timeout=10)
        return NOT_DONE_YET


def peer_request_factory(base: type[Request]) -> type[Request]:
    """A request class for the writer's private site: the client's address is the one the
    intake named in ``X-Siaga-Peer``, and the request is secure if the client's connection
    to the intake was TLS (only intakes can reach that socket: it lives in a directory only
    the server's user can enter)."""

    class PeerRequest(base):  # type: ignore[valid-type,misc]
        def getClientAddress(self) -> Any:  # noqa: N802 -- Twisted's name
            raw = self.requestHeaders.getRawHeaders(PEER_HEADER, [b""])[-1]
            try:
                addr = ipaddress.ip_address(raw.decode("ascii"))
            except (UnicodeDecodeError, ValueError):
                return super().getClientAddress()
            cls = IPv4Address if addr.version == 4 else IPv6Address
            return cls("TCP", str(addr), 0)

        def isSecure(self) -> bool:  # noqa: N802 -- Twisted's name
            return self.requestHeaders.getRawHeaders(SECURE_HEADER, [b"0"])[-1] == b"1"

    return PeerRequest


def run_intake(reactor: Any, listen_fd: int, handoff_fd: int,
               family: socket.AddressFamily = socket.AF_INET) -> None:
    """Build an intake in this process: adopt the hand-off channel, and once the writer's
    hello arrives, the database reads, the verbs and the listening socket."""
    from dispatcher.api.alerts import AlertsResource, FeedResource
    from dispatcher.api.base import ApiRequest
    from dispatcher.calllog import db
    from dispatcher.pools import ReadPool

    state: dict[str, Any] = {}

    def hello(settings: dict[str, Any]) -> None:
        alert_settings = AlertSettings(
            replay_window=float(settings["replay_window"]),
            device_cache_seconds=float(settings["device_cache_seconds"]),
            max_body_bytes=int(settings["max_body_bytes"]),
            master_key=bytes.fromhex(settings["master_key"]))
        engine = db.make_engine(settings["database_url"])
        reads = ReadPool(reactor, db.make_sessionmaker(engine))
        reads.startService()
        # Its threads would keep the process alive after the reactor stops.
        reactor.addSystemEventTrigger("before", "shutdown", reads.stopService)
        verbs = IntakeVerbs(reactor, reads.run, alert_settings, channel)
        request_class = type("IntakeRequest", (ApiRequest,), {
            "max_body": alert_settings.max_body_bytes,
            "__init__": _json_only_init})
        # The operators' feed, mirrored: the writer sends each event as it publishes it.
        feed = IncidentFeed.mirror(reactor, int(settings["feed_last"]))
        channel.on_feed = feed.receive
        root = IntakeRoot(AlertsResource(verbs),  # type: ignore[arg-type]
                          ForwardToWriter(reactor, settings["forward_socket"]),
                          feed, FeedResource(feed, settings["operator_token"]))
        site: Site
        if settings.get("limits") is not None:
            # The server's connection caps and deadlines, the pool's share of them.
            site = GuardedSite(root, HttpLimits(**settings["limits"]),
                               requestFactory=request_class, reactor=reactor)
        else:
            site = Site(root, requestFactory=request_class, reactor=reactor)
        site.log = lambda request: None  # type: ignore[method-assign]
        site.displayTracebacks = False
        site.noisy = False
        factory: Any = site
        if settings.get("tls") is not None:
            from twisted.protocols.tls import TLSMemoryBIOFactory

            from dispatcher.tls import https_options

            cert, key = settings["tls"]
            factory = TLSMemoryBIOFactory(https_options(Path(cert), Path(key)), False, site)
        state["port"] = reactor.adoptStreamPort(listen_fd, family, factory)
        os.close(listen_fd)

    def lost() -> None:
        # The writer is gone: every pending alert was answered 503. Stop taking new
        # connections, give the answers a moment to leave, then exit.
        port = state.get("port")
        if port is not None:
            port.stopListening()
        reactor.callLater(_DRAIN_SECONDS, _stop, reactor)

    channel = HandOffClient(reactor.seconds, on_hello=hello, on_lost=lost)
    reactor.adoptStreamConnection(handoff_fd, socket.AF_UNIX, _OneProtocol(channel))
    os.close(handoff_fd)


def _json_only_init(self: Request, *args: Any, **kwargs: Any) -> None:
    # JSON only: no form parsing of POST bodies (see dispatcher.api.service).
    kwargs["parsePOSTFormSubmission"] = False
    Request.__init__(self, *args, **kwargs)


def _stop(reactor: Any) -> None:
    if reactor.running:
        reactor.stop()


class _OneProtocol(Factory):
    def __init__(self, protocol: Any) -> None:
        self.protocol_instance = protocol

    def buildProtocol(self, addr: Any) -> Any:  # noqa: N802 -- Twisted's name
        return self.protocol_instance


def main(argv: list[str] | None = None) -> int:
    """Entry point of an intake process (started by :class:`IntakePool`)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen-fd", type=int, required=True)
    parser.add_argument("--handoff-fd", type=int, required=True)
    parser.add_argument("--ipv6", action="store_true")
    args = parser.parse_args(argv)

    from twisted.internet import reactor  # the entry point: the only place the reactor is global
    from twisted.logger import globalLogBeginner, textFileLogObserver

    globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)])
    family = socket.AF_INET6 if args.ipv6 else socket.AF_INET
    run_intake(reactor, args.listen_fd, args.handoff_fd, family)
    freeze_startup_heap()
    reactor.run()
    return 0


# -- the writer's side ----------------------------------------------------------------------


class _IntakeProcess(ProcessProtocol):
    def __init__(self, pool: IntakePool, index: int) -> None:
        self.pool = pool
        self.index = index
        self.ended: Deferred[None] = Deferred()

    def processEnded(self, reason: Failure) -> None:  # noqa: N802 -- Twisted's name
        self.pool._ended(self, reason)
        self.ended.callback(None)


class IntakePool(Service):
    """The writer's side: binds the API's socket, starts ``count`` intake processes on it,
    serves their hand-offs, forwards their other requests to ``site`` on a private UNIX
    socket, starts an intake again when one dies."""

    name = "http-intake"

    def __init__(self, reactor: Any, alerts: Any, site: Site, host: str, port: int,
                 count: int, database_url: str, tls: tuple[Path, Path] | None = None,
                 limits: HttpLimits | None = None, operator_token: str | None = None) -> None:
        if count < 1:
            raise ValueError("an intake pool needs at least one process")
        self.reactor = reactor
        self.alerts = alerts
        self.site = site
        self.host = host
        self.requested_port = port
        self.count = count
        self.database_url = database_url
        self.tls = tls
        self.limits = limits
        self.operator_token = operator_token
        self._feed_batch: list[dict[str, Any]] = []
        self.socket: socket.socket | None = None
        self.private_dir: str | None = None
        self.private: Any = None
        self.channels: list[HandOffServer] = []
        self.processes: dict[int, Any] = {}  # index → IProcessTransport
        self.protocols: dict[int, _IntakeProcess] = {}
        self.started = 0  # processes started since the pool started (restarts included)

    @property
    def port(self) -> int:
        """The TCP port the intakes accept on (after start)."""
        if self.socket is None:
            raise RuntimeError("the intake pool is not listening")
        return int(self.socket.getsockname()[1])

    def startService(self) -> None:  # noqa: N802 -- Twisted's name
        """Bind (raises if the port is taken), open the private site, start the intakes."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.requested_port))
            sock.listen(1024)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self.socket = sock
        self.private_dir = tempfile.mkdtemp(prefix="siaga-intake-")  # 0700: ours only
        forward_site = Site(self.site.resource,
                            requestFactory=peer_request_factory(self.site.requestFactory),
                            reactor=self.reactor)
        forward_site.log = lambda request: None  # type: ignore[method-assign]
        forward_site.displayTracebacks = False
        forward_site.noisy = False
        self.private = self.reactor.listenUNIX(self.forward_socket, forward_site, mode=0o600)
        self.alerts.source_blocked = self._block
        self.alerts.feed.listeners.append(self._feed_event)
        super().startService()
        for index in range(self.count):
            self._spawn(index)

    @property
    def forward_socket(self) -> str:
        """Where the writer's site listens for the intakes' forwarded requests."""
        assert self.private_dir is not None
        return os.path.join(self.private_dir, "site.sock")

    def _hello(self) -> dict[str, Any]:
        settings = self.alerts.settings
        return {"database_url": self.database_url, "forward_socket": self.forward_socket,
                "replay_window": settings.replay_window,
                "device_cache_seconds": settings.device_cache_seconds,
                "max_body_bytes": settings.max_body_bytes,
                "master_key": settings.master_key.hex(),
                "tls": [str(p) for p in self.tls] if self.tls is not None else None,
                "limits": self._share_of_limits(),
                "feed_last": self.alerts.feed.last, "operator_token": self.operator_token}

    def _share_of_limits(self) -> dict[str, Any] | None:
        # Each intake enforces its share of the caps (the kernel spreads connections over
        # them, not exactly evenly: a source may be refused by one intake a little early).
        if self.limits is None:
            return None
        per = self.count
        return {"connections": max(1, -(-self.limits.connections // per)),
                "connections_per_source": max(1, -(-self.limits.connections_per_source // per)),
                "request_seconds": self.limits.request_seconds,
                "idle_seconds": self.limits.idle_seconds}

    def _spawn(self, index: int) -> None:
        assert self.socket is not None
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        argv = [sys.executable, "-m", "dispatcher.api.intake_process",
                "--listen-fd", "3", "--handoff-fd", "4"]
        if self.socket.family == socket.AF_INET6:
            argv.append("--ipv6")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        protocol = _IntakeProcess(self, index)
        try:
            process = self.reactor.spawnProcess(
                protocol, sys.executable, argv, env=env,
                childFDs={0: "w", 1: 1, 2: 2, 3: self.socket.fileno(), 4: child_end.fileno()})
        finally:
            child_end.close()
        self.processes[index] = process
        self.protocols[index] = protocol
        self.started += 1
        channel = HandOffServer(self.alerts, self._hello(), on_lost=self._channel_lost)
        self.channels.append(channel)
        self.reactor.adoptStreamConnection(parent_end.fileno(), socket.AF_UNIX,
                                           _OneProtocol(channel))
        parent_end.close()

    def pids(self) -> list[int]:
        """The process ids of the intakes running now."""
        return [p.pid for p in self.processes.values() if p.pid is not None]

    def _channel_lost(self, channel: HandOffServer) -> None:
        if channel in self.channels:
            self.channels.remove(channel)

    def _ended(self, protocol: _IntakeProcess, reason: Failure) -> None:
        if self.protocols.get(protocol.index) is not protocol:
            return
        del self.protocols[protocol.index]
        self.processes.pop(protocol.index, None)
        if self.running:
            log.warn("intake process {index} ended ({reason}); starting it again",
                     index=protocol.index, reason=reason.getErrorMessage())
            self.reactor.callLater(_RESPAWN_SECONDS, self._respawn, protocol.index)

    def _respawn(self, index: int) -> None:
        if self.running and index not in self.processes:
            self._spawn(index)

    def _feed_event(self, item: dict[str, Any]) -> None:
        # Events published in one reactor turn (a commit's batch) go out in one frame.
        if not self._feed_batch:
            self.reactor.callLater(0, self._send_feed)
        self._feed_batch.append(item)

    def _send_feed(self) -> None:
        batch, self._feed_batch = self._feed_batch, []
        for start in range(0, len(batch), FEED_FRAME):
            frame = batch[start:start + FEED_FRAME]
            for channel in list(self.channels):
                channel.feed(frame)

    def _block(self, source: str, seconds: float) -> None:
        for channel in list(self.channels):
            channel.block(source, seconds)

    def stopService(self) -> Deferred[Any]:  # noqa: N802 -- Twisted's name
        """Stop the intakes (SIGTERM, then SIGKILL after 5 s), close the sockets."""
        super().stopService()
        self.alerts.source_blocked = None
        if self._feed_event in self.alerts.feed.listeners:
            self.alerts.feed.listeners.remove(self._feed_event)
        waits = [p.ended for p in self.protocols.values()]
        for process in list(self.processes.values()):
            _signal(process, "TERM")
        killer = self.reactor.callLater(
            5.0, lambda: [_signal(p, "KILL") for p in list(self.processes.values())])
        d: Deferred[Any] = DeferredList(waits) if waits else succeed(None)

        def closed(_: object) -> Any:
            if killer.active():
                killer.cancel()
            if self.socket is not None:
                self.socket.close()
                self.socket = None
            private, self.private = self.private, None
            done = private.stopListening() if private is not None else None

            def remove(_: object) -> None:
                if self.private_dir is not None:
                    shutil.rmtree(self.private_dir, ignore_errors=True)
                    self.private_dir = None

            return (done or succeed(None)).addBoth(remove)

        return d.addCallback(closed)


def _signal(process: Any, name: str) -> None:
    try:
        process.signalProcess(name)
    except Exception:  # noqa: BLE001 -- already gone: nothing to stop
        pass


if __name__ == "__main__":
    sys.exit(main())
