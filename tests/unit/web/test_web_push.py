"""The live push channel (/events), through the real Twisted HTTP channel over StringTransport:
framing, snapshot then deltas, the slow-client bound, the session, methods."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import defer, task
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from dispatcher.config import load_center
from dispatcher.credentials import ensure_credentials
from dispatcher.web.push import PushHub, diff, frame
from dispatcher.web.site import build_site
from tests.harness import EXAMPLE_CONFIG
from tests.unit.web.test_web_console import Client, Response


def parse_stream(raw: bytes) -> list[dict[str, Any]]:
    """The SSE frames in a chunked HTTP body: each as {"event", "id", "data", "comment",
    "retry"} (what a browser's EventSource reads)."""
    _, _, body = raw.partition(b"\r\n\r\n")
    text = b""
    while body:  # de-chunk, tolerating an unfinished last chunk
        size_line, _, rest = body.partition(b"\r\n")
        if not size_line:
            break
        size = int(size_line, 16)
        if size == 0:
            break
        text += rest[:size]
        body = rest[size + 2:]
    frames = []
    for block in text.decode("utf-8").split("\n\n"):
        if not block:
            continue
        item: dict[str, Any] = {}
        for line in block.split("\n"):
            name, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if name == "":
                item["comment"] = value
            elif name == "data":
                item["data"] = json.loads(value)
            else:
                item[name] = value
        frames.append(item)
    return frames


class Stream:
    """An open ``GET /events`` on a fresh channel: its transport stays readable."""

    def __init__(self, site, cookies: dict[str, str]) -> None:  # noqa: ANN001
        self.channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40001))
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40001))
        self.channel.makeConnection(self.transport)
        cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
        self.channel.dataReceived(
            b"GET /events HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nAccept: text/event-stream\r\n"
            + (f"Cookie: {cookie}\r\n".encode() if cookie else b"") + b"\r\n")

    def frames(self) -> list[dict[str, Any]]:
        return parse_stream(self.transport.value())

    def events(self) -> list[dict[str, Any]]:
        return [f for f in self.frames() if "event" in f]

    def slow(self) -> None:
        """The socket's buffer is full: Twisted pauses the channel's producer."""
        self.transport.producer.pauseProducing()

    def drained(self) -> None:
        self.transport.producer.resumeProducing()


@pytest.fixture
def world(tmp_path: Path):  # noqa: ANN201
    center = load_center(EXAMPLE_CONFIG, state_dir=tmp_path)
    creds = ensure_credentials(center)
    clock = task.Clock()
    clock.advance(1_800_000_000)
    board: dict[str, Any] = {"waiting": 0, "callers": [], "center": "Kota"}
    hub = PushHub(clock, epoch="e1")
    hub.add_view("wallboard", lambda: dict(board))
    site = build_site(center, creds, clock.seconds, wallboard=lambda: dict(board),
                      reports=lambda q: defer.succeed(("text/csv", "")), push=hub)
    client = Client(site)
    ext = center.operators[0].extension
    assert client.login(ext, creds.console_passwords[ext]).status == 302
    return hub, board, clock, site, client


def test_given_a_json_value_with_newlines_when_framed_then_one_data_line() -> None:
    """A caller's number holding CR/LF and a forged ``event:`` stays inside one data line."""
    raw = frame("delta", {"caller": "0812\r\nevent: snapshot\n\ndata: {}"}, "e-1")
    assert raw.endswith(b"\n\n") and raw.count(b"\n\n") == 1
    lines = raw.decode().rstrip("\n").split("\n")
    assert lines[0] == "event: delta" and lines[1] == "id: e-1"
    assert len(lines) == 3 and json.loads(lines[2][6:])["caller"].startswith("0812\r\n")
    with pytest.raises(ValueError):
        frame("delta\nevent: x", {})


def test_given_two_documents_when_diffed_then_only_changed_and_gone_keys() -> None:
    """A delta carries the top-level keys that changed, and those removed."""
    assert diff({"a": 1, "b": [1], "c": 3}, {"a": 1, "b": [2], "d": 4}) == (
        {"b": [2], "d": 4}, ["c"])
    assert diff(None, {"a": 1}) == ({"a": 1}, [])
    assert diff({"a": 1}, {"a": 1}) == ({}, [])


def test_given_a_logged_in_page_when_it_connects_then_snapshot_then_numbered_deltas(
        world) -> None:  # noqa: ANN001
    """The stream is text/event-stream; first a retry delay and the whole snapshot, then one
    delta per change with the next sequence number, carrying only what changed."""
    hub, board, clock, site, client = world
    stream = Stream(site, client.cookies)
    head = Response(stream.transport.value().split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n")
    assert head.status == 200
    assert head.header("content-type").startswith("text/event-stream")
    assert head.header("cache-control") == "no-store"
    frames = stream.frames()
    assert frames[0] == {"retry": "1000"}
    snap = frames[1]
    assert snap["event"] == "snapshot" and snap["id"] == f"e1-{hub.seq}"
    assert snap["data"]["views"]["wallboard"] == board
    first = snap["data"]["seq"]

    board["waiting"] = 1
    board["callers"] = [{"position": 1, "caller": "<b>0812</b>", "wait_s": 0}]
    hub.changed("wallboard")
    hub.changed("wallboard")  # two changes in one turn: one render
    clock.advance(hub.coalesce)
    board["waiting"] = 0
    hub.changed("wallboard")
    clock.advance(hub.coalesce)
    hub.changed("wallboard")  # nothing differs: no delta
    clock.advance(hub.coalesce)

    deltas = stream.events()[1:]
    assert [d["event"] for d in deltas] == ["delta", "delta"]
    assert [d["data"]["seq"] for d in deltas] == [first + 1, first + 2]
    assert [d["id"] for d in deltas] == [f"e1-{first + 1}", f"e1-{first + 2}"]
    assert deltas[0]["data"]["set"] == {"waiting": 1, "callers": board["callers"]}
    assert deltas[1]["data"]["set"] == {"waiting": 0}
    assert all(d["data"]["epoch"] == "e1" and d["data"]["view"] == "wallboard" for d in deltas)


def test_given_changes_before_a_reconnect_when_it_connects_then_its_snapshot_is_current(
        world) -> None:  # noqa: ANN001
    """A page reconnecting gets the state as it is now, numbered after every delta sent: it
    never needs (nor gets) the deltas it missed."""
    hub, board, clock, site, client = world
    first = Stream(site, client.cookies)
    board["waiting"] = 3
    hub.changed("wallboard")
    clock.advance(hub.coalesce)
    first.channel.connectionLost(Failure(ConnectionDone()))
    assert first not in hub.streams and not hub.streams
    board["waiting"] = 5
    hub.changed("wallboard")  # nobody listens: rendered when the next page connects
    second = Stream(site, client.cookies)
    snap = second.events()[0]
    assert snap["event"] == "snapshot"
    assert snap["data"]["views"]["wallboard"]["waiting"] == 5
    assert snap["data"]["seq"] == hub.seq and snap["data"]["seq"] > first.events()[-1][
        "data"]["seq"]


def test_given_an_open_stream_when_time_passes_then_a_heartbeat_comment(world) -> None:  # noqa: ANN001
    """Every 15 s a comment line keeps the stream alive (no event for the page)."""
    hub, _, clock, site, client = world
    stream = Stream(site, client.cookies)
    clock.advance(hub.heartbeat - 0.1)
    assert not [f for f in stream.frames() if "comment" in f]
    clock.advance(0.2)
    clock.advance(hub.heartbeat)
    assert [f["comment"] for f in stream.frames() if "comment" in f] == ["heartbeat"] * 2


def test_given_a_client_that_reads_nothing_when_events_pile_up_then_disconnected(
        world) -> None:  # noqa: ANN001
    """Paused by a full socket, a stream queues at most max_buffer bytes; one more closes
    the connection instead of growing the server's memory."""
    hub, board, clock, site, client = world
    hub.max_buffer = 4096
    stream = Stream(site, client.cookies)
    stream.slow()
    sent = len(stream.transport.value())
    (mine,) = hub.streams
    for i in range(200):
        board["callers"] = [{"position": 1, "caller": f"08{i:010d}", "wait_s": i}]
        hub.changed("wallboard")
        clock.advance(hub.coalesce)
        if stream.transport.disconnecting or mine.closed:
            break
        assert mine.queued_bytes <= hub.max_buffer
    assert len(stream.transport.value()) == sent  # nothing written while paused
    assert mine.closed and mine not in hub.streams and hub.dropped == 1
    assert stream.transport.disconnecting


def test_given_a_client_slow_for_a_while_when_it_drains_then_gets_every_delta_in_order(
        world) -> None:  # noqa: ANN001
    """Under the bound, a paused stream keeps its deltas and sends them in order on resume."""
    hub, board, clock, site, client = world
    stream = Stream(site, client.cookies)
    stream.slow()
    for i in range(5):
        board["waiting"] = i + 1
        hub.changed("wallboard")
        clock.advance(hub.coalesce)
    stream.drained()
    deltas = [e["data"] for e in stream.events() if e["event"] == "delta"]
    assert [d["set"]["waiting"] for d in deltas] == [1, 2, 3, 4, 5]
    assert [d["seq"] for d in deltas] == list(range(deltas[0]["seq"], deltas[0]["seq"] + 5))


def test_given_no_session_when_opening_the_stream_then_401_json(world) -> None:  # noqa: ANN001
    """Without the console session: 401 with a JSON reason, and no stream is kept."""
    hub, _, _, site, _ = world
    anonymous = Client(site)
    response = anonymous.request("GET", "/events", headers={"Accept": "text/event-stream"})
    assert response.status == 401 and response.json()["error"] == "login_required"
    forged = Client(site)
    forged.cookies = {"siaga_session": "x" * 43}
    assert forged.request("GET", "/events").status == 401
    assert not hub.streams


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "HEAD"])
def test_given_another_method_when_sent_to_the_stream_then_405_json(world, method: str) -> None:  # noqa: ANN001
    """Only GET reads the channel; anything else is a JSON 405 naming GET."""
    hub, _, _, _, client = world
    response = client.request(method, "/events")
    assert response.status == 405 and response.header("allow") == "GET"
    if method != "HEAD":
        assert response.json()["error"] == "method_not_allowed"
    assert not hub.streams


def test_given_an_open_stream_when_the_user_logs_out_then_closed_at_the_next_beat(
        world) -> None:  # noqa: ANN001
    """A stream lives only as long as its session: after logout it ends at the heartbeat."""
    hub, _, clock, site, client = world
    stream = Stream(site, client.cookies)
    assert len(hub.streams) == 1
    client.request("POST", "/logout")
    clock.advance(hub.heartbeat + 0.1)
    assert not hub.streams
    assert stream.transport.value().endswith(b"0\r\n\r\n")  # the chunked body ended


def test_given_a_view_that_fails_when_rendered_then_others_still_pushed(world) -> None:  # noqa: ANN001
    """A view raising is logged; the stream and the other views go on."""
    hub, board, clock, site, client = world
    hub.add_view("broken", lambda: 1 / 0)  # type: ignore[arg-type,return-value]
    stream = Stream(site, client.cookies)
    board["waiting"] = 9
    hub.changed()
    clock.advance(hub.coalesce)
    assert stream.events()[-1]["data"]["set"] == {"waiting": 9}


def test_given_the_incident_feed_when_an_incident_changes_then_its_latest_state_is_pushed(
        world) -> None:  # noqa: ANN001
    """The feed's listener hook feeds the ``incidents`` view: each incident once, as its
    latest event left it, newest first."""
    from dispatcher.alerts.feed import IncidentFeed
    from dispatcher.web.wallboard import incidents_document

    hub, _, clock, site, client = world
    feed = IncidentFeed(clock)
    hub.add_view("incidents", lambda: incidents_document(feed.since(0)))
    feed.listeners.append(lambda _item: hub.changed("incidents"))
    stream = Stream(site, client.cookies)
    assert stream.events()[0]["data"]["views"]["incidents"] == {"incidents": []}
    feed.publish(7, "new", "alert_received")
    feed.publish(8, "new", "button_pressed")
    clock.advance(hub.coalesce)
    feed.publish(7, "handed_to_agency", "hand_to_agency", agency="police")
    clock.advance(hub.coalesce)
    deltas = [e["data"] for e in stream.events()[1:]]
    assert len(deltas) == 2 and all(d["view"] == "incidents" for d in deltas)
    assert [(i["id"], i["state"]) for i in deltas[-1]["set"]["incidents"]] == [
        (7, "handed_to_agency"), (8, "new")]
    assert deltas[-1]["set"]["incidents"][0]["agency"] == "police"


def test_given_a_feed_listener_that_fails_when_published_then_waiters_still_woken() -> None:
    """A failing listener is logged; the feed's long-poll waiters still get the event."""
    from dispatcher.alerts.feed import IncidentFeed

    feed = IncidentFeed(task.Clock())
    feed.listeners.append(lambda _item: 1 / 0)
    got: list[Any] = []
    feed.wait(0, 30).addCallback(got.append)
    feed.publish(1, "new", "alert_received")
    assert [e["incident_id"] for e in got[0]] == [1]


def test_given_a_burst_of_changes_when_within_the_coalescing_time_then_one_render(
        world) -> None:  # noqa: ANN001
    """A hundred AMI events in a burst render the view once and send one delta."""
    hub, board, clock, site, client = world
    renders: list[int] = []

    def counted() -> dict[str, Any]:
        renders.append(1)
        return dict(board)

    hub.add_view("wallboard", counted)
    stream = Stream(site, client.cookies)
    renders.clear()
    for i in range(100):
        board["waiting"] = i
        hub.changed("wallboard")
        clock.advance(hub.coalesce / 200)
    clock.advance(hub.coalesce)
    assert len(renders) == 1
    assert [e["data"]["set"] for e in stream.events()[1:]] == [{"waiting": 99}]


def test_given_a_change_with_no_hook_when_the_refresh_comes_then_pushed_and_stop_ends_streams(
        world) -> None:  # noqa: ANN001
    """What changes with no event (the self-test's status) is pushed at the next periodic
    render; stopping the hub ends every stream cleanly."""
    hub, board, clock, site, client = world
    hub.startService()
    stream = Stream(site, client.cookies)
    board["selftest"] = {"alarm": True}
    clock.advance(hub.refresh - 0.01)
    assert len(stream.events()) == 1
    clock.advance(0.01)
    clock.advance(hub.coalesce)
    assert stream.events()[-1]["data"]["set"] == {"selftest": {"alarm": True}}, stream.frames()
    hub.stopService()
    assert not hub.streams and stream.transport.value().endswith(b"0\r\n\r\n")


def test_given_a_hub_held_at_start_when_a_page_connects_then_its_snapshot_waits_for_release(
        world) -> None:  # noqa: ANN001
    """A page connecting before the live model's first resync gets nothing but its retry
    delay, and no delta; at the release, one snapshot of what the views show then."""
    hub, board, clock, site, client = world
    hub.hold(3.0)
    hub.startService()
    stream = Stream(site, client.cookies)
    board["callers"] = [{"position": 1, "caller": "0812", "wait_s": 4}]  # the resync's news
    hub.changed("wallboard")
    clock.advance(hub.coalesce)
    assert stream.frames() == [{"retry": "1000"}] and not hub.streams
    hub.release()
    events = stream.events()
    assert [e["event"] for e in events] == ["snapshot"]
    assert events[0]["data"]["views"]["wallboard"]["callers"] == board["callers"]
    later = Stream(site, client.cookies)  # released: a new page is answered at once
    assert [e["event"] for e in later.events()] == ["snapshot"]
    clock.advance(3.0)  # the bound passing after the release changes nothing
    hub.release()
    assert len(stream.events()) == 1 and len(later.events()) == 1
    hub.stopService()


def test_given_a_hub_held_when_no_resync_comes_then_the_page_gets_its_snapshot_at_the_bound(
        world) -> None:  # noqa: ANN001
    """Asterisk down at start: no resync ever releases the hub; the page still gets its
    snapshot once the bound has passed (from the hub's start), and a page gone meanwhile
    is not written to."""
    hub, board, clock, site, client = world
    hub.hold(3.0)
    clock.advance(60.0)  # built long before the reactor runs: counted from the start
    hub.startService()
    gone = Stream(site, client.cookies)
    stream = Stream(site, client.cookies)
    gone.channel.connectionLost(Failure(ConnectionDone()))
    clock.advance(2.9)
    assert not stream.events()
    clock.advance(0.2)
    assert [e["event"] for e in stream.events()] == ["snapshot"]
    assert len(hub.streams) == 1 and hub.held is None
    assert not gone.events()
    hub.stopService()


def test_given_a_held_hub_when_stopped_then_the_waiting_pages_are_ended(world) -> None:  # noqa: ANN001
    """Stopping the server while a page waits for its snapshot ends that page's stream."""
    hub, _, clock, site, client = world
    hub.hold(3.0)
    hub.startService()
    stream = Stream(site, client.cookies)
    hub.stopService()
    assert stream.transport.value().endswith(b"0\r\n\r\n") and hub.held is None
    clock.advance(5.0)  # the bound's timer was cancelled: nothing is sent later
    assert not stream.events()


@pytest.mark.parametrize("script", ["push.js", "wallboard.js"])
def test_given_the_pages_scripts_when_read_then_pushed_values_only_ever_become_text(
        script: str) -> None:
    """What the channel pushes (caller numbers, reasons, names) reaches the page through
    ``textContent`` only: no API that parses HTML appears in the scripts that show it."""
    from importlib import resources

    source = resources.files("dispatcher.web").joinpath("static", script).read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
                 "new Function"):
        assert sink not in source, f"{script} uses {sink}"
    if script == "wallboard.js":
        assert "textContent" in source
