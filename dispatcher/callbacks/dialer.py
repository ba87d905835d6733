"""The one dialer: rings an operator, then the citizen, again when the policy says so.

Every callback the center makes, the hotline's and the alerts', is an AMI ``Originate`` that
rings an operator first; once an operator answers, the dialplan dials the citizen. What
differs is a :class:`Policy`:

* who is rung first (``Policy.ring``, :mod:`dispatcher.callbacks.policies`): the operator
  who chose to call back (``DeskPolicy``, the hotline's ``siaga-callback`` context), or the
  front of the operators' queue (``QueuePolicy``, the alerts' ``siaga-alerts`` context);
* how often: after no operator answered, ring again after ``operator_retry`` seconds or leave
  the callback pending for an operator; after the citizen did not answer, try again
  ``citizen_retry`` seconds later up to ``citizen_attempts`` times and then fail, or leave it
  pending (``citizen_attempts`` None: each attempt is an operator's choice);
* how many calls at once (``max_active``; the others wait in order).

The dialer decides and sends actions; each step of the callback's table
(:mod:`dispatcher.callbacks.states`) is handed to a :class:`Listener` as a :class:`Move`
(the hotline's list applies it, the alert service records it on the incident and the row).
What the dialplan reports is read by each feature from its own events and given to
:meth:`Dialer.operator_answered`, :meth:`Dialer.citizen_answered` and
:meth:`Dialer.citizen_done`; ``OriginateResponse`` and ``Hangup`` the dialer reads itself.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from dispatcher.callbacks.policies import Job, Policy
from dispatcher.callbacks.states import CallbackInput, CallbackState, IllegalMove, next_state

__all__ = ["Dialer", "Listener", "Move"]

log = Logger(namespace="dispatcher.callbacks.dialer")

In = CallbackInput


class Originator(Protocol):
    """What the dialer needs of AMI (``pbx.ami.client.AMIService`` provides it)."""

    def originate(self, channel: str, **kwargs: Any) -> Any: ...  # noqa: D102

@dataclass(frozen=True)
class Move:
    """A step of callback ``key`` in the state table, with what the incident log says."""

    key: int
    job: Job | None  # None: a result for a callback this dialer is not following
    event: CallbackInput
    detail: str = ""
    operator: str | None = None
    linkedid: str | None = None


class Listener(Protocol):
    """Where the dialer's decisions go."""

    def dialling(self, job: Job, detail: str) -> None:
        """An attempt begins (the operator is about to be rung)."""

    def moved(self, move: Move) -> None:
        """The callback took a step of the state table."""

    def refused(self, job: Job, why: str) -> None:
        """``job`` cannot be dialled at all; nothing was sent."""


@dataclass
class _Attempt:
    job: Job
    policy: Policy
    citizen_attempt: int = 1
    seq: int = 0  # originates for this callback (continues the database's count)
    phase: str = "idle"  # idle, originating, operator, talking, waiting, done
    state: CallbackState = CallbackState.PENDING
    action_id: str | None = None
    channel_id: str | None = None
    timer: IDelayedCall | None = None
    operator: str | None = None
    sent: defer.Deferred[Any] | None = None  # fires with the originate's response


class Dialer:
    """Runs callbacks by their policies (see the module docstring). ``policy`` is the
    default one (:meth:`submit`); :meth:`ring` brings its own for one callback. ``clock``
    times the retries (None: for policies that never retry)."""

    def __init__(self, clock: IReactorTime | None, ami: Originator, listener: Listener,
                 policy: Policy | None = None) -> None:
        self.clock = clock
        self.ami = ami
        self.listener = listener
        self.policy = policy
        self.active: dict[int, _Attempt] = {}
        self.waiting: deque[Job] = deque()
        self._by_action: dict[str, int] = {}
        self._by_channel: dict[str, int] = {}
        self.stopped = False

    # -- requests ------------------------------------------------------------------------

    def submit(self, job: Job) -> None:
        """Owe ``job``'s citizen a callback by the default policy: start it now, or when
        a slot frees."""
        assert self.policy is not None, "submit needs a default policy"
        if job.key in self.active or any(w.key == job.key for w in self.waiting):
            return
        why = self.policy.check(job)
        if why is not None:
            log.error("callback {key}: {why} ({number!r}); not dialled", key=job.key, why=why,
                      number=job.number)
            self.listener.refused(job, why)
            return
        limit = self.policy.max_active
        if limit is None or len(self.active) < limit:
            self._begin(job, self.policy)
        else:
            self.waiting.append(job)

    def ring(self, job: Job, policy: Policy) -> defer.Deferred[Any]:
        """One attempt now by ``policy``: fires with the originate's response once Asterisk
        took it (the callback is then ringing), fails when it was refused or not sent (the
        callback is as it was). Nothing is sent when ``policy.ring`` raises."""
        if self.stopped:
            return defer.fail(RuntimeError("the dialer is stopped"))
        if job.key in self.active:
            return defer.fail(ValueError(f"callback {job.key} is already being dialled"))
        attempt = _Attempt(job, policy, seq=job.attempts)
        sent = attempt.sent = defer.Deferred()
        self.active[job.key] = attempt
        try:
            self._originate(attempt)
        except Exception:
            self._finish(attempt)
            return defer.fail()
        return sent

    def resume(self, job: Job, live_channels: list[str]) -> None:
        """Take over a callback owed since before a restart, by the default policy.

        ``live_channels`` are the Uniqueids of channels Asterisk has now. If one is this
        callback's call (the process that died had originated it), the dialer follows that
        call instead of ringing an operator a second time; otherwise it starts again.
        Attempt numbers continue after the ones already counted in the database, so the dead
        process's events are never taken for the new process's.
        """
        policy = self.policy
        assert policy is not None, "resume needs a default policy"
        if job.key in self.active:
            return
        missed = job.citizen_no_answers
        if policy.citizen_attempts is not None and missed >= policy.citizen_attempts:
            # The previous process counted the last attempt but died before giving up.
            self._move(job.key, job, In.GIVE_UP, f"citizen unreachable after {missed} attempts")
            return
        prefix = policy.channel_prefix(job.key)
        live = [c for c in live_channels if prefix and c.startswith(prefix)]
        if not live:
            attempt = _Attempt(job, policy, citizen_attempt=missed + 1, seq=job.attempts)
            self.active[job.key] = attempt
            self.listener.dialling(job, "resumed after a restart")
            self._originate(attempt)
            return
        channel_id = live[-1]
        seq_text = channel_id[len(prefix or ""):].split("-", 1)[0]
        seq = int(seq_text) if seq_text.isdigit() else job.attempts
        attempt = _Attempt(job, policy, citizen_attempt=missed + 1, seq=seq,
                           phase="originating", channel_id=channel_id,
                           state=CallbackState.RINGING_OPERATOR)
        self.active[job.key] = attempt
        self._by_channel[channel_id] = job.key
        log.info("callback {key}: following call {channel} left by the previous process",
                 key=job.key, channel=channel_id)
        self.listener.dialling(job, f"following call {channel_id} after a restart")

    def cancel(self, key: int) -> None:
        """Stop calling back for ``key`` (the operator closed or cancelled its case)."""
        self.waiting = deque(w for w in self.waiting if w.key != key)
        attempt = self.active.get(key)
        if attempt is not None:
            self._finish(attempt)

    def stop(self) -> None:
        """Cancel every timer (the server is stopping; owed callbacks stay in the DB)."""
        self.stopped = True
        for attempt in self.active.values():
            if attempt.timer is not None and attempt.timer.active():
                attempt.timer.cancel()

    # -- after AMI was away --------------------------------------------------------------

    def in_flight(self) -> list[tuple[int, str, str]]:
        """``(key, channel id, phase)`` of every callback whose call is in Asterisk."""
        return [(key, a.channel_id, a.phase) for key, a in self.active.items()
                if a.channel_id and a.phase in ("originating", "operator", "talking")]

    def check_live(self, in_flight: list[tuple[int, str, str]], live: set[str]) -> None:
        """After an AMI login: a callback call of ``in_flight`` that is not among the
        ``live`` Uniqueids ended while AMI was away, and its events were lost. An operator
        never seen answering → ring again; the citizen being dialled → that attempt counts
        as missed (a needless call beats a lost one); talking → the callback is done.
        Attempts that moved on since ``in_flight`` was taken are left alone."""
        for key, channel_id, phase in in_flight:
            attempt = self.active.get(key)
            if (attempt is None or attempt.channel_id != channel_id or attempt.phase != phase
                    or channel_id in live):
                continue
            log.warn("callback {key}: its call {channel} ended while AMI was away ({phase})",
                     key=key, channel=channel_id, phase=phase)
            if phase == "originating":
                self._operator_failed(attempt, "callback call ended while AMI was away")
            elif phase == "operator":
                self._citizen_failed(attempt, "call ended while AMI was away")
            else:
                self._finish(attempt)

    # -- what Asterisk says --------------------------------------------------------------

    def on_originate_response(self, event: Any) -> int | None:
        """``OriginateResponse``: a failure means no operator took the callback in time.
        The key of the callback it moved, if any."""
        action_id = event.get("ActionID")
        key = self._by_action.get(action_id) if action_id else None
        if key is None:
            return None
        attempt = self.active.get(key)
        if attempt is None or attempt.action_id != action_id:
            return None
        if event.get("Response") == "Success":
            return None  # the dialplan's events carry the news (and who answered)
        if attempt.phase == "originating":
            self._operator_failed(attempt, f"originate failed, reason {event.get('Reason')}")
            return key
        return None

    def on_hangup(self, event: Any) -> None:
        """``Hangup`` of a callback's channel while the citizen was being dialled."""
        key = self._by_channel.get(event.get("Uniqueid"))
        attempt = self.active.get(key) if key is not None else None
        if attempt is None or attempt.channel_id != event.get("Uniqueid"):
            return
        if attempt.phase == "operator":
            # The operator hung up before the citizen answered: that attempt failed.
            self._citizen_failed(attempt, "operator hung up before the citizen answered")

    def _current(self, key: int, seq: int | None) -> _Attempt | None:
        attempt = self.active.get(key)
        if attempt is not None and seq is not None and attempt.seq != seq:
            log.info("stale event for callback {key} attempt {seq}", key=key, seq=seq)
            return None
        return attempt

    def operator_answered(self, key: int, seq: int | None, operator: str | None) -> None:
        """The dialplan says an operator took attempt ``seq`` and the citizen is dialled."""
        attempt = self._current(key, seq)
        if attempt is None or attempt.phase != "originating":
            return
        attempt.operator = operator
        attempt.phase = "operator"
        self._step(attempt, In.OPERATOR_ANSWERED,
                   f"operator {operator or '?'}; dialling the citizen", operator)

    def citizen_answered(self, key: int, seq: int | None, linkedid: str | None = None) -> None:
        """The citizen picked up: the callback is done (the call goes on)."""
        attempt = self._current(key, seq)
        if attempt is None or attempt.phase not in ("originating", "operator"):
            return
        attempt.phase = "talking"
        self._step(attempt, In.CITIZEN_ANSWERED, f"attempt {attempt.citizen_attempt}",
                   attempt.operator, linkedid)

    def citizen_done(self, key: int, seq: int | None, status: str | None,
                     linkedid: str | None = None) -> None:
        """Dial() to the citizen returned with ``status`` (the call is over). A dialplan
        that numbers no attempts (``seq`` None) may settle a callback this dialer is not
        following (one rung before it knew of it): the listener gets the move alone."""
        attempt = self._current(key, seq)
        if attempt is None:
            if seq is None:
                event = In.CITIZEN_ANSWERED if status == "ANSWER" else In.CITIZEN_NO_ANSWER
                self._move(key, None, event, f"dial status {status or '?'}", None, linkedid)
            return
        if attempt.phase == "talking":
            self._finish(attempt)
        elif status == "ANSWER" and attempt.phase in ("originating", "operator"):
            self.citizen_answered(key, seq, linkedid)
            self._finish(attempt)
        elif attempt.phase in ("originating", "operator"):
            self._citizen_failed(attempt, f"dial status {status or '?'}", linkedid)

    # -- attempts ------------------------------------------------------------------------

    def _begin(self, job: Job, policy: Policy) -> None:
        attempt = _Attempt(job, policy, seq=job.attempts)
        self.active[job.key] = attempt
        self.listener.dialling(job, "operator-first callback to " + job.number)
        self._originate(attempt)

    def _originate(self, attempt: _Attempt) -> None:
        attempt.timer = None
        if self.stopped or self.active.get(attempt.job.key) is not attempt:
            return
        attempt.seq += 1
        attempt.phase = "originating"
        attempt.action_id = None
        job = attempt.job
        try:
            ring = attempt.policy.ring(job, attempt.seq)
        except Exception:
            if attempt.sent is not None:
                raise  # an operator's request (ring): the refusal goes back to them
            log.failure("callback {key}: its originate could not be made", key=job.key)
            self._retry(attempt, attempt.policy.operator_retry or 0.0)
            return
        attempt.channel_id = ring.channel_id
        if ring.channel_id:
            self._by_channel[ring.channel_id] = job.key
        try:
            d = self.ami.originate(
                ring.channel, context=ring.context, exten=ring.exten, priority=1,
                caller_id=ring.caller_id, variables=dict(ring.variables),
                channel_id=ring.channel_id, originate_timeout_ms=ring.timeout_ms)
        except Exception:
            log.failure("callback {key}: originate could not be sent", key=job.key)
            self._not_sent(Failure(), attempt)
            return
        d.addCallbacks(self._sent, self._not_sent, callbackArgs=(attempt,),
                       errbackArgs=(attempt,))

    def _sent(self, response: Any, attempt: _Attempt) -> None:
        action_id = response.get("ActionID") if response is not None else None
        if action_id:
            attempt.action_id = action_id
            self._by_action[action_id] = attempt.job.key
        self._step(attempt, In.RING_OPERATOR)
        sent, attempt.sent = attempt.sent, None
        if sent is not None:
            sent.callback(response)

    def _not_sent(self, failure: Failure, attempt: _Attempt) -> None:
        retry = attempt.policy.operator_retry
        log.warn("callback {key}: originate refused ({error}); {then}",
                 key=attempt.job.key, error=failure.getErrorMessage(),
                 then="the callback stays pending" if retry is None
                 else f"retrying in {retry} s")
        sent, attempt.sent = attempt.sent, None
        if self.active.get(attempt.job.key) is attempt:
            if retry is None:
                self._finish(attempt)
            else:
                self._retry(attempt, retry)
        if sent is not None:
            sent.errback(failure)

    def _operator_failed(self, attempt: _Attempt, why: str) -> None:
        self._step(attempt, In.OPERATOR_NO_ANSWER, why)
        retry = attempt.policy.operator_retry
        if retry is None:
            self._finish(attempt)
        else:
            self._retry(attempt, retry)

    def _citizen_failed(self, attempt: _Attempt, why: str, linkedid: str | None = None) -> None:
        limit = attempt.policy.citizen_attempts
        of = f" of {limit}" if limit is not None else ""
        self._step(attempt, In.CITIZEN_NO_ANSWER,
                   f"attempt {attempt.citizen_attempt}{of}: {why}", attempt.operator, linkedid)
        if limit is None:
            self._finish(attempt)  # an operator chooses when to try again
            return
        if attempt.citizen_attempt >= limit:
            self._step(attempt, In.GIVE_UP,
                       f"citizen unreachable after {attempt.citizen_attempt} attempts")
            self._finish(attempt)
            return
        attempt.citizen_attempt += 1
        self._retry(attempt, attempt.policy.citizen_retry)

    def _step(self, attempt: _Attempt, event: CallbackInput, detail: str = "",
              operator: str | None = None, linkedid: str | None = None) -> None:
        # The table first: a pair it refuses (an event out of order: a call that ended
        # unseen before Asterisk confirmed its originate) is logged and goes no further.
        try:
            attempt.state = next_state(attempt.state, event)
        except IllegalMove as exc:
            log.error("callback {key}: {error}; {detail}", key=attempt.job.key, error=exc,
                      detail=detail or event.value)
            return
        self._move(attempt.job.key, attempt.job, event, detail, operator, linkedid)

    def _move(self, key: int, job: Job | None, event: CallbackInput, detail: str = "",
              operator: str | None = None, linkedid: str | None = None) -> None:
        self.listener.moved(Move(key, job, event, detail, operator, linkedid))

    def _retry(self, attempt: _Attempt, delay: float) -> None:
        attempt.phase = "waiting"
        if attempt.timer is not None and attempt.timer.active():
            attempt.timer.cancel()
        if self.clock is None:
            raise RuntimeError("a policy that retries needs a dialer with a clock")
        if not self.stopped:
            attempt.timer = self.clock.callLater(delay, self._originate, attempt)

    def _finish(self, attempt: _Attempt) -> None:
        if attempt.timer is not None and attempt.timer.active():
            attempt.timer.cancel()
        attempt.phase = "done"
        key = attempt.job.key
        if self.active.get(key) is attempt:
            del self.active[key]
        for k in [k for k, v in self._by_action.items() if v == key]:
            del self._by_action[k]
        for k in [k for k, v in self._by_channel.items() if v == key]:
            del self._by_channel[k]
        limit = self.policy.max_active if self.policy is not None else None
        while self.waiting and not self.stopped and (limit is None or len(self.active) < limit):
            job = self.waiting.popleft()
            assert self.policy is not None
            self._begin(job, self.policy)
