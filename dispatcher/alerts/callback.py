"""Operator-first callbacks: ring an operator at the front of the queue, then dial the citizen.

For each attempt the dialer sends one AMI ``Originate`` of ``Local/operator@siaga-alerts``
(``dialplans/templates/extensions_alerts.conf.j2``): that Local channel's second half waits in
the operators' queue at ``QUEUE_PRIO`` (the front); when an operator answers, the first half
goes on to ``citizen@siaga-alerts`` and dials the citizen with the configured dial string. The
dialplan reports each stage with a ``UserEvent(SiagaAlert, Incident, Attempt, Stage)``:

* ``operator_answered`` (from the queue member's gosub, with ``Operator``),
* ``citizen_answered`` (from Dial's ``U()`` gosub on the citizen's channel),
* ``citizen_done`` with ``DialStatus`` when Dial returns.

Each is signed with the server's per-boot key (:mod:`pbx.ami.attribution`); one that is not
(a caller ID can put a whole forged event into AMI) is logged and ignored.

No operator answering the queue in ``operator_wait_seconds`` (``OriginateResponse: Failure``)
or AMI being down re-originates after ``operator_retry_interval``: an alert is never dropped for
want of an operator. A citizen who does not answer is tried ``citizen_attempts`` times,
``retry_interval`` apart, then the incident is ``unreachable``. At most ``max_active``
callbacks are in Asterisk at once; the others wait in order.

The dialer decides and sends actions; what happened is reported as incident inputs to
``report(incident_id, input, detail, operator)`` (the alert service records them). Every value
put in an action is the server's own or checked here: digits-only numbers, numeric ids, a dial
template from the administrator's config; the AMI serializer refuses CR/LF/NUL anyway.
"""

from __future__ import annotations

import re
import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from dialplans import contract
from dispatcher.alerts.incident import IncidentInput
from dispatcher.alerts.storage import CallbackJob
from pbx.ami.attribution import EventKey, key_of

__all__ = ["CallbackDialer", "DialerSettings", "citizen_dial_string"]

log = Logger(namespace="dispatcher.alerts.callback")

CONTEXT = contract.CONTEXT_ALERTS
USER_EVENT = contract.EVENT_ALERT
_NUMBER_RE = re.compile(r"^\+?[0-9]{2,20}$")
_DIAL_TEMPLATE_RE = re.compile(r"^[A-Za-z0-9/@._:+{}-]{1,200}$")
_ENDPOINT_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

Report = Callable[[int, IncidentInput, str, "str | None"], object]
CallbackState = Callable[[int, str], object]
CitizenMissed = Callable[[int], object]


class Originator(Protocol):
    """What the dialer needs of AMI (``pbx.ami.client.AMIService`` provides it)."""

    def originate(self, channel: str, **kwargs: Any) -> Any: ...  # noqa: D102


@dataclass(frozen=True)
class DialerSettings:
    """How callbacks are made. ``citizen_dial`` has ``{number}`` where the digits go."""

    citizen_dial: str = "PJSIP/{number}@trunk"
    citizen_ring_seconds: int = 30
    citizen_attempts: int = 3
    retry_interval: float = 60.0
    operator_wait_seconds: int = 600
    operator_retry_interval: float = 5.0
    queue_priority: int = 100
    max_active: int = 8

    def __post_init__(self) -> None:
        if not _DIAL_TEMPLATE_RE.match(self.citizen_dial) or "{number}" not in self.citizen_dial:
            raise ValueError("citizen_dial must hold {number} and only letters, digits and "
                             "/@._:+- (e.g. PJSIP/{number}@trunk)")
        if self.citizen_attempts < 1 or self.max_active < 1:
            raise ValueError("citizen_attempts and max_active must be at least 1")


def citizen_dial_string(template: str, number: str) -> str:
    """The Dial() target for a citizen's number; refuses anything but digits (and a +)."""
    if not _NUMBER_RE.match(number):
        raise ValueError(f"not a phone number: {number!r}")
    return template.replace("{number}", number)


@dataclass
class _Attempt:
    job: CallbackJob
    citizen_attempt: int = 1
    seq: int = 0  # originates for this incident (continues the database's count)
    phase: str = "idle"  # idle, originating, operator, talking, waiting
    action_id: str | None = None
    channel_id: str | None = None
    timer: IDelayedCall | None = None
    operator: str | None = None
    history: list[str] = field(default_factory=list)


class CallbackDialer:
    """Runs the operator-first callbacks of alert incidents (see the module docstring)."""

    def __init__(self, clock: IReactorTime, ami: Originator, settings: DialerSettings,
                 report: Report, callback_state: CallbackState,
                 citizen_missed: CitizenMissed | None = None,
                 event_key: EventKey | None = None) -> None:
        self.clock = clock
        self.ami = ami
        #: Signs the dialplan's SiagaAlert events (by default the AMI service's key): an
        #: event a caller ID forged has no valid Mac and is ignored. No key: none believed.
        self.event_key = event_key or key_of(ami) or EventKey()
        self.settings = settings
        self.report = report
        self.callback_state = callback_state
        #: ``citizen_missed(callback_id)``: the citizen left one more attempt unanswered
        #: (stored, so a restarted server goes on counting: see :meth:`resume`).
        self.citizen_missed = citizen_missed
        self.active: dict[int, _Attempt] = {}
        self.waiting: deque[CallbackJob] = deque()
        self._by_action: dict[str, int] = {}
        self._by_channel: dict[str, int] = {}
        self.stopped = False

    # -- requests ------------------------------------------------------------------------

    def submit(self, job: CallbackJob) -> None:
        """Owe ``job``'s citizen a callback: start it now, or when a slot frees."""
        if job.incident_id in self.active or any(
                w.incident_id == job.incident_id for w in self.waiting):
            return
        if not _NUMBER_RE.match(job.number):
            # Validated at the edge already; a bad stored number is a bug worth a loud log.
            log.error("incident {incident}: callback number {number!r} is not digits; "
                      "no callback", incident=job.incident_id, number=job.number)
            self.report(job.incident_id, IncidentInput.GIVE_UP, "callback number invalid", None)
            return
        if len(self.active) < self.settings.max_active:
            self._begin(job)
        else:
            self.waiting.append(job)

    def resume(self, job: CallbackJob, live_channels: list[str]) -> None:
        """Take over a callback owed since before a restart.

        ``live_channels`` are the Uniqueids of channels Asterisk has now. If one is this
        incident's callback (the process that died had originated it), the dialer follows that
        call instead of ringing an operator a second time; otherwise it starts again.
        Attempt numbers continue after the ones already counted in the database, so the dead
        process's events are never taken for the new process's.
        """
        if job.incident_id in self.active:
            return
        missed = job.citizen_no_answers
        if missed >= self.settings.citizen_attempts:
            # The previous process counted the last attempt but died before giving up.
            self.report(job.incident_id, IncidentInput.GIVE_UP,
                        f"citizen unreachable after {missed} attempts", None)
            self.callback_state(job.callback_id, "failed")
            return
        prefix = f"siaga-alert-{job.incident_id}-"
        live = [c for c in live_channels if c.startswith(prefix)]
        if not live:
            attempt = _Attempt(job, citizen_attempt=missed + 1, seq=job.attempts)
            self.active[job.incident_id] = attempt
            self.report(job.incident_id, IncidentInput.DIAL_OPERATOR,
                        "resumed after a restart", None)
            self._originate(attempt)
            return
        channel_id = live[-1]
        seq_text = channel_id[len(prefix):].split("-", 1)[0]
        seq = int(seq_text) if seq_text.isdigit() else job.attempts
        attempt = _Attempt(job, citizen_attempt=missed + 1, seq=seq, phase="originating",
                           channel_id=channel_id)
        self.active[job.incident_id] = attempt
        self._by_channel[channel_id] = job.incident_id
        log.info("incident {incident}: following callback call {channel} left by the "
                 "previous process", incident=job.incident_id, channel=channel_id)
        self.report(job.incident_id, IncidentInput.DIAL_OPERATOR,
                    f"following call {channel_id} after a restart", None)

    def cancel(self, incident_id: int) -> None:
        """Stop calling back for ``incident_id`` (the operator closed or cancelled it)."""
        self.waiting = deque(w for w in self.waiting if w.incident_id != incident_id)
        attempt = self.active.get(incident_id)
        if attempt is not None:
            self._finish(attempt)

    def stop(self) -> None:
        """Cancel every timer (the server is stopping; pending callbacks stay in the DB)."""
        self.stopped = True
        for attempt in self.active.values():
            if attempt.timer is not None and attempt.timer.active():
                attempt.timer.cancel()

    # -- after AMI was away --------------------------------------------------------------

    def in_flight(self) -> list[tuple[int, str, str]]:
        """``(incident, channel id, phase)`` of every callback whose call is in Asterisk."""
        return [(incident_id, a.channel_id, a.phase) for incident_id, a in self.active.items()
                if a.channel_id and a.phase in ("originating", "operator", "talking")]

    def check_live(self, in_flight: list[tuple[int, str, str]], live: set[str]) -> None:
        """After an AMI login: a callback call of ``in_flight`` that is not among the
        ``live`` Uniqueids ended while AMI was away, and its events were lost. An operator
        never seen answering → ring again; the citizen being dialled → that attempt counts
        as missed (a needless call beats a lost one); talking → the callback is done.
        Attempts that moved on since ``in_flight`` was taken are left alone."""
        for incident_id, channel_id, phase in in_flight:
            attempt = self.active.get(incident_id)
            if (attempt is None or attempt.channel_id != channel_id or attempt.phase != phase
                    or channel_id in live):
                continue
            log.warn("incident {incident}: callback call {channel} ended while AMI was away "
                     "({phase})", incident=incident_id, channel=channel_id, phase=phase)
            if phase == "originating":
                self.report(incident_id, IncidentInput.OPERATOR_NO_ANSWER,
                            "callback call ended while AMI was away", None)
                self._retry(attempt, self.settings.operator_retry_interval)
            elif phase == "operator":
                self._citizen_failed(attempt, "call ended while AMI was away")
            else:
                self._finish(attempt)

    # -- AMI events ----------------------------------------------------------------------

    def on_originate_response(self, event: Any) -> None:
        """``OriginateResponse``: a failure means no operator took the callback in time."""
        action_id = event.get("ActionID")
        incident_id = self._by_action.get(action_id) if action_id else None
        if incident_id is None:
            return
        attempt = self.active.get(incident_id)
        if attempt is None or attempt.action_id != action_id:
            return
        if event.get("Response") == "Success":
            return  # the operator_answered UserEvent carries the news (and who answered)
        if attempt.phase == "originating":
            reason = event.get("Reason")
            self.report(incident_id, IncidentInput.OPERATOR_NO_ANSWER,
                        f"originate failed, reason {reason}", None)
            self._retry(attempt, self.settings.operator_retry_interval)

    def on_user_event(self, event: Any) -> None:
        """``UserEvent: SiagaAlert`` from the dialplan: a stage of an attempt."""
        if event.get("UserEvent") != USER_EVENT:
            return
        stage = event.get("Stage")
        reads = {"operator_answered": ("Operator",), "citizen_done": ("DialStatus",)}
        if not self.event_key.verify(event, ("Incident", "Attempt", "Stage",
                                             *reads.get(stage, ()))):
            return
        incident_raw, seq_raw = event.get("Incident"), event.get("Attempt")
        if not incident_raw.isdigit() or not seq_raw.isdigit():
            log.warn("SiagaAlert event without numeric Incident/Attempt: {fields!r}",
                     fields=dict(getattr(event, "fields", {})))
            return
        attempt = self.active.get(int(incident_raw))
        if attempt is None or attempt.seq != int(seq_raw):
            log.info("stale SiagaAlert event for incident {incident} attempt {seq}",
                     incident=incident_raw, seq=seq_raw)
            return
        incident_id = attempt.job.incident_id
        attempt.history.append(stage)
        if stage == "operator_answered" and attempt.phase == "originating":
            operator = event.get("Operator")
            attempt.operator = operator if _ENDPOINT_RE.match(operator) else None
            attempt.phase = "operator"
            self.report(incident_id, IncidentInput.OPERATOR_ANSWERED,
                        f"operator {attempt.operator or '?'}; dialling the citizen",
                        attempt.operator)
        elif stage == "citizen_answered" and attempt.phase in ("originating", "operator"):
            attempt.phase = "talking"
            self.report(incident_id, IncidentInput.CITIZEN_ANSWERED,
                        f"attempt {attempt.citizen_attempt}", attempt.operator)
            self.callback_state(attempt.job.callback_id, "done")
        elif stage == "citizen_done":
            status = event.get("DialStatus")
            if attempt.phase == "talking" or status == "ANSWER":
                self._finish(attempt)
            elif attempt.phase in ("originating", "operator"):
                self._citizen_failed(attempt, f"dial status {status or '?'}")

    def on_hangup(self, event: Any) -> None:
        """``Hangup`` of a callback's channel while the citizen was being dialled."""
        incident_id = self._by_channel.get(event.get("Uniqueid"))
        if incident_id is None:
            return
        attempt = self.active.get(incident_id)
        if attempt is None or attempt.channel_id != event.get("Uniqueid"):
            return
        if attempt.phase == "operator":
            # The operator hung up before the citizen answered: that attempt failed.
            self._citizen_failed(attempt, "operator hung up before the citizen answered")

    # -- attempts ------------------------------------------------------------------------

    def _begin(self, job: CallbackJob) -> None:
        attempt = _Attempt(job, seq=job.attempts)
        self.active[job.incident_id] = attempt
        self.report(job.incident_id, IncidentInput.DIAL_OPERATOR,
                    "operator-first callback to " + job.number, None)
        self._originate(attempt)

    def _originate(self, attempt: _Attempt) -> None:
        attempt.timer = None
        if self.stopped or self.active.get(attempt.job.incident_id) is not attempt:
            return
        attempt.seq += 1
        attempt.phase = "originating"
        job = attempt.job
        channel_id = f"siaga-alert-{job.incident_id}-{attempt.seq}-{secrets.token_hex(4)}"
        attempt.channel_id = channel_id
        attempt.action_id = None
        self._by_channel[channel_id] = job.incident_id
        s = self.settings
        try:
            dial = citizen_dial_string(s.citizen_dial, job.number)
            d = self.ami.originate(
                f"Local/{contract.EXTEN_OPERATOR}@{CONTEXT}",
                context=CONTEXT, exten=contract.EXTEN_CITIZEN, priority=1,
                caller_id=f'"ALERT {job.incident_id}" <{job.number}>',
                variables={
                    contract.INHERIT + contract.VAR_INCIDENT: job.incident_id,
                    contract.INHERIT + contract.VAR_ATTEMPT: attempt.seq,
                    contract.INHERIT + contract.VAR_CATEGORY: "alert",
                    contract.VAR_QUEUE_PRIO: s.queue_priority,
                    contract.VAR_CITIZEN_DIAL: dial,
                    contract.VAR_CITIZEN_RING: s.citizen_ring_seconds,
                },
                channel_id=channel_id,
                originate_timeout_ms=s.operator_wait_seconds * 1000,
            )
        except Exception:
            log.failure("incident {incident}: originate could not be sent",
                        incident=job.incident_id)
            self._retry(attempt, s.operator_retry_interval)
            return
        d.addCallbacks(self._sent, self._not_sent, callbackArgs=(attempt,),
                       errbackArgs=(attempt,))

    def _sent(self, response: Any, attempt: _Attempt) -> None:
        action_id = response.get("ActionID") if response is not None else None
        if action_id:
            attempt.action_id = action_id
            self._by_action[action_id] = attempt.job.incident_id
        self.callback_state(attempt.job.callback_id, "ringing")

    def _not_sent(self, failure: Failure, attempt: _Attempt) -> None:
        log.warn("incident {incident}: originate refused ({error}); retrying in {delay} s",
                 incident=attempt.job.incident_id, error=failure.getErrorMessage(),
                 delay=self.settings.operator_retry_interval)
        if self.active.get(attempt.job.incident_id) is attempt:
            self._retry(attempt, self.settings.operator_retry_interval)

    def _citizen_failed(self, attempt: _Attempt, why: str) -> None:
        incident_id = attempt.job.incident_id
        if self.citizen_missed is not None:
            self.citizen_missed(attempt.job.callback_id)
        self.report(incident_id, IncidentInput.CITIZEN_NO_ANSWER,
                    f"attempt {attempt.citizen_attempt} of {self.settings.citizen_attempts}: "
                    + why, attempt.operator)
        if attempt.citizen_attempt >= self.settings.citizen_attempts:
            self.report(incident_id, IncidentInput.GIVE_UP,
                        f"citizen unreachable after {attempt.citizen_attempt} attempts", None)
            self.callback_state(attempt.job.callback_id, "failed")
            self._finish(attempt)
            return
        attempt.citizen_attempt += 1
        self._retry(attempt, self.settings.retry_interval)

    def _retry(self, attempt: _Attempt, delay: float) -> None:
        attempt.phase = "waiting"
        if attempt.timer is not None and attempt.timer.active():
            attempt.timer.cancel()
        if not self.stopped:
            attempt.timer = self.clock.callLater(delay, self._originate, attempt)

    def _finish(self, attempt: _Attempt) -> None:
        if attempt.timer is not None and attempt.timer.active():
            attempt.timer.cancel()
        attempt.phase = "done"
        incident_id = attempt.job.incident_id
        if self.active.get(incident_id) is attempt:
            del self.active[incident_id]
        for key in [k for k, v in self._by_action.items() if v == incident_id]:
            del self._by_action[key]
        for key in [k for k, v in self._by_channel.items() if v == incident_id]:
            del self._by_channel[key]
        while self.waiting and len(self.active) < self.settings.max_active and not self.stopped:
            self._begin(self.waiting.popleft())
