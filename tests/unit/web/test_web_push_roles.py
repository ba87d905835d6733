"""Push views per role: what a page is sent depends on who opened it.

The supervisor's floor (``desks``: every desk's caller number) reaches supervisors only;
the hand-offs and the card's actions (keyed by every call's linkedid) reach each operator
for their own calls only. The per-stream numbering (snapshot, then seq + 1 per delta that
stream is sent) holds for every stream whatever it is not sent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from twisted.internet import defer, task

from dispatcher.app import SiagaServer, build_server
from dispatcher.config import load_center
from dispatcher.credentials import ensure_credentials
from dispatcher.web.push import PushHub, supervisors_only
from dispatcher.web.sessions import Staff
from dispatcher.web.site import build_site
from pbx.ami.entities import Channel
from tests.harness import EXAMPLE_CONFIG
from tests.unit.app.test_app_builder import FakeReactor, _prepared
from tests.unit.web.test_web_console import Client
from tests.unit.web.test_web_push import Stream
from tests.unit.web.test_web_push_personal import Page

OPERATOR, OTHER, SUPERVISOR = "201", "202", "290"


def _login(site: Any, creds: Any, extension: str) -> Client:  # noqa: ANN401
    client = Client(site)
    assert client.login(extension, creds.console_passwords[extension]).status == 302
    return client


@pytest.fixture
def floor(tmp_path: Path):  # noqa: ANN201
    """A hub with a shared board for all and a ``desks`` view for supervisors; an operator's
    and a supervisor's page open."""
    center = load_center(EXAMPLE_CONFIG, state_dir=tmp_path)
    creds = ensure_credentials(center)
    clock = task.Clock()
    clock.advance(1_800_000_000)
    board: dict[str, Any] = {"waiting": 0}
    desks: dict[str, Any] = {"desks": [{"extension": OPERATOR, "caller": "0812000"}]}
    hub = PushHub(clock, epoch="e1")
    hub.add_view("wallboard", lambda: dict(board))
    hub.add_view("desks", lambda: dict(desks), audience=supervisors_only)
    site = build_site(center, creds, clock.seconds, wallboard=lambda: dict(board),
                      reports=lambda q: defer.succeed(("text/csv", "")), push=hub)
    operator = Stream(site, _login(site, creds, OPERATOR).cookies)
    supervisor = Stream(site, _login(site, creds, SUPERVISOR).cookies)
    return hub, board, desks, clock, operator, supervisor


def test_given_a_supervisors_view_when_an_operator_connects_then_not_in_the_snapshot(
        floor) -> None:  # noqa: ANN001
    """The operator's snapshot has the board and not the floor; the supervisor's has both."""
    _hub, _board, _desks, _clock, operator, supervisor = floor
    assert set(Page().read(operator).views) == {"wallboard"}
    assert set(Page().read(supervisor).views) == {"wallboard", "desks"}
    assert b"0812000" not in operator.transport.value()


def test_given_a_supervisors_view_when_it_changes_then_only_supervisors_get_the_delta_and_no_gap(
        floor) -> None:  # noqa: ANN001
    """A new caller on the floor is a delta on the supervisor's stream only; the board's
    next change follows on each stream with its own next number (no gap, nothing skipped)."""
    hub, board, desks, clock, operator, supervisor = floor
    desks["desks"] = [{"extension": OPERATOR, "caller": "0812999"}]
    hub.changed("desks")
    clock.advance(hub.coalesce)
    board["waiting"] = 3
    hub.changed("wallboard")
    clock.advance(hub.coalesce)
    assert b"0812999" not in operator.transport.value()
    mine, theirs = Page().read(operator), Page().read(supervisor)
    assert mine.views == {"wallboard": {"waiting": 3}} and mine.gaps == 0
    assert theirs.views["desks"]["desks"][0]["caller"] == "0812999" and theirs.gaps == 0
    assert theirs.views["wallboard"] == {"waiting": 3}
    for stream, count in ((operator, 1), (supervisor, 2)):
        events = stream.events()
        start = next(e["data"]["seq"] for e in events if e["event"] == "snapshot")
        assert [e["data"]["seq"] for e in events if e["event"] == "delta"] == [
            start + n for n in range(1, count + 1)]


def test_given_an_audience_that_fails_when_asked_then_the_view_is_not_sent(tmp_path: Path
                                                                           ) -> None:
    """An audience that raises sends nothing (fails closed), and a name cannot be both a
    personal and a shared view."""
    hub = PushHub(task.Clock(), epoch="e1")

    def broken(_staff: Any) -> bool:  # noqa: ANN401
        raise RuntimeError("no role")

    hub.add_view("secret", lambda: {"x": 1}, audience=broken)
    assert not hub.reaches("secret", Staff(OPERATOR, "operator"))
    assert supervisors_only(Staff(SUPERVISOR, "supervisor"))
    assert not supervisors_only(Staff(OPERATOR, "operator")) and not supervisors_only(None)
    hub.add_personal_view("mine", lambda staff: {})
    with pytest.raises(ValueError):
        hub.add_view("mine", lambda: {})


# -- the server's own views ------------------------------------------------------------------


@pytest.fixture
def server(tmp_path: Path) -> Any:  # noqa: ANN401
    """The example center's server, built (not started), with a call on 201's phone and
    another on 202's, each with a hand-off asked."""
    built = build_server(FakeReactor(), _prepared(tmp_path))
    model = built.get_model()
    for n, ext in enumerate((OPERATOR, OTHER)):
        call = f"node-170000000{n}.1"
        model.channels[call] = Channel(call, f"PJSIP/0812555000{n}-0000000{n}", call, "Up",
                                       caller_num=f"0812555000{n}")
        model.channels[f"{call}1"] = Channel(f"{call}1", f"PJSIP/{ext}-0000001{n}", call,
                                             "Up", connected_num=f"0812555000{n}")
        built.get_handoffs().requested(call, built.center.agencies[0].key, "blind")
    built.get_push().release()  # the model was filled by hand: as after its first resync
    yield built
    built.get_calllog().engine.dispose()


def _views(server: SiagaServer, extension: str) -> dict[str, Any]:
    site = server.get_site()
    creds = server.creds
    stream = Stream(site, _login(site, creds, extension).cookies)
    return Page().read(stream).views


def test_given_calls_on_two_desks_when_an_operator_connects_then_no_other_desks_caller_or_call(
        server: SiagaServer) -> None:
    """The operator's page gets no ``desks`` view (every desk's caller), and the hand-offs
    and the card's actions of their own call only: nothing of 202's call reaches 201."""
    mine = _views(server, OPERATOR)
    assert "desks" not in mine
    assert set(mine["handoffs"]) == {"node-1700000000.1"}
    assert set(mine["call_actions"]) <= {"node-1700000000.1"}
    assert "08125550001" not in repr(mine) and "node-1700000001.1" not in repr(mine)


def test_given_calls_on_two_desks_when_a_supervisor_connects_then_the_whole_floor(
        server: SiagaServer) -> None:
    """The supervisor's page has every desk with its caller (the floor is theirs)."""
    theirs = _views(server, SUPERVISOR)
    callers = {d["extension"]: (d["call"] or {}).get("caller") for d in theirs["desks"]["desks"]}
    assert callers[OPERATOR] == "08125550000" and callers[OTHER] == "08125550001"


def test_given_a_call_my_phone_left_when_its_hand_off_moves_then_i_still_see_it_and_no_one_else(
        server: SiagaServer) -> None:
    """A blind hand-off ends the operator's leg while the agency still rings: 201's page
    keeps that call's hand-offs (its phone was in the call, AMI said so), 202's never gets
    them; a stranger's phone (no staff) is not remembered at all."""
    views = server.get_console_views()
    call = "node-1700000000.1"
    views.desk_calls.on_event({"Event": "Newchannel", "Channel": "PJSIP/201-00000010",
                               "Linkedid": call})
    views.desk_calls.on_event({"Event": "Newchannel", "Channel": "PJSIP/0812-00000011",
                               "Linkedid": "node-1700000009.9"})
    server.get_model().channels.pop(f"{call}1")  # 201's leg hung up
    render = views.own_calls(server.get_handoffs().document)
    assert set(render(Staff(OPERATOR, "operator"))) == {call}
    assert call not in render(Staff(OTHER, "operator"))
    assert "0812" not in views.desk_calls.calls
    for n in range(views.desk_calls.per_desk + 5):  # bounded per phone
        views.desk_calls.on_event({"Channel": "PJSIP/201-1", "Linkedid": f"x-{n}"})
    assert len(views.desk_calls.of(OPERATOR)) == views.desk_calls.per_desk
