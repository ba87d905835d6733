"""Operator-first callbacks of alert incidents: the one dialer with the queue's policy.

The dialing itself is :class:`dispatcher.callbacks.dialer.Dialer` with
:class:`~dispatcher.callbacks.dialer.QueuePolicy` (here :class:`DialerSettings`, the name the
config uses): each attempt is one AMI ``Originate`` of ``Local/operator@siaga-alerts``
(``dialplans/templates/extensions_alerts.conf.j2``), whose second half waits in the operators'
queue at ``queue_priority`` (the front); when an operator answers, the first half goes on to
``citizen@siaga-alerts`` and dials the citizen. No operator in ``operator_wait_seconds``, or
AMI down, rings again after ``operator_retry_interval`` (an alert is never dropped for want of
an operator); a citizen who does not answer is tried ``citizen_attempts`` times,
``retry_interval`` apart, then the incident is ``unreachable``.

What is alert-specific is here: the dialplan reports each stage with a
``UserEvent(SiagaAlert, Incident, Attempt, Stage)`` (``operator_answered`` with ``Operator``,
``citizen_answered``, ``citizen_done`` with ``DialStatus``), each signed with the server's
per-boot key (:mod:`pbx.ami.attribution`; an unsigned one, which a caller ID can forge, is
ignored); and each step of the callback becomes an incident input given to
``report(incident_id, input, detail, operator)`` and a write of the ``callbacks`` row.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from dialplans import contract
from dispatcher.alerts.incident import IncidentInput
from dispatcher.callbacks.dialer import Dialer, Move, Originator
from dispatcher.callbacks.policies import Job, QueuePolicy
from dispatcher.callbacks.policies import citizen_dial_string as citizen_dial_string
from dispatcher.callbacks.states import CallbackInput, CallbackState, stored
from dispatcher.callbacks.store import CallbackJob
from pbx.ami.attribution import EventKey, key_of

__all__ = ["CallbackDialer", "DialerSettings", "citizen_dial_string"]

log = Logger(namespace="dispatcher.alerts.callback")

USER_EVENT = contract.EVENT_ALERT
_ENDPOINT_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

#: How alert callbacks are made (``citizen_dial`` has ``{number}`` where the digits go).
DialerSettings = QueuePolicy

Report = Callable[[int, IncidentInput, str, "str | None"], object]
RowState = Callable[[int, str], object]
CitizenMissed = Callable[[int], object]

# The state the callback's row takes after these moves (the others leave the row as it is:
# between attempts it stays ringing, the alert's callback being under way).
_ROW = {CallbackInput.RING_OPERATOR: CallbackState.RINGING_OPERATOR,
        CallbackInput.CITIZEN_ANSWERED: CallbackState.DONE,
        CallbackInput.GIVE_UP: CallbackState.FAILED}


class _IncidentLog:
    """The dialer's moves as incident inputs and ``callbacks`` row writes."""

    def __init__(self, report: Report, callback_state: RowState,
                 citizen_missed: CitizenMissed | None) -> None:
        self.report = report
        self.callback_state = callback_state
        self.citizen_missed = citizen_missed

    def dialling(self, job: Job, detail: str) -> None:
        self.report(job.key, IncidentInput.DIAL_OPERATOR, detail, None)

    def refused(self, job: Job, why: str) -> None:
        self.report(job.key, IncidentInput.GIVE_UP, why, None)

    def moved(self, move: Move) -> None:
        job = move.job
        assert isinstance(job, CallbackJob)
        if move.event is CallbackInput.CITIZEN_NO_ANSWER and self.citizen_missed is not None:
            # Stored, so a restarted server goes on counting (Dialer.resume).
            self.citizen_missed(job.callback_id)
        if move.event is not CallbackInput.RING_OPERATOR:
            self.report(job.key, IncidentInput(move.event.value), move.detail, move.operator)
        if move.event in _ROW:
            self.callback_state(job.callback_id, stored(_ROW[move.event]))


class CallbackDialer(Dialer):
    """The dialer of alert incidents' callbacks, keyed by incident id (module docstring)."""

    def __init__(self, clock: IReactorTime, ami: Originator, settings: DialerSettings,
                 report: Report, callback_state: RowState,
                 citizen_missed: CitizenMissed | None = None,
                 event_key: EventKey | None = None) -> None:
        super().__init__(clock, ami, _IncidentLog(report, callback_state, citizen_missed),
                         settings)
        self.settings = settings
        #: Signs the dialplan's SiagaAlert events (by default the AMI service's key): an
        #: event a caller ID forged has no valid Mac and is ignored. No key: none believed.
        self.event_key = event_key or key_of(ami) or EventKey()

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
        incident_id, seq = int(incident_raw), int(seq_raw)
        if stage == "operator_answered":
            operator = event.get("Operator")
            self.operator_answered(incident_id, seq,
                                   operator if _ENDPOINT_RE.match(operator) else None)
        elif stage == "citizen_answered":
            self.citizen_answered(incident_id, seq)
        elif stage == "citizen_done":
            self.citizen_done(incident_id, seq, event.get("DialStatus"))
