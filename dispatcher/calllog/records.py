"""What a journey produces: plain records of the call, its legs, events, menu choices and
recordings (the store turns them into rows; reports and the callbacks read them).

Times are epoch seconds (float, UTC). Nothing here knows AMI or CEL.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "EventRecord",
    "IvrChoiceRecord",
    "JourneyRecord",
    "LegRecord",
    "RecordingRecord",
]


@dataclass
class LegRecord:
    """A segment of a journey. Times are epoch seconds (float, UTC)."""

    kind: str
    started_at: float
    channel: str = ""
    uniqueid: str = ""
    operator: str | None = None
    agency: str | None = None
    queue: str | None = None
    answered_at: float | None = None
    ended_at: float | None = None
    result: str | None = None
    fallback: bool = False

    @property
    def duration(self) -> float | None:
        """Seconds from start to end, None while open."""
        return None if self.ended_at is None else max(0.0, self.ended_at - self.started_at)

    @property
    def ring_seconds(self) -> float | None:
        """For a transfer attempt: seconds until the agency answered."""
        if self.answered_at is None:
            return None
        return max(0.0, self.answered_at - self.started_at)


@dataclass
class EventRecord:
    """A timestamped event kept for the audit trail."""

    at: float
    kind: str
    channel: str = ""
    detail: dict[str, str] = field(default_factory=dict)


@dataclass
class IvrChoiceRecord:
    """A key pressed in a menu."""

    at: float
    menu: str
    digit: str
    choice: str
    language: str | None = None


@dataclass
class RecordingRecord:
    """A recording file of a channel."""

    path: str
    channel: str
    started_at: float
    ended_at: float | None = None


@dataclass
class JourneyRecord:
    """One citizen journey, complete or (``complete=False``) as known so far."""

    linkedid: str
    started_at: float
    direction: str = "inbound"
    caller_number: str = ""
    caller_name: str = ""
    dialed: str = ""
    queued_at: float | None = None
    answered_at: float | None = None
    ended_at: float | None = None
    category: str | None = None
    language: str | None = None
    outcome: str = "in_progress"
    hangup_cause: int | None = None
    answered_by: str | None = None
    queue_passes: int = 0
    incident_ref: int | None = None
    source: str = "ami"
    #: The citizen's SIP source address (host:port), as Asterisk saw the packets come.
    sip_source: str | None = None
    test: bool = False  # the center's self-test call (SIAGA_TEST)
    complete: bool = False
    legs: list[LegRecord] = field(default_factory=list)
    events: list[EventRecord] = field(default_factory=list)
    ivr_choices: list[IvrChoiceRecord] = field(default_factory=list)
    recordings: list[RecordingRecord] = field(default_factory=list)

    def _sum(self, kind: str) -> float | None:
        legs = [leg.duration for leg in self.legs if leg.kind == kind]
        if not legs:
            return None
        return sum(d for d in legs if d is not None)

    @property
    def answer_seconds(self) -> float | None:
        """Seconds from arrival to the first operator answer."""
        if self.answered_at is None:
            return None
        return max(0.0, self.answered_at - self.started_at)

    @property
    def queue_seconds(self) -> float | None:
        """Seconds spent waiting in queue, over every pass through it."""
        return self._sum("queue_wait")

    @property
    def talk_seconds(self) -> float | None:
        """Seconds operators spent on this journey."""
        return self._sum("operator_talk")

    @property
    def duration_seconds(self) -> float | None:
        """Seconds from arrival to the last hangup."""
        if self.ended_at is None:
            return None
        return max(0.0, self.ended_at - self.started_at)

