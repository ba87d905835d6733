"""Who a callback rings first and how often: the dialer's policies.

* :class:`QueuePolicy` (alerts): the front of the operators' queue (``Local/operator@siaga-alerts``
  at ``queue_priority``), then the citizen with ``citizen_dial``; no operator → ring again after
  ``operator_retry_interval``, never dropped; a citizen who does not answer is tried
  ``citizen_attempts`` times, ``retry_interval`` apart, then the callback fails.
* :class:`DeskPolicy` (hotline): the desk of the operator who chose to call back, then the
  way the citizen came in; one attempt per choice, the callback waits for an operator after it.

Every value put in an action is the server's own or checked here: digits-only numbers,
numeric ids, a dial template from the administrator's config; the AMI serializer refuses
CR/LF/NUL anyway.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from dialplans import contract

__all__ = ["DeskPolicy", "Job", "Policy", "QueuePolicy", "Ring", "citizen_dial_string"]

_NUMBER_RE = re.compile(r"^\+?[0-9]{2,20}$")
_DIAL_TEMPLATE_RE = re.compile(r"^[A-Za-z0-9/@._:+{}-]{1,200}$")


class Job(Protocol):
    """A callback to make: ``key`` names it in the dialplan's events and to the listener."""

    @property
    def key(self) -> int: ...  # noqa: D102

    @property
    def number(self) -> str: ...  # noqa: D102

    @property
    def attempts(self) -> int: ...  # noqa: D102 (originates counted so far)

    @property
    def citizen_no_answers(self) -> int: ...  # noqa: D102


@dataclass(frozen=True)
class Ring:
    """One originate: the operator's side rung first, what the dialplan needs for the rest."""

    channel: str
    context: str
    exten: str
    caller_id: str
    variables: Mapping[str, object]
    timeout_ms: int
    channel_id: str | None = None  # ours to choose: found again after a restart


class Policy(Protocol):
    """Who is rung first, and how often (see the module docstring)."""

    max_active: int | None
    operator_retry: float | None
    citizen_retry: float
    citizen_attempts: int | None

    def channel_prefix(self, key: int) -> str | None:
        """What this policy's channel ids for ``key`` start with (None: its calls are not
        named, and a restarted server cannot follow them)."""

    def check(self, job: Job) -> str | None:
        """Why ``job`` cannot be dialled at all, or None."""

    def ring(self, job: Job, seq: int) -> Ring:
        """The originate of attempt ``seq``; raises (ValueError and kin) to send nothing."""


def citizen_dial_string(template: str, number: str) -> str:
    """The Dial() target for a citizen's number; refuses anything but digits (and a +)."""
    if not _NUMBER_RE.match(number):
        raise ValueError(f"not a phone number: {number!r}")
    return template.replace("{number}", number)


@dataclass(frozen=True)
class QueuePolicy:
    """Alerts: the front of the operators' queue, then the citizen with ``citizen_dial``
    (``{number}`` where the digits go); never dropped for want of an operator, the citizen
    tried ``citizen_attempts`` times ``retry_interval`` apart."""

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

    @property
    def operator_retry(self) -> float:
        """No operator took it: ring the queue again this soon."""
        return self.operator_retry_interval

    @property
    def citizen_retry(self) -> float:
        """The citizen did not answer: the next attempt this much later."""
        return self.retry_interval

    def channel_prefix(self, key: int) -> str:
        """``siaga-alert-<incident>-``: the dialplan and the restart both read it."""
        return f"siaga-alert-{key}-"

    def check(self, job: Job) -> str | None:
        """Only digits are dialled (validated at the edge already: a bug worth a loud log)."""
        return None if _NUMBER_RE.match(job.number) else "callback number invalid"

    def ring(self, job: Job, seq: int) -> Ring:
        """``Local/operator@siaga-alerts``: waits in the queue at ``queue_priority``."""
        return Ring(
            channel=f"Local/{contract.EXTEN_OPERATOR}@{contract.CONTEXT_ALERTS}",
            context=contract.CONTEXT_ALERTS, exten=contract.EXTEN_CITIZEN,
            caller_id=f'"ALERT {job.key}" <{job.number}>',
            variables={
                contract.INHERIT + contract.VAR_INCIDENT: job.key,
                contract.INHERIT + contract.VAR_ATTEMPT: seq,
                contract.INHERIT + contract.VAR_CATEGORY: "alert",
                contract.VAR_QUEUE_PRIO: self.queue_priority,
                contract.VAR_CITIZEN_DIAL: citizen_dial_string(self.citizen_dial, job.number),
                contract.VAR_CITIZEN_RING: self.citizen_ring_seconds,
            },
            timeout_ms=self.operator_wait_seconds * 1000,
            channel_id=f"{self.channel_prefix(job.key)}{seq}-{secrets.token_hex(4)}")


@dataclass(frozen=True)
class DeskPolicy:
    """The hotline: the desk of the operator who chose to call back rings for
    ``ring_seconds``, then the dialplan dials ``target`` (the way the citizen came in).
    One attempt per choice: whatever the outcome, the callback waits for an operator."""

    operator: str  # the desk's channel, PJSIP/<extension>
    target: str  # the dial string back to the citizen
    ring_seconds: int = 30
    max_active: int | None = None
    operator_retry: float | None = None
    citizen_retry: float = 0.0
    citizen_attempts: int | None = None

    def channel_prefix(self, key: int) -> None:
        """Desk calls are not named: nothing to follow after a restart."""
        return None

    def check(self, job: Job) -> str | None:
        """Checked by the hotline before the policy was made."""
        return None

    def ring(self, job: Job, seq: int) -> Ring:
        """The operator's phone, into ``siaga-callback``."""
        return Ring(channel=self.operator, context=contract.CONTEXT_CALLBACK, exten="s",
                    caller_id=f'"Callback" <{job.number}>',
                    variables={contract.VAR_CALLBACK_ID: job.key,
                               contract.VAR_CALLBACK_TARGET: self.target},
                    timeout_ms=self.ring_seconds * 1000)
