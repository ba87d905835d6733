"""Personal push views: the operator's own desk and call card, rendered per stream for the
member of staff whose session opened it, numbered per stream, never sent to anyone else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from twisted.internet import defer, task
from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure

from dispatcher.config import load_center
from dispatcher.credentials import ensure_credentials
from dispatcher.web.push import PushHub
from dispatcher.web.site import build_site
from tests.harness import EXAMPLE_CONFIG
from tests.unit.web.test_web_console import Client
from tests.unit.web.test_web_push import Stream


class Page:
    """What push.js does with a stream: apply the snapshot, then each delta that follows the
    last number (an older one is skipped, a gap means start over)."""

    def __init__(self) -> None:
        self.views: dict[str, dict[str, Any]] = {}
        self.seq = -1
        self.gaps = 0

    def read(self, stream: Stream) -> Page:
        for event in stream.events():
            data = event["data"]
            if event["event"] == "snapshot":
                self.views, self.seq = dict(data["views"]), data["seq"]
                continue
            if data["seq"] <= self.seq:
                continue
            if data["seq"] != self.seq + 1:
                self.gaps += 1
                continue
            doc = {**self.views.get(data["view"], {}), **data["set"]}
            for key in data["unset"]:
                doc.pop(key, None)
            self.views[data["view"]] = doc
            self.seq = data["seq"]
        return self


@pytest.fixture
def desks(tmp_path: Path):  # noqa: ANN201
    """A hub with a shared board and a personal ``desk`` view; operators 201 and 202 each
    logged in with a client of their own."""
    center = load_center(EXAMPLE_CONFIG, state_dir=tmp_path)
    creds = ensure_credentials(center)
    clock = task.Clock()
    clock.advance(1_800_000_000)
    board: dict[str, Any] = {"waiting": 0}
    cards: dict[str, dict[str, Any] | None] = {}
    hub = PushHub(clock, epoch="e1")
    hub.add_view("wallboard", lambda: dict(board))
    hub.add_personal_view("desk", lambda staff: {"extension": staff.extension,
                                                 "card": cards.get(staff.extension)})
    site = build_site(center, creds, clock.seconds, wallboard=lambda: dict(board),
                      reports=lambda q: defer.succeed(("text/csv", "")), push=hub)
    clients = {}
    for op in center.operators[:2]:
        clients[op.extension] = Client(site)
        password = creds.console_passwords[op.extension]
        assert clients[op.extension].login(op.extension, password).status == 302
    return hub, board, cards, clock, site, clients


def test_given_two_operators_when_one_phone_rings_then_only_that_operators_stream_gets_the_card(
        desks) -> None:  # noqa: ANN001
    """Each stream's snapshot holds its own member's desk; a card for 201 is a delta on 201's
    stream only, and 202's page, numbered on its own, never sees it nor a gap."""
    hub, board, cards, clock, site, clients = desks
    mine, theirs = Stream(site, clients["201"].cookies), Stream(site, clients["202"].cookies)
    assert mine.events()[0]["data"]["views"]["desk"] == {"extension": "201", "card": None}
    assert theirs.events()[0]["data"]["views"]["desk"] == {"extension": "202", "card": None}

    cards["201"] = {"linkedid": "1700.1", "caller_number": "0812555"}
    hub.changed("desk")
    clock.advance(hub.coalesce)
    board["waiting"] = 1
    hub.changed()
    clock.advance(hub.coalesce)

    assert b"0812555" in mine.transport.value()
    assert b"0812555" not in theirs.transport.value() and b"1700.1" not in theirs.transport.value()
    page, other = Page().read(mine), Page().read(theirs)
    assert page.gaps == 0 and other.gaps == 0
    assert page.views["desk"]["card"] == cards["201"] and other.views["desk"]["card"] is None
    assert page.views["wallboard"]["waiting"] == 1 == other.views["wallboard"]["waiting"]
    assert page.seq == other.seq + 1  # 201's stream had one delta more


def test_given_personal_deltas_when_the_page_reconnects_then_current_snapshot_numbered_on(
        desks) -> None:  # noqa: ANN001
    """A page that dropped its stream after personal deltas gets, on reconnecting, the card
    as it is now in its snapshot, and the deltas after it follow that snapshot's number:
    nothing stale, nothing twice, no gap."""
    hub, board, cards, clock, site, clients = desks
    first = Stream(site, clients["201"].cookies)
    cards["201"] = {"linkedid": "1700.1", "state": "ringing"}
    hub.changed("desk")
    clock.advance(hub.coalesce)
    first.channel.connectionLost(Failure(ConnectionDone()))
    cards["201"] = {"linkedid": "1700.1", "state": "talking"}
    hub.changed("desk")
    clock.advance(hub.coalesce)

    second = Stream(site, clients["201"].cookies)
    snap = second.events()[0]["data"]
    assert snap["views"]["desk"]["card"]["state"] == "talking"
    cards["201"] = None
    hub.changed("desk")
    clock.advance(hub.coalesce)
    page = Page().read(second)
    assert page.gaps == 0 and page.seq == snap["seq"] + 1
    assert page.views["desk"]["card"] is None


def test_given_two_tabs_of_one_operator_when_the_card_changes_then_one_render_and_both_told(
        desks) -> None:  # noqa: ANN001
    """Two pages of one operator cost one render per change; each gets the delta."""
    hub, board, cards, clock, site, clients = desks
    renders: list[str] = []

    def counted(staff: Any) -> dict[str, Any]:  # noqa: ANN401
        renders.append(staff.extension)
        return {"card": cards.get(staff.extension)}

    hub.personal["desk"] = counted
    tabs = [Stream(site, clients["201"].cookies) for _ in range(2)]
    renders.clear()
    cards["201"] = {"linkedid": "x"}
    hub.changed("desk")
    clock.advance(hub.coalesce)
    assert renders == ["201"]
    assert all(Page().read(tab).views["desk"]["card"] == {"linkedid": "x"} for tab in tabs)


def test_given_a_personal_view_failing_for_one_operator_when_rendered_then_the_others_go_on(
        desks) -> None:  # noqa: ANN001
    """One member's render raising is logged; the other's card and the shared views are
    still pushed."""
    hub, board, cards, clock, site, clients = desks

    def fragile(staff: Any) -> dict[str, Any]:  # noqa: ANN401
        if staff.extension == "202" and cards.get("202") == "boom":
            raise RuntimeError("broken card")
        return {"card": cards.get(staff.extension)}

    hub.personal["desk"] = fragile
    mine, theirs = Stream(site, clients["201"].cookies), Stream(site, clients["202"].cookies)
    cards["202"] = "boom"  # type: ignore[assignment]
    cards["201"] = {"linkedid": "y"}
    board["waiting"] = 4
    hub.changed()
    clock.advance(hub.coalesce)
    assert Page().read(mine).views["desk"]["card"] == {"linkedid": "y"}
    assert Page().read(theirs).views["wallboard"]["waiting"] == 4
    assert len(hub.streams) == 2


def test_given_a_personal_stream_when_its_member_logs_out_then_closed_at_the_beat(
        desks) -> None:  # noqa: ANN001
    """A stream belongs to the member it was opened for: once its session is gone it ends
    at the next heartbeat, so it never renders another member's card."""
    hub, board, cards, clock, site, clients = desks
    stream = Stream(site, clients["201"].cookies)
    clients["201"].request("POST", "/logout")
    clock.advance(hub.heartbeat + 0.1)
    assert not hub.streams
    assert stream.transport.value().endswith(b"0\r\n\r\n")


def test_given_a_name_already_shared_when_added_as_personal_then_refused(desks) -> None:  # noqa: ANN001
    """A view is either shared or personal: the same name twice would mix documents."""
    hub = desks[0]
    with pytest.raises(ValueError):
        hub.add_personal_view("wallboard", lambda staff: {})
