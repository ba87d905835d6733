"""The operators' desks carried to a node that rejoins (dispatcher.cluster.desks): what a
node whose AMI the brain lost and got back is sent, through the console's queue verbs on
that node alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from twisted.internet import defer

from dialplans import contract
from dispatcher.cluster.desks import DeskCarrier, DeskHold, desks_to_carry
from dispatcher.config.loader import load_center
from dispatcher.hotline.service import HotlineService
from pbx.ami.actions import AMIActions
from pbx.ami.errors import AMIActionError
from pbx.ami.model import LiveModel
from tests.unit.cluster.test_cluster import ev

EXAMPLE_CONFIG = Path(__file__).resolve().parents[3] / "config" / "siaga.example.yaml"
OPERATORS = ("201", "202", "203", "204")


def queue(*desks: tuple[str, str]) -> LiveModel:
    """A node's model with the queue's members: (extension, state) where state is
    "available", "logged-out" or a pause reason; every other configured operator open."""
    model = LiveModel(lambda: 0.0)
    given = dict(desks)
    for ext in OPERATORS:
        state = given.get(ext, "available")
        model.handle(ev("QueueMemberStatus", Queue=contract.QUEUE_NAME,
                        MemberName=f"Op {ext}", Interface=f"PJSIP/{ext}",
                        StateInterface=f"PJSIP/{ext}", Status="1",
                        Paused="0" if state == "available" else "1",
                        PausedReason="" if state == "available" else state))
    for ext, state in given.items():  # a member the config does not have
        if ext not in OPERATORS:
            model.handle(ev("QueueMemberStatus", Queue=contract.QUEUE_NAME, Interface=ext,
                            Paused="1", PausedReason=state))
    return model


class Link(AMIActions):
    """A node as the carrier reads it (name, whether its AMI is up, its model) with the
    AMI's verbs over a recording stand-in: what is sent to it, refused when ``refuse``."""

    def __init__(self, name: str, model: LiveModel, up: bool = True,
                 refuse: bool = False) -> None:
        self.name, self.model, self.up, self.refuse = name, model, up, refuse
        self.sent: list[tuple[str, dict[str, object]]] = []

    def send_action(self, name: str, fields: Any, timeout: float | None = None  # noqa: ANN401
                    ) -> defer.Deferred[Any]:
        self.sent.append((name, {k: v for k, v in dict(fields).items() if v is not None}))
        if self.refuse:
            return defer.fail(AMIActionError("Interface not found"))
        return defer.succeed("Success")


@pytest.fixture
def carrier_of(tmp_path: Path) -> Any:  # noqa: ANN401
    center = load_center(EXAMPLE_CONFIG, state_dir=tmp_path)
    assert tuple(op.extension for op in center.operators) == OPERATORS

    def build(*links: Link) -> DeskCarrier:
        carrier = DeskCarrier(list(links), lambda: [op.extension for op in center.operators],
                              lambda link: HotlineService(link, center))  # type: ignore[arg-type]
        for link in links:  # the brain's start: every node logs in and resyncs once
            if link.up:
                carrier.logged_in(link.name)
                carrier.resynced(link.name)
        return carrier

    return build


def rejoin(carrier: DeskCarrier, link: Link) -> dict[str, DeskHold] | None:
    """``link``'s AMI lost, back, resynced: what the carrier applied."""
    carrier.lost(link.name)
    link.up = False
    link.up = True
    carrier.logged_in(link.name)
    d = carrier.resynced(link.name)
    if d is None:
        return None
    out: list[dict[str, DeskHold]] = []
    d.addCallback(out.append)
    return out[0]


def pause(ext: str, reason: str) -> tuple[str, dict[str, object]]:
    return ("QueuePause", {"Interface": f"PJSIP/{ext}", "Paused": True,
                           "Queue": contract.QUEUE_NAME, "Reason": reason})


def test_given_201_on_a_meal_and_202_logged_out_on_a_when_b_rejoins_then_b_gets_exactly_those(
        carrier_of: Any) -> None:  # noqa: ANN401
    """Node b restarted (every desk open): it is sent the pause of 201 with the reason meal
    and the log-out of 202 (a pause with the reason logged-out, as the console's logout),
    and nothing for 203 and 204, who are available; node a is sent nothing."""
    a = Link("a", queue(("201", "meal"), ("202", contract.LOGGED_OUT_REASON)))
    b = Link("b", queue())
    carrier = carrier_of(a, b)
    b.model = queue()  # restarted: fail-open
    applied = rejoin(carrier, b)
    assert b.sent == [pause("201", "meal"), pause("202", contract.LOGGED_OUT_REASON)]
    assert applied == {"201": DeskHold("paused", "meal"), "202": DeskHold("logged out")}
    assert a.sent == []


def test_given_a_node_logging_in_for_the_first_time_when_resynced_then_nothing_is_sent(
        carrier_of: Any) -> None:  # noqa: ANN401
    """The brain's own start is no rejoin: it cannot know what a node missed."""
    a = Link("a", queue(("201", "meal")))
    b = Link("b", queue())
    carrier_of(a, b)
    assert a.sent == [] and b.sent == []


def test_given_no_other_node_up_when_b_rejoins_then_nothing_is_sent(
        carrier_of: Any) -> None:  # noqa: ANN401
    """Nothing to copy: the node's own start state stands (and a node up whose model has
    not resynced since its own login has no say either)."""
    a = Link("a", queue(("201", "meal")))
    b = Link("b", queue())
    carrier = carrier_of(a, b)
    a.up = False
    carrier.lost("a")
    assert rejoin(carrier, b) is None
    assert b.sent == []
    a.up = True
    carrier.logged_in("a")  # logged in, not resynced yet: its model is stale
    assert rejoin(carrier, b) is None
    assert b.sent == []


def test_given_nodes_that_disagree_when_c_rejoins_then_the_most_restrictive_state_wins(
        carrier_of: Any) -> None:  # noqa: ANN401
    """201 paused on a and available on b: paused; 202 paused on a, logged out on b: logged
    out; two reasons: the first node's in the topology's order. 203 and 204 stay open."""
    a = Link("a", queue(("201", "briefing"), ("202", "break"), ("203", "meal")))
    b = Link("b", queue(("202", contract.LOGGED_OUT_REASON), ("203", "technical")))
    c = Link("c", queue())
    carrier = carrier_of(a, b, c)
    assert rejoin(carrier, c) == {"201": DeskHold("paused", "briefing"),
                                  "202": DeskHold("logged out"),
                                  "203": DeskHold("paused", "meal")}
    assert [f["Interface"] for _n, f in c.sent] == ["PJSIP/201", "PJSIP/202", "PJSIP/203"]


def test_given_the_carry_would_close_the_last_open_desk_when_one_is_open_elsewhere_then_it_stays(
        ) -> None:
    """The fail-open floor: every operator is away on node a, but 201 is available on node
    b: the rejoining node keeps 201 open (the operators both agree are away are closed).
    When every other node has everyone away, the rejoining node follows them."""
    everyone_away = [("201", "meal"), ("202", "break"), ("203", contract.LOGGED_OUT_REASON),
                     ("204", "technical")]
    a = queue(*everyone_away)
    b = queue(("202", "briefing"), ("203", "meal"), ("204", "break"))  # 201 available
    carry = desks_to_carry(queue(), [a, b], OPERATORS)
    assert set(carry) == {"202", "203", "204"}
    assert carry["203"] == DeskHold("logged out")
    # Without the floor the most restrictive rule would close 201 too: it does when the
    # rejoining node keeps another desk open (a dynamic member here).
    with_helper = queue()
    with_helper.handle(ev("QueueMemberStatus", Queue=contract.QUEUE_NAME, Interface="PJSIP/290",
                          Paused="0"))
    assert set(desks_to_carry(with_helper, [a, b], OPERATORS)) == set(OPERATORS)
    # Everyone away everywhere else: the center's state, followed.
    assert set(desks_to_carry(queue(), [a, queue(*everyone_away)], OPERATORS)) == set(OPERATORS)


def test_given_a_desk_the_rejoining_node_closed_itself_when_carried_then_it_is_never_opened(
        ) -> None:
    """Only ever closes: 201 paused on the rejoining node (a code dialled there) and open
    elsewhere is left paused, with its own reason; nothing is ever unpaused. Logged out
    elsewhere is stronger than paused here: that is sent."""
    own = queue(("201", "break"), ("202", "meal"))
    other = queue(("202", contract.LOGGED_OUT_REASON), ("203", "technical"))
    assert desks_to_carry(own, [other], OPERATORS) == {
        "202": DeskHold("logged out"), "203": DeskHold("paused", "technical")}
    assert desks_to_carry(queue(("201", "meal")), [queue(("201", "break"))], OPERATORS) == {}


def test_given_hostile_values_in_the_nodes_events_when_carried_then_none_reaches_an_action(
        carrier_of: Any) -> None:  # noqa: ANN401
    """A reason that is not one of the contract's (here one that would smuggle an AMI
    header) pauses with the default reason; an interface the config does not have (read
    from an event) is never acted on. Every field sent is the config's or the contract's."""
    smuggled = "meal\r\nAction: Originate\r\nChannel: PJSIP/trunk/0900"
    a = Link("a", queue(("201", smuggled), ("PJSIP/0900;x", "meal"),
                        ("Local/666@evil", contract.LOGGED_OUT_REASON)))
    b = Link("b", queue())
    carrier = carrier_of(a, b)
    rejoin(carrier, b)
    assert b.sent == [pause("201", contract.DEFAULT_PAUSE_REASON)]
    allowed = {f"PJSIP/{ext}" for ext in OPERATORS} | set(contract.PAUSE_REASONS.values()) \
        | {contract.LOGGED_OUT_REASON, contract.QUEUE_NAME, True}
    assert all(v in allowed for _n, fields in b.sent for v in fields.values())


def test_given_a_carry_refused_by_a_node_still_loading_when_it_resyncs_again_then_it_is_sent_again(
        carrier_of: Any) -> None:  # noqa: ANN401
    """An Asterisk that took the login before its queue was loaded refuses the pause: the
    carry is tried again at the node's next resync (its FullyBooted), and once done, not
    again."""
    a = Link("a", queue(("201", "meal")))
    b = Link("b", queue())
    carrier = carrier_of(a, b)
    b.refuse = True
    assert rejoin(carrier, b) == {}
    b.refuse = False
    d = carrier.resynced("b")  # FullyBooted
    assert d is not None
    assert b.sent == [pause("201", "meal")] * 2
    b.model.handle(ev("QueueMemberPause", Queue=contract.QUEUE_NAME, Interface="PJSIP/201",
                      Paused="1", PausedReason="meal"))
    assert carrier.resynced("b") is None  # done: a later resync sends nothing
    assert carrier.carried == 1


def test_given_a_node_whose_queue_is_not_listed_yet_when_it_resyncs_then_it_waits_for_the_next(
        carrier_of: Any) -> None:  # noqa: ANN401
    """Back before its queue was loaded, the node's own desks are unknown (the floor cannot
    be judged): nothing is sent until a resync lists the queue."""
    a = Link("a", queue(("201", "meal")))
    b = Link("b", queue())
    carrier = carrier_of(a, b)
    b.model = LiveModel(lambda: 0.0)
    assert rejoin(carrier, b) is None
    assert b.sent == []
    b.model = queue()
    assert carrier.resynced("b") is not None
    assert b.sent == [pause("201", "meal")]
