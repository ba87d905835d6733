"""An operator's own pause repeated on the other nodes (dispatcher.cluster.pauses): what each
node's QueueMemberPause makes the brain send, through the console's queue verbs on one node
at a time, and what it must never send (its own echoes, hostile fields)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dialplans import contract
from dispatcher.cluster.pauses import ECHO_SECONDS, PauseMirror
from dispatcher.config.loader import load_center
from dispatcher.hotline.service import HotlineService
from tests.unit.cluster.test_cluster import ev
from tests.unit.cluster.test_desks import EXAMPLE_CONFIG, OPERATORS, Link, pause, queue


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def mirror_of(tmp_path: Path, clock: Clock) -> Any:  # noqa: ANN401
    center = load_center(EXAMPLE_CONFIG, state_dir=tmp_path)
    assert tuple(op.extension for op in center.operators) == OPERATORS

    def build(*links: Link) -> PauseMirror:
        return PauseMirror(list(links), lambda: [op.extension for op in center.operators],
                           lambda link: HotlineService(link, center),  # type: ignore[arg-type]
                           clock)

    return build


def paused_event(ext: str, reason: str | None) -> dict[str, str]:
    """A node's QueueMemberPause: ``reason`` None for an unpause (Asterisk then reports the
    reason the unpause gave)."""
    return ev("QueueMemberPause", Queue=contract.QUEUE_NAME, MemberName=f"Op {ext}",
              Interface=f"PJSIP/{ext}", Paused="0" if reason is None else "1",
              PausedReason=contract.AVAILABLE_REASON if reason is None else reason)


def unpause(ext: str) -> tuple[str, dict[str, object]]:
    return ("QueuePause", {"Interface": f"PJSIP/{ext}", "Paused": False,
                           "Queue": contract.QUEUE_NAME, "Reason": contract.AVAILABLE_REASON})


def test_given_a_code_dialled_on_a_when_a_reports_the_pause_then_b_and_c_are_paused_alike(
        mirror_of: Any) -> None:  # noqa: ANN401
    """*462 on node a (meal): nodes b and c get the same pause, node a nothing."""
    a, b, c = Link("a", queue(("201", "meal"))), Link("b", queue()), Link("c", queue())
    mirror = mirror_of(a, b, c)
    mirror.event("a", paused_event("201", "meal"))
    assert (a.sent, b.sent, c.sent) == ([], [pause("201", "meal")], [pause("201", "meal")])
    assert mirror.repeated == 2


def test_given_the_repeats_when_their_echoes_come_back_then_nothing_more_is_sent(
        mirror_of: Any) -> None:  # noqa: ANN401
    """Each node answers a pause with its own event: the echo of a repeat is not a change
    of that node's, so it is not repeated back (no ping-pong between nodes)."""
    a, b = Link("a", queue(("201", "meal"))), Link("b", queue())
    mirror = mirror_of(a, b)
    mirror.event("a", paused_event("201", "meal"))
    b.model.handle(paused_event("201", "meal"))
    mirror.event("b", paused_event("201", "meal"))
    assert (a.sent, b.sent) == ([], [pause("201", "meal")])


def test_given_a_pause_and_back_within_an_echo_when_the_late_echo_comes_then_a_stays_open(
        mirror_of: Any) -> None:  # noqa: ANN401
    """The race a comparison of states loses: the operator pauses on a and is back at once,
    before b's echo of the pause arrived. Both changes reach b in order, and b's late echo
    of the pause is never sent back to a (which would leave the operator paused there)."""
    a, b = Link("a", queue()), Link("b", queue())
    mirror = mirror_of(a, b)
    mirror.event("a", paused_event("201", "break"))
    mirror.event("a", paused_event("201", None))  # back, b's model still says open
    assert b.sent == [pause("201", "break"), unpause("201")]
    b.model.handle(paused_event("201", "break"))
    mirror.event("b", paused_event("201", "break"))  # the late echoes, in order
    b.model.handle(paused_event("201", None))
    mirror.event("b", paused_event("201", None))
    assert a.sent == []


def test_given_a_console_pause_sent_to_every_node_when_their_events_come_then_none_is_repeated(
        mirror_of: Any) -> None:  # noqa: ANN401
    """A console pause reaches every node itself: a node whose state already matches (and
    from which no echo is awaited) is not sent it again."""
    a, b = Link("a", queue(("202", "briefing"))), Link("b", queue(("202", "briefing")))
    mirror = mirror_of(a, b)
    mirror.event("a", paused_event("202", "briefing"))
    mirror.event("b", paused_event("202", "briefing"))
    assert (a.sent, b.sent) == ([], [])


def test_given_a_logout_code_when_repeated_then_the_others_log_the_operator_out(
        mirror_of: Any) -> None:  # noqa: ANN401
    """*45 on a: logged out (the contract's reason) on b too; *45 again: back on b."""
    a, b = Link("a", queue()), Link("b", queue())
    mirror = mirror_of(a, b)
    mirror.event("a", paused_event("203", contract.LOGGED_OUT_REASON))
    b.model.handle(paused_event("203", contract.LOGGED_OUT_REASON))
    mirror.event("b", paused_event("203", contract.LOGGED_OUT_REASON))
    mirror.event("a", paused_event("203", None))
    assert b.sent == [pause("203", contract.LOGGED_OUT_REASON), unpause("203")]


def test_given_a_node_down_when_a_pause_is_repeated_then_it_is_not_asked(
        mirror_of: Any) -> None:  # noqa: ANN401
    """A node whose AMI is lost is skipped (the desk carrier brings it the pause when it
    rejoins)."""
    a, b = Link("a", queue()), Link("b", queue(), up=False)
    mirror_of(a, b).event("a", paused_event("201", "technical"))
    assert b.sent == []


def test_given_hostile_fields_when_an_event_comes_then_nothing_of_them_reaches_an_action(
        mirror_of: Any) -> None:  # noqa: ANN401
    """An interface that is not a configured operator, another queue, or a reason that is
    not the contract's (CR/LF included): never sent as it came."""
    a, b = Link("a", queue()), Link("b", queue())
    mirror = mirror_of(a, b)
    mirror.event("a", ev("QueueMemberPause", Queue=contract.QUEUE_NAME,
                         Interface="PJSIP/999\r\nAction: Originate", Paused="1",
                         PausedReason="x"))
    mirror.event("a", ev("QueueMemberPause", Queue="other", Interface="PJSIP/201",
                         Paused="1", PausedReason="meal"))
    assert b.sent == []
    mirror.event("a", paused_event("204", "meal\r\nAction: Hangup"))
    assert b.sent == [pause("204", contract.DEFAULT_PAUSE_REASON)]


def test_given_a_repeat_refused_when_the_code_comes_again_then_it_is_sent_again(
        mirror_of: Any) -> None:  # noqa: ANN401
    """A node that refused a repeat sends no echo: nothing stays expected from it."""
    a, b = Link("a", queue()), Link("b", queue(), refuse=True)
    mirror = mirror_of(a, b)
    mirror.event("a", paused_event("201", "meal"))
    b.refuse = False
    mirror.event("a", paused_event("201", None))
    mirror.event("a", paused_event("201", "meal"))
    assert b.sent == [pause("201", "meal"), pause("201", "meal")]


def test_given_an_echo_that_never_came_when_the_node_changes_later_then_it_is_repeated(
        mirror_of: Any, clock: Clock) -> None:  # noqa: ANN401
    """An expected echo is forgotten after ECHO_SECONDS: a later change the node made
    itself, equal to the lost echo, is a change and goes to the others."""
    a, b = Link("a", queue()), Link("b", queue())
    mirror = mirror_of(a, b)
    mirror.event("a", paused_event("201", "meal"))  # b's echo is lost
    clock.now += ECHO_SECONDS + 1
    mirror.event("b", paused_event("201", "meal"))  # b's own change, much later
    assert a.sent == [pause("201", "meal")]
