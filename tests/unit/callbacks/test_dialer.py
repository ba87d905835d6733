"""One dialer for every callback: the policies differ in who is rung and how often."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from twisted.internet import defer, task

from dispatcher.config.loader import load_center
from dispatcher.hotline import CallbackList, HotlineService
from dispatcher.hotline.callbacks import ABANDONED, MissedCall
from tests.harness import EXAMPLE_CONFIG
from tests.unit.hotline.test_hotline_service import fired


class Ami:
    """Takes every Originate (ActionID 1, 2, ...) and remembers it."""

    def __init__(self) -> None:
        self.originates: list[tuple[str, dict[str, Any]]] = []

    def originate(self, channel: str, **kwargs: Any) -> defer.Deferred[Any]:
        """Accepted at once."""
        self.originates.append((channel, kwargs))
        return defer.succeed({"Response": "Success", "ActionID": str(len(self.originates))})

    def send_action(self, name: str, fields: Any = (), timeout: float | None = None) -> Any:
        """Nothing else is expected of AMI here."""
        raise AssertionError(f"unexpected action {name}")


class Moves:
    """A Listener that writes down what it hears."""

    def __init__(self) -> None:
        self.heard: list[tuple[str, int, str]] = []

    def dialling(self, job: Any, detail: str) -> None:
        """An attempt begins."""
        self.heard.append(("dialling", job.key, detail))

    def moved(self, move: Any) -> None:
        """A step of the table."""
        self.heard.append((move.event.value, move.key, move.detail))

    def refused(self, job: Any, why: str) -> None:
        """Not dialled."""
        self.heard.append(("refused", job.key, why))


def test_given_no_operator_answering_when_each_policy_then_queue_rings_again_desk_waits(
        ) -> None:
    """The queue's policy rings the queue again after ``operator_retry_interval``; the
    desk's leaves the callback pending for an operator and sends nothing more."""
    from dispatcher.callbacks.dialer import Dialer
    from dispatcher.callbacks.policies import DeskPolicy, QueuePolicy
    from dispatcher.callbacks.store import CallbackJob

    clock, ami, moves = task.Clock(), Ami(), Moves()
    queue = QueuePolicy(citizen_dial="PJSIP/{number}", operator_retry_interval=5.0)
    dialer = Dialer(clock, ami, moves, queue)
    dialer.submit(CallbackJob(callback_id=3, incident_id=7, number="0812", attempts=0))
    desk = DeskPolicy("PJSIP/201", "PJSIP/0899@trunk")
    dialer.ring(CallbackJob(callback_id=4, incident_id=8, number="0899", attempts=0), desk)
    assert [(c, kw["context"]) for c, kw in ami.originates] == [
        ("Local/operator@siaga-alerts", "siaga-alerts"), ("PJSIP/201", "siaga-callback")]
    for action_id in ("1", "2"):
        dialer.on_originate_response({"ActionID": action_id, "Response": "Failure",
                                      "Reason": "0"})
    clock.advance(5.0)
    assert [c for c, _ in ami.originates] == ["Local/operator@siaga-alerts", "PJSIP/201",
                                              "Local/operator@siaga-alerts"]
    assert [h for h in moves.heard if h[1] == 8] == [
        ("ring_operator", 8, ""), ("operator_no_answer", 8, "originate failed, reason 0")]
    assert 8 not in dialer.active and 7 in dialer.active


@pytest.fixture
def hotline(tmp_path: Path) -> HotlineService:
    """The hotline's service over a fake AMI, with one abandoned call owed."""
    service = HotlineService(Ami(), load_center(EXAMPLE_CONFIG, state_dir=tmp_path),  # type: ignore[arg-type]
                             CallbackList())
    service.callbacks.add(MissedCall(ABANDONED, "citizen-7", "1.1", "PJSIP/anonymous-1",
                                     "anonymous", "127.0.0.1:40000", "fire", 30.0, None), now=0)
    return service


def test_given_a_done_callback_when_a_late_no_answer_result_comes_then_it_stays_done(
        hotline: HotlineService) -> None:
    """A second ``SiagaCallbackResult`` (a replay, or the dialplan's for an older ring)
    cannot reopen a callback the citizen answered: done stays done, its result call too."""
    entry = hotline.callbacks.pending()[0]
    assert fired(hotline.call_back(entry.id, "201"))["Response"] == "Success"
    hotline.callback_result({"Callback": str(entry.id), "Status": "ANSWER", "Call": "5.5"})
    assert (entry.state, entry.result_linkedid) == ("done", "5.5")
    hotline.callback_result({"Callback": str(entry.id), "Status": "NOANSWER", "Call": "6.6"})
    assert (entry.state, entry.result_linkedid, entry.attempts) == ("done", "5.5", 1)
    assert hotline.callbacks.open_count == 0


def test_given_a_desk_callback_when_the_citizen_does_not_answer_then_pending_for_an_operator(
        hotline: HotlineService) -> None:
    """The desk's policy makes one attempt per operator's choice: no answer → pending, the
    attempt counted, nothing rung again by itself, and the operator may ring once more."""
    entry = hotline.callbacks.pending()[0]
    fired(hotline.call_back(entry.id, "201"))
    assert entry.state == "ringing"
    hotline.callback_result({"Callback": str(entry.id), "Status": "NOANSWER", "Call": "5.5"})
    assert (entry.state, entry.attempts) == ("pending", 1)
    assert hotline.dialer.active == {}
    fired(hotline.call_back(entry.id, "202"))
    assert (entry.state, entry.attempts) == ("ringing", 2)
    assert [c for c, _ in hotline.ami.originates] == ["PJSIP/201", "PJSIP/202"]  # type: ignore[attr-defined]


class SilentAmi(Ami):
    """Takes every Originate and never answers it (AMI went away before the response)."""

    def originate(self, channel: str, **kwargs: Any) -> defer.Deferred[Any]:
        """Never fires."""
        self.originates.append((channel, kwargs))
        return defer.Deferred()


def test_given_a_call_gone_before_its_originate_was_confirmed_then_rung_again_no_false_step(
        ) -> None:
    """The callback's call vanished while AMI was away and Asterisk never confirmed its
    originate: the queue's policy rings again, and the table's refusal (nobody was rung as
    far as the callback knows) is logged, not turned into a step or an exception."""
    from dispatcher.callbacks.dialer import Dialer
    from dispatcher.callbacks.policies import QueuePolicy
    from dispatcher.callbacks.store import CallbackJob

    clock, ami, moves = task.Clock(), SilentAmi(), Moves()
    dialer = Dialer(clock, ami, moves, QueuePolicy(citizen_dial="PJSIP/{number}",
                                                   operator_retry_interval=5.0))
    dialer.submit(CallbackJob(callback_id=3, incident_id=7, number="0812", attempts=0))
    in_flight = dialer.in_flight()
    assert [(key, phase) for key, _, phase in in_flight] == [(7, "originating")]
    dialer.check_live(in_flight, live=set())
    clock.advance(5.0)
    assert len(ami.originates) == 2
    assert [h[0] for h in moves.heard] == ["dialling"]
