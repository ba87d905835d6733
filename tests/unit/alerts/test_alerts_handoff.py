"""The hand-off from intake processes to the writer (``dispatcher.alerts.handoff``): frames
read whatever way the bytes are split, an alert acknowledged only after the writer's commit,
a writer that dies mid-batch answered 503 with nothing acknowledged, and the state shared by
every intake (rate limit, failed attempts, signatures seen) kept in the writer.

Both ends are the real protocols on ``StringTransport``; bytes are carried between them by
the test (``pump``), so it decides how they are split and when the writer commits (the
``HeldWriter`` of the batching tests, on a real SQLite call log).
"""

from __future__ import annotations

import json
import struct
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker
from twisted.internet import task
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.web.server import Site

from dispatcher.alerts.auth import sign
from dispatcher.alerts.errors import RateLimited
from dispatcher.alerts.handoff import MAX_FRAME, HandOffClient, HandOffServer
from dispatcher.alerts.intake import AlertRequest, Location
from dispatcher.alerts.outcomes import AlertAccepted
from dispatcher.alerts.service import AlertService
from dispatcher.alerts.settings import AlertSettings
from dispatcher.api.alerts import AlertsResource
from dispatcher.api.base import ApiRequest
from dispatcher.api.intake_process import PEER_HEADER, ForwardToWriter, IntakeRoot, IntakeVerbs
from tests.unit.alerts.alerts_support import (
    HMAC_KEY,
    NOW,
    TOKEN,
    counts,
    enrol,
    inline,
    make_db,
    parse_response,
)
from tests.unit.alerts.test_alerts_batching import HeldWriter

EMPTY = {"alerts": 0, "incidents": 0, "incident_transitions": 0, "callbacks": 0}
HELLO = {"replay_window": 300.0, "device_cache_seconds": 10.0, "max_body_bytes": 16384,
         "master_key": "", "database_url": "sqlite://", "forward_socket": "/nonexistent"}


class Link:
    """One intake's channel to the writer: a HandOffClient and a HandOffServer, each on a
    StringTransport; ``pump`` moves the bytes, split into pieces of ``chunk`` bytes."""

    def __init__(self, service: AlertService, clock: task.Clock) -> None:
        self.server = HandOffServer(service, HELLO)
        self.server_transport = StringTransport()
        self.client = HandOffClient(clock.seconds)
        self.client_transport = StringTransport()
        self.server.makeConnection(self.server_transport)
        self.client.makeConnection(self.client_transport)

    def pump(self, chunk: int = 65536) -> None:
        """Carry what each end wrote to the other, ``chunk`` bytes at a time."""
        for source, sink in ((self.client_transport, self.server),
                             (self.server_transport, self.client)):
            data = source.value()
            source.clear()
            for i in range(0, len(data), chunk):
                sink.dataReceived(data[i:i + chunk])


def make(tmp_path: Path, settings: AlertSettings | None = None
         ) -> tuple[AlertService, HeldWriter, sessionmaker[Session], task.Clock]:
    """The writer's alert service (writes held until the test commits them)."""
    clock = task.Clock()
    clock.advance(NOW)
    sessions = make_db(tmp_path)
    enrol(sessions, "app1", token=TOKEN)
    enrol(sessions, "app2", hmac_key=HMAC_KEY)
    writer = HeldWriter(sessions)
    service = AlertService(clock, writer, inline(sessions), None,
                           settings or AlertSettings(rate_burst=100))
    return service, writer, sessions, clock


def device_of(sessions: sessionmaker[Session], device_id: str) -> Any:
    """The device's credentials as an intake reads them."""
    from dispatcher.alerts import storage

    with sessions() as session:
        return storage.device_credentials(session, device_id)


def an_alert(device_id: str = "app1") -> AlertRequest:
    """A valid alert of ``device_id``."""
    return AlertRequest(str(uuid.uuid4()), device_id, "panic",
                        Location(1.4756, 125.1736, 15.0, None), "081234567890", None)


def outcome(d: Any) -> list[Any]:
    """What a Deferred fired with so far (empty: nothing yet)."""
    got: list[Any] = []
    d.addBoth(got.append)
    return got


def test_given_frames_split_at_every_byte_when_both_ends_read_them_then_each_alert_is_stored_once_and_acknowledged(  # noqa: E501
        tmp_path: Path) -> None:
    """Three alerts go through the channel split into pieces of 1, 2, 3, 7 and 64 bytes
    (a frame's length prefix cut in the middle too); each is stored once and each intake
    waiter fires once, with its own incident, only after the writer's commit."""
    for chunk in (1, 2, 3, 7, 64):
        (tmp_path / str(chunk)).mkdir()
        service, writer, sessions, clock = make(tmp_path / str(chunk))
        link = Link(service, clock)
        device = device_of(sessions, "app1")
        alerts = [an_alert() for _ in range(3)]
        results = [outcome(link.client.hand_off(a, device, None, "198.51.100.7"))
                   for a in alerts]
        link.pump(chunk)
        assert all(r == [] for r in results), "acknowledged before any commit"
        while writer.held:
            writer.commit_next()
            link.pump(chunk)
        accepted = [r[0] for r in results]
        assert [type(a) for a in accepted] == [AlertAccepted] * 3
        assert [a.alert_id for a in accepted] == [a.alert_id for a in alerts]
        assert len({a.incident_id for a in accepted}) == 3
        assert all(a.created for a in accepted)
        assert counts(sessions)["alerts"] == 3
        assert link.client.pending == {}


def test_given_the_writer_dies_mid_batch_when_intakes_were_waiting_then_they_answer_503_and_nothing_is_acknowledged(  # noqa: E501
        tmp_path: Path) -> None:
    """Two alerts are POSTed to an intake's real HTTP site and handed off; the writer's
    process dies before their batch commits (the channel closes). Both clients hear 503 with
    a JSON reason telling them to retry with the same alert_id, none hears 201, the database
    holds nothing; an alert POSTed after that is answered 503 at once."""
    service, writer, sessions, clock = make(tmp_path)
    link = Link(service, clock)
    verbs = IntakeVerbs(clock, inline(sessions), AlertSettings(), link.client)
    site = Site(IntakeRoot(AlertsResource(verbs), ForwardToWriter(None, "/nonexistent")),
                requestFactory=ApiRequest, reactor=clock)
    transports = [post(site, "app1") for _ in range(2)]
    link.pump()
    assert len(writer.held) == 1 and writer.batch_sizes() == [1]  # one in flight, one queued
    assert all(t.value() == b"" for t in transports)
    link.client.connectionLost()  # the writer's process is gone
    for transport in transports:
        status, _, body = parse_response(transport.value())
        assert status == 503
        assert json.loads(body)["error"] == "storage_unavailable"
        assert "same alert_id" in json.loads(body)["reason"]
    assert counts(sessions) == EMPTY
    status, _, body = parse_response(post(site, "app1").value())
    assert status == 503 and json.loads(body)["error"] == "storage_unavailable"


def test_given_an_intake_that_dies_after_handing_off_when_the_batch_commits_then_the_alert_is_stored_and_its_retry_hears_200(  # noqa: E501
        tmp_path: Path) -> None:
    """An intake killed while its alert was being committed never answered the client; the
    alert is stored, and the client's retry through another intake hears 200 with the same
    incident, not a second incident."""
    service, writer, sessions, clock = make(tmp_path)
    first, second = Link(service, clock), Link(service, clock)
    device, alert = device_of(sessions, "app1"), an_alert()
    outcome(first.client.hand_off(alert, device, None, None))
    first.pump()
    first.server.connectionLost()  # the intake's process is gone
    writer.commit_next()
    assert counts(sessions)["alerts"] == 1
    retry = outcome(second.client.hand_off(alert, device, None, None))
    second.pump()
    writer.commit_next()
    second.pump()
    assert retry[0].created is False
    assert counts(sessions)["incidents"] == 1


def test_given_a_frame_over_the_limit_or_not_json_when_it_arrives_then_the_channel_is_closed(
        tmp_path: Path) -> None:
    """The two ends are our own processes: a frame over MAX_FRAME or one that is not a JSON
    object is a bug, and the channel is closed rather than guessed at; nothing is stored."""
    service, writer, sessions, clock = make(tmp_path)
    for data in (struct.pack("!I", MAX_FRAME + 1) + b"{",
                 struct.pack("!I", 5) + b"[1,2]",
                 struct.pack("!I", 3) + b"{{{"):
        link = Link(service, clock)
        link.server.dataReceived(data)
        assert link.server_transport.disconnecting
    assert writer.held == [] and counts(sessions) == EMPTY


def test_given_one_device_through_two_intakes_when_over_its_rate_then_the_writer_refuses_it(
        tmp_path: Path) -> None:
    """The device's rate limit is counted in the writer: with a burst of 2, two alerts
    through one intake and a third through another — the third is refused (429 with a
    retry-after), not allowed because the second intake had not seen the device."""
    service, writer, sessions, clock = make(tmp_path, AlertSettings(rate_burst=2,
                                                                    rate_per_second=0.01))
    a, b = Link(service, clock), Link(service, clock)
    device = device_of(sessions, "app1")
    taken = [outcome(a.client.hand_off(an_alert(), device, None, None)) for _ in range(2)]
    a.pump()
    third = outcome(b.client.hand_off(an_alert(), device, None, None))
    b.pump()
    assert third and third[0].check(RateLimited)
    assert third[0].value.retry_after is not None and third[0].value.retry_after >= 1
    while writer.held:
        writer.commit_next()
    a.pump()
    assert all(isinstance(t[0], AlertAccepted) for t in taken)
    assert counts(sessions)["alerts"] == 2


def test_given_a_signature_replayed_through_another_intake_then_the_writer_refuses_it(
        tmp_path: Path) -> None:
    """Each intake remembers only the signatures it checked; the writer remembers every
    one, so the same signed request sent to a second intake is refused as a replay."""
    service, writer, sessions, clock = make(tmp_path)
    a, b = Link(service, clock), Link(service, clock)
    device, alert = device_of(sessions, "app2"), an_alert("app2")
    digest = sign(HMAC_KEY, int(NOW), b"{}")[len("sha256="):]
    first = outcome(a.client.hand_off(alert, device, digest, None))
    a.pump()
    replay = outcome(b.client.hand_off(alert, device, digest, None))
    b.pump()
    assert replay and replay[0].value.code == "replayed_request"
    writer.commit_next()
    a.pump()
    assert isinstance(first[0], AlertAccepted)


def test_given_failed_attempts_through_two_intakes_when_the_address_is_over_budget_then_every_intake_refuses_it(  # noqa: E501
        tmp_path: Path) -> None:
    """Failed attempts of one address count in the writer whichever intake saw them; once
    it is over budget, every intake is told and refuses it (429) without a database read,
    and no intake refuses an address that is not."""
    service, writer, sessions, clock = make(tmp_path, AlertSettings(failure_burst=3,
                                                                    failure_per_second=0.1))
    links = [Link(service, clock), Link(service, clock)]
    service.source_blocked = lambda source, seconds: [
        link.server.block(source, seconds) for link in links]
    for i in range(3):
        links[i % 2].client.failed_attempt("203.0.113.9")
        links[i % 2].pump()
    for link in links:
        link.pump()
        assert link.client.blocked.wait("203.0.113.9", clock.seconds()) > 0
        assert link.client.blocked.wait("198.51.100.1", clock.seconds()) == 0
    clock.advance(60)
    assert links[0].client.blocked.wait("203.0.113.9", clock.seconds()) == 0


def test_given_a_client_naming_itself_in_the_peer_header_when_forwarded_then_the_writer_sees_its_real_address(  # noqa: E501
        ) -> None:
    """Requests other than alert POSTs are forwarded to the writer's site with the client's
    address in X-Siaga-Peer; a client that sends that header itself (to pass for loopback
    at the operator endpoints) has it replaced by its real address."""
    connected: list[Any] = []

    class Reactor:
        def connectUNIX(self, path: str, factory: Any, timeout: int = 30) -> None:  # noqa: N802
            connected.append(factory)

    site = Site(IntakeRoot(AlertsResource(None), ForwardToWriter(Reactor(), "/x")),  # type: ignore[arg-type]
                requestFactory=ApiRequest)
    address = IPv4Address("TCP", "203.0.113.5", 40000)
    proto = site.buildProtocol(address)
    proto.makeConnection(StringTransport(peerAddress=address))
    proto.dataReceived(b"GET /api/v1/incidents/feed HTTP/1.1\r\nHost: x\r\n"
                       b"X-Siaga-Peer: 127.0.0.1\r\n\r\n")
    assert len(connected) == 1
    assert connected[0].headers[PEER_HEADER] == b"203.0.113.5"
    assert connected[0].rest == b"/api/v1/incidents/feed"


def post(site: Site, device_id: str) -> StringTransport:
    """POST one alert of ``device_id`` (token auth) on a connection that stays open."""
    body = json.dumps({"alert_id": str(uuid.uuid4()), "device_id": device_id,
                       "type": "panic", "location": {"lat": 1.4756, "lon": 125.1736},
                       "callback_number": "081234567890"}).encode()
    head = ("POST /api/v1/alerts HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Content-Type: application/json\r\n"
            f"Authorization: Bearer {TOKEN}\r\nContent-Length: {len(body)}\r\n\r\n")
    address = IPv4Address("TCP", "127.0.0.1", 40000)
    proto = site.buildProtocol(address)
    transport = StringTransport(peerAddress=address)
    proto.makeConnection(transport)
    proto.dataReceived(head.encode() + body)
    return transport




def test_given_an_alert_with_every_field_when_encoded_and_decoded_then_it_is_unchanged(
        tmp_path: Path) -> None:
    """What the writer stores is what the intake validated: an alert with a fix time, an
    accuracy and a note, and its device's row, come out of a frame equal to what went in
    (every field of the device row: the commit compares them to refuse a revoked device)."""
    import datetime as dt
    import json as json_module

    from dispatcher.alerts.auth import DeviceCredentials
    from dispatcher.alerts.handoff import decode_alert, encode_alert

    request = AlertRequest("a-1", "app9", "fire",
                           Location(-1.5, 124.25, 7.5, dt.datetime(2026, 11, 27, 3, 4, 5,
                                                                   tzinfo=dt.UTC)),
                           "+6281234567", "third floor")
    device = DeviceCredentials(7, "app9", "app", True, "sha256$ab", "label-1", "0811", 1.0, 2.0)
    frame = json_module.loads(json_module.dumps(encode_alert(request, device)))
    assert decode_alert(frame) == (request, device)
    bare = AlertRequest("a-2", "app9", "panic", None, None, None)
    assert decode_alert(json_module.loads(json_module.dumps(encode_alert(bare, device))))[0] \
        == bare


def forwarded(request_bytes: bytes) -> tuple[Any, StringTransport, StringTransport]:
    """Send ``request_bytes`` to an intake's site; return the forwarding protocol (connected
    to a StringTransport playing the writer's site) and both transports."""
    connected: list[Any] = []

    class Reactor:
        def connectUNIX(self, path: str, factory: Any, timeout: int = 30) -> None:  # noqa: N802
            connected.append(factory)

    site = Site(IntakeRoot(AlertsResource(None), ForwardToWriter(Reactor(), "/x")),  # type: ignore[arg-type]
                requestFactory=ApiRequest)
    address = IPv4Address("TCP", "127.0.0.1", 40000)
    channel = site.buildProtocol(address)
    client = StringTransport(peerAddress=address)
    channel.makeConnection(client)
    channel.dataReceived(request_bytes)
    upstream = connected[0].buildProtocol(None)
    writer_side = StringTransport()
    upstream.makeConnection(writer_side)
    client.channel = channel  # type: ignore[attr-defined]
    return upstream, client, writer_side


def test_given_the_writer_closes_before_answering_when_a_request_was_forwarded_then_the_client_hears_503(  # noqa: E501
        ) -> None:
    """A forwarded request whose writer goes away before sending a status is answered 503
    with a JSON reason, not an empty 200."""
    upstream, client, _ = forwarded(b"GET /api/v1/incidents/1 HTTP/1.1\r\nHost: x\r\n\r\n")
    upstream.connectionLost(Failure(ConnectionDone()))
    status, _, body = parse_response(client.value())
    assert status == 503 and json.loads(body)["error"] == "unavailable"


def test_given_a_client_that_leaves_when_its_request_was_forwarded_then_the_forwarded_request_is_closed(  # noqa: E501
        ) -> None:
    """A console's event stream forwarded to the writer is closed when the console goes, and
    what the writer still sends is dropped instead of written to a finished request."""
    upstream, client, writer_side = forwarded(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
    upstream.dataReceived(b"HTTP/1.0 200 OK\r\nContent-Type: text/event-stream\r\n\r\n"
                          b"data: 1\n\n")
    assert b"data: 1" in client.value()
    client.channel.connectionLost(Failure(ConnectionDone()))  # type: ignore[attr-defined]
    assert writer_side.disconnecting
    upstream.dataReceived(b"data: 2\n\n")  # nothing raised, nothing written
    upstream.connectionLost(Failure(ConnectionDone()))


# -- the operators' feed, mirrored in each intake ---------------------------------------------


class NoWriterSite:
    """A reactor whose ``connectUNIX`` records what the intake would forward to the writer."""

    def __init__(self) -> None:
        self.forwarded: list[Any] = []

    def connectUNIX(self, path: str, factory: Any, timeout: int = 30) -> None:  # noqa: N802
        self.forwarded.append(factory)


def intake_site(feed: Any, reactor: NoWriterSite, operator_token: str | None = None) -> Site:
    """An intake's site (``IntakeRoot``) answering the feed from ``feed``."""
    from dispatcher.api.alerts import FeedResource

    root = IntakeRoot(AlertsResource(None), ForwardToWriter(reactor, "/x"),  # type: ignore[arg-type]
                      feed, FeedResource(feed, operator_token))
    return Site(root, requestFactory=ApiRequest)


def get(site: Site, path: str, host: str = "127.0.0.1", headers: str = "") -> StringTransport:
    """Send ``GET path`` from ``host`` on a new connection; the transport collects the answer."""
    address = IPv4Address("TCP", host, 40000)
    proto = site.buildProtocol(address)
    transport = StringTransport(peerAddress=address)
    proto.makeConnection(transport)
    proto.dataReceived(f"GET {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode())
    return transport


def test_given_the_writer_publishing_when_frames_are_split_at_every_byte_then_the_intakes_mirror_answers_its_long_poll(  # noqa: E501
        tmp_path: Path) -> None:
    """Feed events the writer publishes reach the intake's mirror over the channel (however
    the bytes are split) and wake the operator's long-poll waiting at the intake once, with
    the whole frame: answered there, never forwarded to the writer's site, and the same
    document the writer gives."""
    from dispatcher.alerts.feed import IncidentFeed

    service, writer, sessions, clock = make(tmp_path)
    service.feed.publish(1, "new", "alert_received")
    link = Link(service, clock)
    mirror = IncidentFeed.mirror(clock, service.feed.last)
    link.client.on_feed = mirror.receive
    reactor = NoWriterSite()
    site = intake_site(mirror, reactor)
    waiting = get(site, "/api/v1/incidents/feed?after=1&wait=30")
    assert waiting.value() == b""
    service.feed.publish(2, "new", "alert_received", lat=1.4756,
                         callback_number="081234567890")
    service.feed.publish(2, "dispatched", "operator_dialled")
    link.server.feed(list(service.feed.events)[1:])
    link.pump(chunk=1)
    status, _, body = parse_response(waiting.value())
    expected = service.feed.answer(1, service.feed.since(1))
    assert (status, json.loads(body)) == (200, json.loads(json.dumps(expected)))
    assert [e["event"] for e in json.loads(body)["events"]] == [
        "alert_received", "operator_dialled"]
    assert reactor.forwarded == []


def test_given_a_poll_from_before_the_mirrors_start_when_it_reaches_an_intake_then_the_writer_answers_it(  # noqa: E501
        ) -> None:
    """The mirror holds only events after the writer's ``last`` at its start: an older
    ``after`` (or none: from the beginning) is forwarded to the writer, which holds them."""
    from dispatcher.alerts.feed import IncidentFeed

    reactor = NoWriterSite()
    site = intake_site(IncidentFeed.mirror(task.Clock(), 5), reactor)
    get(site, "/api/v1/incidents/feed?after=4")
    get(site, "/api/v1/incidents/feed")
    assert [f.rest for f in reactor.forwarded] == [b"/api/v1/incidents/feed?after=4",
                                                   b"/api/v1/incidents/feed"]
    answered = get(site, "/api/v1/incidents/feed?after=5&wait=0")
    assert parse_response(answered.value())[0] == 200
    assert len(reactor.forwarded) == 2


def test_given_an_outsider_naming_itself_loopback_when_it_polls_the_feed_at_an_intake_then_it_is_refused(  # noqa: E501
        ) -> None:
    """The feed at an intake keeps the operator rules: the client's real address is judged
    (an ``X-Siaga-Peer`` header of its own changes nothing), and with an operator token
    set a loopback client without it is refused; a malformed ``after`` is a JSON 400."""
    from dispatcher.alerts.feed import IncidentFeed

    reactor = NoWriterSite()
    feed = IncidentFeed.mirror(task.Clock(), 0)
    feed.receive([{"seq": 1, "at": 0.0, "incident_id": 1, "state": "new",
                   "event": "alert_received"}])
    open_site = intake_site(feed, reactor)
    spoof = get(open_site, "/api/v1/incidents/feed?after=0",
                host="203.0.113.5", headers="X-Siaga-Peer: 127.0.0.1\r\n")
    status, _, body = parse_response(spoof.value())
    assert (status, json.loads(body)["error"]) == (403, "forbidden")
    guarded = intake_site(feed, reactor, operator_token="op-secret")
    status, _, body = parse_response(get(guarded, "/api/v1/incidents/feed?after=0").value())
    assert (status, json.loads(body)["error"]) == (401, "invalid_credentials")
    status, _, body = parse_response(get(
        guarded, "/api/v1/incidents/feed?after=0",
        headers="Authorization: Bearer op-secret\r\n").value())
    assert status == 200 and [e["seq"] for e in json.loads(body)["events"]] == [1]
    status, _, body = parse_response(get(
        guarded, "/api/v1/incidents/feed?after=1%0d%0aX:1",
        headers="Authorization: Bearer op-secret\r\n").value())
    assert (status, json.loads(body)["error"]) == (400, "invalid_parameter")
    assert reactor.forwarded == []


def test_given_a_malformed_feed_frame_when_the_intake_reads_it_then_the_channel_is_closed(
        ) -> None:
    """A feed frame that is not a list of numbered events is a bug in our own writer: the
    intake closes the channel rather than serve a guessed feed."""
    for events in ("x", [{"seq": "1", "at": 0}], [{"at": 0}], [1]):
        client = HandOffClient(task.Clock().seconds)
        received: list[Any] = []
        client.on_feed = received.append
        transport = StringTransport()
        client.makeConnection(transport)
        data = json.dumps({"op": "feed", "events": events}).encode()
        client.dataReceived(struct.pack("!I", len(data)) + data)
        assert transport.disconnecting and received == [], events
