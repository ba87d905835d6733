"""The live push channel: one Server-Sent Events stream from the server to each open page.

A page opens ``GET /events`` (with its console session) and keeps it open. It first gets one
``snapshot`` event holding every view whole, then a ``delta`` event each time a view
changes, and a comment line every :attr:`PushHub.heartbeat` seconds so proxies and the
browser know the stream is alive. Every event carries the hub's ``epoch`` (random, new at
each server start) and a ``seq`` that grows by one per delta: a page applies a delta only
when its ``seq`` follows the last one it has, and otherwise (a gap, another epoch) drops its
state and reconnects, which brings a new snapshot. After a reconnect or a server restart the
page therefore always starts again from a whole snapshot: never stale, nothing twice.

Views are plain functions returning a JSON document (the wallboard's is
:func:`dispatcher.web.wallboard.wallboard_document`). A *personal* view
(:meth:`PushHub.add_personal_view`) is rendered for the member of staff each stream belongs
to (the operator's own desk and call card): each stream keeps its own last document of it,
gets its own deltas, and never another member's document. The sequence is therefore each
stream's own: it starts at the hub's count of shared deltas when the stream attaches and
grows by one per delta that stream is sent. A shared view may be given an *audience*
(``add_view(name, render, audience=...)``, e.g. :func:`supervisors_only`): it is rendered
once for everyone, but only the streams whose member of staff is in its audience get it,
in their snapshot and as deltas (the floor's every desk and caller is the supervisors').
Sources of change (AMI events, the
callback list, the incident feed) only call :meth:`PushHub.changed`; the hub renders the
views at most once per reactor turn (changes within :attr:`PushHub.coalesce` seconds are
rendered together) and sends what differs, top-level key by key.

A page that does not read its stream must not make the server hold its events: each stream
is a push producer of the HTTP channel, so Twisted pauses it when the socket's buffer is
full; while paused its events queue up to :attr:`PushHub.max_buffer` bytes, and one more
closes the connection (the page reconnects and starts over from a snapshot).

A server that just started knows nothing yet of the calls already up: its live model is
empty until the first AMI resync. :meth:`PushHub.hold` keeps new streams' snapshots back
until :meth:`PushHub.release` (the first resync) or a bound of a few seconds (Asterisk
down: the page still gets its snapshot), so a page reconnecting after a restart is not told
"no call" and then its call again.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from typing import Any

from twisted.application.service import Service
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.web import resource, server
from twisted.web.iweb import IRequest
from zope.interface import implementer

from dispatcher.api.errors import error_body

__all__ = ["EventStream", "PushHub", "PushResource", "diff", "frame", "supervisors_only"]

log = Logger(namespace="dispatcher.web.push")

View = Callable[[], dict[str, Any]]
#: A personal view: the document for one member of staff (a ``dispatcher.web.sessions.Staff``).
PersonalView = Callable[[Any], dict[str, Any]]
#: Who may receive a shared view: ``audience(staff)`` True for each member who may.
Audience = Callable[[Any], bool]


def supervisors_only(staff: Any) -> bool:  # noqa: ANN401 (a dispatcher.web.sessions.Staff)
    """The audience of a view for supervisors: never an operator's page."""
    return getattr(staff, "role", None) == "supervisor"


def frame(event: str, data: Any, event_id: str | None = None) -> bytes:
    """One SSE frame: ``event:``, ``id:`` and the JSON ``data:`` line, then a blank line.

    The JSON is on one line (``json.dumps`` escapes every newline in a string), so a value
    a caller controls cannot end the frame or forge another field.
    """
    if any(c in event for c in "\r\n") or (event_id and any(c in event_id for c in "\r\n")):
        raise ValueError("an SSE event name or id must be one line")
    lines = [f"event: {event}"]
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append("data: " + json.dumps(data, separators=(",", ":"), ensure_ascii=False))
    return ("\n".join(lines) + "\n\n").encode("utf-8")


def diff(old: dict[str, Any] | None, new: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The top-level keys of ``new`` whose value differs from ``old`` and the keys gone."""
    old = old or {}
    changed = {k: v for k, v in new.items() if k not in old or old[k] != v}
    gone = [k for k in old if k not in new]
    return changed, gone


class PushHub(Service):
    """The views, their last rendered documents, the sequence, and every open stream.

    ``clock`` (``IReactorTime``) schedules renders and heartbeats; ``epoch`` is random per
    hub (a restarted server is a new epoch) unless given (tests). As a service it also
    re-renders every view each :attr:`refresh` seconds, for what changes with no event to
    tell it (the self-test's status); stopping it ends every stream.
    """

    #: Seconds between renders of every view without a change being signalled.
    refresh = 5.0

    #: Seconds between heartbeat comments on each stream (and session checks).
    heartbeat = 15.0
    #: Bytes a paused (slow) stream may queue before it is closed.
    max_buffer = 256 * 1024
    #: Seconds a change waits for others before the views are rendered: a burst of AMI
    #: events costs one render, and renders stay under 50 a second whatever the rate.
    coalesce = 0.02
    #: The browser's reconnection delay, sent once per stream (milliseconds).
    retry_ms = 1000

    def __init__(self, clock: IReactorTime, epoch: str | None = None) -> None:
        self.clock = clock
        self.epoch = epoch or secrets.token_hex(6)
        self.seq = 0
        self.views: dict[str, View] = {}
        self.personal: dict[str, PersonalView] = {}
        #: The shared views that reach only some members of staff, and who.
        self.audiences: dict[str, Audience] = {}
        self.documents: dict[str, dict[str, Any]] = {}
        self.streams: set[EventStream] = set()
        self.dropped = 0  # slow streams closed since start
        self._dirty: set[str] = set()
        self._pending: IDelayedCall | None = None
        self._loop: LoopingCall | None = None
        #: Streams waiting for their snapshot while the hub is held (see :meth:`hold`).
        self.held: list[EventStream] | None = None
        self._hold_most = 0.0
        self._hold_timer: IDelayedCall | None = None

    def startService(self) -> None:  # noqa: N802 -- Twisted's name
        super().startService()
        self._loop = LoopingCall(self.changed)
        self._loop.clock = self.clock
        self._loop.start(self.refresh, now=False)
        if self.held is not None:
            self._hold_timer = self.clock.callLater(self._hold_most, self.release)

    def stopService(self) -> None:  # noqa: N802 -- Twisted's name
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._cancel_hold_timer()
        for stream in [*self.streams, *(self.held or ())]:
            stream.close()
        self.held = None

    def hold(self, most: float) -> None:
        """Keep new streams' snapshots back until :meth:`release`, or ``most`` seconds
        (counted from now if the hub runs, else from its start)."""
        if self.held is None:
            self.held = []
        self._hold_most = most
        self._cancel_hold_timer()
        if self.running:
            self._hold_timer = self.clock.callLater(most, self.release)

    def release(self) -> None:
        """What the views show is known: the held streams get their snapshots, and later
        ones at once. Releasing a hub not held does nothing."""
        self._cancel_hold_timer()
        held, self.held = self.held, None
        for stream in held or ():
            if not stream.closed:
                self.attach(stream)

    def _cancel_hold_timer(self) -> None:
        if self._hold_timer is not None and self._hold_timer.active():
            self._hold_timer.cancel()
        self._hold_timer = None

    def add_view(self, name: str, render: View, audience: Audience | None = None) -> None:
        """Publish ``render()`` under ``name`` (rendered at the next change or stream); with
        ``audience``, only to the streams whose member of staff it says True of."""
        if name in self.personal:
            raise ValueError(f"view {name!r} is already a personal view")
        self.views[name] = render
        if audience is not None:
            self.audiences[name] = audience
        else:
            self.audiences.pop(name, None)
        self._dirty.add(name)

    def reaches(self, name: str, staff: Any) -> bool:  # noqa: ANN401
        """True when shared view ``name`` may be sent to ``staff``'s streams."""
        audience = self.audiences.get(name)
        if audience is None:
            return True
        try:
            return bool(audience(staff))
        except Exception:
            log.failure("push view {name}'s audience failed: not sent", name=name)
            return False

    def add_personal_view(self, name: str, render: PersonalView) -> None:
        """Publish ``render(staff)`` under ``name``, rendered for each stream's own member of
        staff (``staff`` as the stream's session said when it opened)."""
        if name in self.views:
            raise ValueError(f"view {name!r} is already a shared view")
        self.personal[name] = render
        self._dirty.add(name)

    def changed(self, name: str | None = None) -> None:
        """Something behind view ``name`` (every view when None) changed: render soon."""
        self._dirty.update([*self.views, *self.personal] if name is None else (name,))
        if self._pending is None and self.streams:
            self._pending = self.clock.callLater(self.coalesce, self.flush)

    def flush(self) -> None:
        """Render the changed views now; send a delta per view that differs (a personal
        view: per stream, to that stream only)."""
        if self._pending is not None:
            if self._pending.active():
                self._pending.cancel()
            self._pending = None
        dirty, self._dirty = self._dirty, set()
        for name in sorted(dirty):
            if name in self.personal:
                self._flush_personal(name)
                continue
            render = self.views.get(name)
            if render is None:
                continue
            try:
                document = render()
            except Exception:
                log.failure("push view {name} failed to render", name=name)
                continue
            changed, gone = diff(self.documents.get(name), document)
            self.documents[name] = document
            if not changed and not gone:
                continue
            self.seq += 1
            body = _delta_body(name, changed, gone)
            for stream in list(self.streams):
                if self.reaches(name, stream.staff):
                    stream.send_delta(body)

    def _flush_personal(self, name: str) -> None:
        # One render per member of staff (two tabs of one operator cost one), diffed against
        # each stream's own last document.
        render = self.personal[name]
        rendered: dict[Any, dict[str, Any] | None] = {}
        for stream in list(self.streams):
            if stream.staff not in rendered:
                rendered[stream.staff] = self._render_personal(name, render, stream.staff)
            document = rendered[stream.staff]
            if document is None:
                continue
            changed, gone = diff(stream.documents.get(name), document)
            stream.documents[name] = document
            if changed or gone:
                stream.send_delta(_delta_body(name, changed, gone))

    @staticmethod
    def _render_personal(name: str, render: PersonalView, staff: Any
                         ) -> dict[str, Any] | None:  # noqa: ANN401
        try:
            return render(staff)
        except Exception:
            log.failure("personal push view {name} failed to render for {staff}", name=name,
                        staff=getattr(staff, "extension", "?"))
            return None

    def snapshot(self, stream: EventStream | None = None) -> bytes:
        """The snapshot frame: every view as of ``seq`` (pending changes rendered first),
        with the personal views rendered for ``stream``'s member of staff."""
        self.flush()
        staff = stream.staff if stream is not None else None
        views = {name: document for name, document in self.documents.items()
                 if self.reaches(name, staff)}
        if stream is not None:
            stream.seq = self.seq
            stream.documents = {}
            for name, render in self.personal.items():
                document = self._render_personal(name, render, stream.staff)
                if document is not None:
                    stream.documents[name] = views[name] = document
        return frame("snapshot", {"epoch": self.epoch, "seq": self.seq, "views": views},
                     f"{self.epoch}-{self.seq}")

    def attach(self, stream: EventStream) -> None:
        """Start ``stream``: its snapshot, then every later delta (while the hub is held,
        once it is released)."""
        if self.held is not None:
            self.held.append(stream)
            return
        # The snapshot first: rendering it may send deltas of pending changes to the other
        # streams, which this one must not get before (nor after) its snapshot.
        snapshot = self.snapshot(stream)
        self.streams.add(stream)
        stream.send(snapshot)

    def detach(self, stream: EventStream) -> None:
        """``stream`` is gone."""
        self.streams.discard(stream)
        if self.held is not None and stream in self.held:
            self.held.remove(stream)


@implementer(IPushProducer)
class EventStream:
    """One page's open stream: a push producer of its request's HTTP channel.

    ``alive()`` is asked at each heartbeat (the session still valid?); False ends the stream.
    """

    def __init__(self, hub: PushHub, request: IRequest,
                 alive: Callable[[], bool] = lambda: True, staff: Any = None) -> None:  # noqa: ANN401
        self.hub = hub
        self.request = request
        self.alive = alive
        #: Whose stream this is: the personal views are rendered for this member of staff.
        self.staff = staff
        #: The last delta's number sent on this stream (set by its snapshot).
        self.seq = 0
        #: This stream's last documents of the personal views.
        self.documents: dict[str, dict[str, Any]] = {}
        self.paused = False
        self.closed = False
        self.queued: list[bytes] = []
        self.queued_bytes = 0
        self._heartbeat: IDelayedCall | None = None

    def start(self) -> None:
        """Register with the channel, send the retry delay and the snapshot, beat."""
        self.request.registerProducer(self, True)
        self.request.notifyFinish().addBoth(self._finished)
        self.send(f"retry: {self.hub.retry_ms}\n\n".encode())
        self.hub.attach(self)
        self._beat_later()

    def send_delta(self, body: bytes) -> None:
        """Number a delta (``_delta_body``) with this stream's next ``seq`` and send it."""
        if self.closed:
            return
        self.seq += 1
        epoch = self.hub.epoch
        self.send(b"event: delta\nid: " + f"{epoch}-{self.seq}".encode() + b"\ndata: "
                  + json.dumps({"epoch": epoch, "seq": self.seq}, separators=(",", ":"))
                  .encode()[:-1] + b"," + body[1:] + b"\n\n")

    def send(self, payload: bytes) -> None:
        """Write ``payload`` now, or queue it while the client is slow; over the bound,
        close the connection."""
        if self.closed:
            return
        if not self.paused:
            self.request.write(payload)
            return
        self.queued.append(payload)
        self.queued_bytes += len(payload)
        if self.queued_bytes > self.hub.max_buffer:
            self.hub.dropped += 1
            log.info("push stream dropped: the client read nothing while {n} bytes waited",
                     n=self.queued_bytes)
            self.close(abort=True)

    def close(self, abort: bool = False) -> None:
        """End the stream (``abort``: without waiting to send what is buffered)."""
        if self.closed:
            return
        self._stop()
        transport = getattr(getattr(self.request, "channel", None), "transport", None)
        if abort and transport is not None:
            transport.abortConnection()
        else:
            self.request.unregisterProducer()
            self.request.finish()

    # IPushProducer: Twisted's channel says when the socket's buffer is full, and empty.
    def pauseProducing(self) -> None:  # noqa: N802 -- Twisted's name
        self.paused = True

    def resumeProducing(self) -> None:  # noqa: N802 -- Twisted's name
        self.paused = False
        while self.queued and not self.paused and not self.closed:
            payload = self.queued.pop(0)
            self.queued_bytes -= len(payload)
            self.request.write(payload)

    def stopProducing(self) -> None:  # noqa: N802 -- Twisted's name
        self._stop()

    def _beat_later(self) -> None:
        self._heartbeat = self.hub.clock.callLater(self.hub.heartbeat, self._beat)

    def _beat(self) -> None:
        self._heartbeat = None
        if self.closed:
            return
        if not self.alive():
            self.close()  # logged out or expired: the page's next connect gets 401
            return
        self.send(b": heartbeat\n\n")
        self._beat_later()

    def _stop(self) -> None:
        self.closed = True
        self.queued, self.queued_bytes = [], 0
        self.hub.detach(self)
        if self._heartbeat is not None and self._heartbeat.active():
            self._heartbeat.cancel()
        self._heartbeat = None

    def _finished(self, result: object) -> None:
        # The client went away (or we finished): nothing more is written to it. A dropped
        # connection (a Failure here) is the normal end of a stream: consumed, not logged.
        self._stop()


class PushResource(resource.Resource):
    """``GET /events``: the push stream of a logged-in page; anything else is JSON.

    ``staff(request)`` says who the request's session belongs to (None: 401).
    """

    isLeaf = True

    def __init__(self, hub: PushHub, staff: Callable[[IRequest], object | None],
                 headers: dict[bytes, bytes] | None = None) -> None:
        super().__init__()
        self.hub = hub
        self.staff = staff
        self.headers = headers or {}

    def render(self, request: IRequest) -> bytes | int:
        if request.method != b"GET":
            request.setHeader(b"Allow", b"GET")
            return _error(request, 405, "method_not_allowed",
                          "the push channel is read with GET only")
        if self.staff(request) is None:
            return _error(request, 401, "login_required", "log in to the console")
        for name, value in self.headers.items():
            request.setHeader(name, value)
        request.setHeader(b"Content-Type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-store")
        request.setHeader(b"X-Accel-Buffering", b"no")
        staff = self.staff(request)
        # The stream belongs to the session's member as it was at connect; a session that
        # changes hands (logout, another login) ends at the next beat, and the page's new
        # stream is rendered for whoever it belongs to then.
        stream = EventStream(self.hub, request, staff=staff,
                             alive=lambda: self.staff(request) == staff)
        stream.start()
        return server.NOT_DONE_YET


def _delta_body(view: str, changed: dict[str, Any], gone: list[str]) -> bytes:
    """A delta's JSON without its numbers (each stream adds its own epoch and seq)."""
    return json.dumps({"view": view, "set": changed, "unset": gone},
                      separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _error(request: IRequest, status: int, code: str, reason: str) -> bytes:
    request.setResponseCode(status)
    request.setHeader(b"Content-Type", b"application/json; charset=utf-8")
    request.setHeader(b"Cache-Control", b"no-store")
    return error_body(code, reason)
