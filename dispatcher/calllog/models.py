"""Tables of the call log, alerts and incidents (SQLAlchemy 2.0 typed models).

Times are stored as naive UTC (SQLite has no time zones; PostgreSQL ``timestamp without time
zone``) and handed back as aware UTC datetimes by :class:`UTCDateTime`, so no code ever compares
a local time with a UTC one. Durations the reports need (answer, queue, talk, whole call) are
stored in seconds on the call row when the journey is saved: the reports then aggregate one
table with plain arithmetic instead of date functions that differ between SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

# Named constraints so Alembic migrations can refer to them on both backends.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Values of the string enumerations below. Kept as plain strings in the database (no native
# ENUM types): adding a value then needs no migration on PostgreSQL.
CALL_OUTCOMES = (
    "in_progress",  # not finished yet (written at start so a crash leaves a trace)
    "answered",  # an operator talked with the caller
    "abandoned_ivr",  # the caller hung up in the menu, before reaching the queue
    "abandoned_queue",  # the caller hung up while waiting for an operator
    "unanswered",  # the system ended it without an operator (queue timeout, no members)
    "dropped",  # connected to nobody for another reason (failure, congestion)
)
CALL_DIRECTIONS = ("inbound", "outbound")
LEG_KINDS = (
    "ivr",
    "queue_wait",
    "operator_talk",
    "transfer_attempt",
    "agency_talk",
    "conference",
)
TRANSFER_RESULTS = ("answered", "no_answer", "busy", "failed", "cancelled")
INCIDENT_STATES = (
    "new",
    "operator_ringing",
    "talking",
    "handed_to_agency",
    "closed",
    "unreachable",
    "cancelled",
)
ALERT_TYPES = ("panic", "medical", "fire", "crime", "other")
# What a call turned out to be, as the operator marked it (the console).
DISPOSITIONS = ("emergency", "information", "prank", "silent", "test", "wrong_number")


def utc(value: dt.datetime) -> dt.datetime:
    """Return ``value`` as an aware UTC datetime; a naive value is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timestamp stored as naive UTC and read back as aware UTC."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        return utc(value).replace(tzinfo=None)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC)


class Base(DeclarativeBase):
    """Declarative base with the naming convention shared with the migrations."""

    metadata = MetaData(naming_convention=NAMING)


class Operator(Base):
    """An operator of the center (one SIP endpoint, one person at a time)."""

    __tablename__ = "operators"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)  # e.g. SIP endpoint "op101"
    name: Mapped[str] = mapped_column(String(200), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class Agency(Base):
    """An agency calls are handed to (police, fire, health, disaster, public order, transport)."""

    __tablename__ = "agencies"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class Call(Base):
    """One citizen journey, keyed by Asterisk's linkedid, however many legs it had."""

    __tablename__ = "calls"

    id: Mapped[int] = mapped_column(primary_key=True)
    linkedid: Mapped[str] = mapped_column(String(64), unique=True)
    direction: Mapped[str] = mapped_column(String(16), default="inbound")
    caller_number: Mapped[str] = mapped_column(String(64), default="")
    caller_name: Mapped[str] = mapped_column(String(200), default="")
    dialed: Mapped[str] = mapped_column(String(64), default="")
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    queued_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    answered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    category: Mapped[str | None] = mapped_column(String(32))
    language: Mapped[str | None] = mapped_column(String(8))
    outcome: Mapped[str] = mapped_column(String(32), default="in_progress")
    hangup_cause: Mapped[int | None] = mapped_column(Integer)
    answered_by_id: Mapped[int | None] = mapped_column(ForeignKey("operators.id"))
    queue_passes: Mapped[int] = mapped_column(Integer, default=0)
    # Seconds, filled when the journey is saved (see the module docstring for why).
    answer_seconds: Mapped[float | None] = mapped_column(Float)  # arrival -> operator answer
    queue_seconds: Mapped[float | None] = mapped_column(Float)  # total time waiting in queue
    talk_seconds: Mapped[float | None] = mapped_column(Float)  # total operator talk time
    duration_seconds: Mapped[float | None] = mapped_column(Float)  # arrival -> last hangup
    source: Mapped[str] = mapped_column(String(8), default="ami")  # "ami" live, "cel" reconciled
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incidents.id"))
    # The center's own self-test call (the dialplan's SIAGA_TEST): kept, never reported.
    test: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")

    answered_by: Mapped[Operator | None] = relationship()
    legs: Mapped[list[Leg]] = relationship(
        back_populates="call", cascade="all, delete-orphan", order_by="Leg.seq"
    )
    events: Mapped[list[CallEvent]] = relationship(
        back_populates="call", cascade="all, delete-orphan", order_by="CallEvent.seq"
    )
    ivr_choices: Mapped[list[IvrChoice]] = relationship(
        back_populates="call", cascade="all, delete-orphan", order_by="IvrChoice.at"
    )
    recordings: Mapped[list[Recording]] = relationship(
        back_populates="call", cascade="all, delete-orphan", order_by="Recording.started_at"
    )

    __table_args__ = (
        # The reports select a period on started_at and read only these columns: a covering
        # index lets SQLite answer them from the index alone.
        Index(
            "ix_calls_report",
            "started_at",
            "direction",
            "outcome",
            "duration_seconds",
            "answer_seconds",
            "talk_seconds",
            "queue_passes",
            "category",
            "answered_by_id",
            "caller_number",
            "test",
        ),
        Index("ix_calls_caller_started", "caller_number", "started_at"),
    )


class Leg(Base):
    """A segment of a journey: menu, queue wait, operator talk, transfer attempt, agency talk."""

    __tablename__ = "legs"

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer, default=0)
    kind: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(200), default="")
    uniqueid: Mapped[str] = mapped_column(String(64), default="")
    operator_id: Mapped[int | None] = mapped_column(ForeignKey("operators.id"))
    agency_id: Mapped[int | None] = mapped_column(ForeignKey("agencies.id"))
    queue: Mapped[str | None] = mapped_column(String(64))
    call_started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)  # = the call's
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    answered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    result: Mapped[str | None] = mapped_column(String(32))
    ring_seconds: Mapped[float | None] = mapped_column(Float)  # transfer: start -> answer
    duration_seconds: Mapped[float | None] = mapped_column(Float)
    fallback: Mapped[bool] = mapped_column(Boolean, default=False)  # another try followed

    call: Mapped[Call] = relationship(back_populates="legs")
    operator: Mapped[Operator | None] = relationship()
    agency: Mapped[Agency | None] = relationship()

    __table_args__ = (
        Index("ix_legs_call", "call_id"),
        # A leg counts in the period its call arrived in, so the call's arrival is copied here:
        # the per-agency report then reads this covering index alone, without a join.
        Index(
            "ix_legs_report",
            "kind",
            "call_started_at",
            "agency_id",
            "operator_id",
            "result",
            "ring_seconds",
            "duration_seconds",
            "fallback",
        ),
    )


class CallEvent(Base):
    """A timestamped event of a journey (AMI event or CEL record), kept for the audit trail."""

    __tablename__ = "call_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer, default=0)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    kind: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(200), default="")
    detail: Mapped[str] = mapped_column(Text, default="")  # JSON object

    call: Mapped[Call] = relationship(back_populates="events")

    __table_args__ = (Index("ix_call_events_call", "call_id"),)


class IvrChoice(Base):
    """A key the caller pressed in a menu, and what it meant."""

    __tablename__ = "ivr_choices"

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    menu: Mapped[str] = mapped_column(String(64), default="")
    digit: Mapped[str] = mapped_column(String(8), default="")
    choice: Mapped[str] = mapped_column(String(64), default="")
    language: Mapped[str | None] = mapped_column(String(8))

    call: Mapped[Call] = relationship(back_populates="ivr_choices")

    __table_args__ = (Index("ix_ivr_choices_call", "call_id"),)


class Recording(Base):
    """A recording file of (part of) a journey."""

    __tablename__ = "recordings"

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(String(200), default="")
    path: Mapped[str] = mapped_column(String(500))
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)

    call: Mapped[Call] = relationship(back_populates="recordings")

    __table_args__ = (Index("ix_recordings_call", "call_id"),)


class Callback(Base):
    """A call the center owes a citizen (after an abandon, or for an alert's incident)."""

    __tablename__ = "callbacks"

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default="pending")
    reason: Mapped[str] = mapped_column(String(32), default="abandoned")  # or "alert"
    origin_call_id: Mapped[int | None] = mapped_column(ForeignKey("calls.id"))
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incidents.id"))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Times the citizen did not answer an alert's callback: a restarted server goes on
    # counting from here instead of granting the citizen a fresh set of attempts.
    citizen_no_answers: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    done_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    result_linkedid: Mapped[str | None] = mapped_column(String(64))

    __table_args__ = (Index("ix_callbacks_state_created", "state", "created_at"),
                      # An incident's callback, read by every poll of the panic app.
                      Index("ix_callbacks_incident", "incident_id"))


class Device(Base):
    """An enrolled panic-button app or physical button.

    The bearer token is kept only as a hash (``token_hash``, see ``store.hash_token``). HMAC
    signatures need the shared key itself on the server, so ``hmac_key`` holds it when the
    device signs requests instead of sending a token.
    """

    __tablename__ = "devices"

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[str] = mapped_column(String(128), unique=True)
    kind: Mapped[str] = mapped_column(String(16), default="app")  # "app" or "button"
    label: Mapped[str] = mapped_column(String(200), default="")
    token_hash: Mapped[str | None] = mapped_column(String(256))
    hmac_key: Mapped[str | None] = mapped_column(String(256))
    callback_number: Mapped[str | None] = mapped_column(String(64))
    # A physical button has a fixed, configured place.
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class Incident(Base):
    """A case the center works on, opened by an alert (or a button call)."""

    __tablename__ = "incidents"

    id: Mapped[int] = mapped_column(primary_key=True)
    state: Mapped[str] = mapped_column(String(32), default="new")
    type: Mapped[str] = mapped_column(String(16), default="panic")
    device_id: Mapped[int | None] = mapped_column(ForeignKey("devices.id"))
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    accuracy_m: Mapped[float | None] = mapped_column(Float)
    fix_time: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    callback_number: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(Text)
    operator_id: Mapped[int | None] = mapped_column(ForeignKey("operators.id"))
    agency_id: Mapped[int | None] = mapped_column(ForeignKey("agencies.id"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    closed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    # An incident an operator opened from a call (the console): the call, the hotline
    # category, the address given; and the outcome it was closed with.
    linkedid: Mapped[str | None] = mapped_column(String(64))
    category: Mapped[str | None] = mapped_column(String(32))
    address: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[str | None] = mapped_column(Text)

    alerts: Mapped[list[Alert]] = relationship(back_populates="incident")
    transitions: Mapped[list[IncidentTransition]] = relationship(
        back_populates="incident", cascade="all, delete-orphan", order_by="IncidentTransition.id"
    )

    __table_args__ = (Index("ix_incidents_state", "state"),
                      Index("ix_incidents_linkedid", "linkedid"))


class Alert(Base):
    """An alert as received; ``(device, alert_id)`` is unique so a retry finds the first one."""

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id"))
    alert_id: Mapped[str] = mapped_column(String(128))  # chosen by the client
    type: Mapped[str] = mapped_column(String(16))
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    accuracy_m: Mapped[float | None] = mapped_column(Float)
    fix_time: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    callback_number: Mapped[str | None] = mapped_column(String(64))
    note: Mapped[str | None] = mapped_column(Text)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id"))

    incident: Mapped[Incident] = relationship(back_populates="alerts")

    __table_args__ = (UniqueConstraint("device_id", "alert_id", name="uq_alerts_device_alert"),)


class IncidentTransition(Base):
    """One step of an incident's state machine, for the audit trail."""

    __tablename__ = "incident_transitions"

    id: Mapped[int] = mapped_column(primary_key=True)
    incident_id: Mapped[int] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    from_state: Mapped[str | None] = mapped_column(String(32))
    to_state: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(Text, default="")

    incident: Mapped[Incident] = relationship(back_populates="transitions")

    __table_args__ = (Index("ix_incident_transitions_incident", "incident_id"),)


class EnrolmentCode(Base):
    """A one-time code that enrols a panic app: exchanged once, before it expires, for the
    device's token (``siaga device add --link``). Only the code's hash is kept."""

    __tablename__ = "enrolment_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"))
    code_hash: Mapped[str] = mapped_column(String(256), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)


class CelCursor(Base):
    """How far a CEL file has been reconciled, so a restart does not re-read all of it."""

    __tablename__ = "cel_cursors"

    path: Mapped[str] = mapped_column(String(500), primary_key=True)
    inode: Mapped[int] = mapped_column(BigInteger, default=0)
    offset: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class SelfTestRun(Base):
    """One self-test call (dispatcher.selftest): when, whether it passed, where it stopped."""

    __tablename__ = "selftest_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    ok: Mapped[bool] = mapped_column(Boolean)
    stage: Mapped[str] = mapped_column(String(16))  # the last stage passed, or timeout/crashed
    error: Mapped[str | None] = mapped_column(String(500))
    detail: Mapped[str] = mapped_column(Text, default="")  # the probe's JSON result

    __table_args__ = (Index("ix_selftest_runs_started", "started_at"),)


class CallLocation(Base):
    """Where a caller said they were: the PIDF-LO location their INVITE carried (RFC 6442).

    Keyed by the call's linkedid, not a foreign key: the location usually arrives while the
    call's row is still being written (or not yet, after a database outage).
    """

    __tablename__ = "call_locations"

    id: Mapped[int] = mapped_column(primary_key=True)
    linkedid: Mapped[str] = mapped_column(String(64), unique=True)
    source: Mapped[str] = mapped_column(String(16), default="sip")  # sip: the INVITE's PIDF-LO
    lat: Mapped[float] = mapped_column(Float)
    lon: Mapped[float] = mapped_column(Float)
    radius_m: Mapped[float | None] = mapped_column(Float)
    method: Mapped[str | None] = mapped_column(String(32))
    fix_time: Mapped[dt.datetime | None] = mapped_column(UTCDateTime)
    received_at: Mapped[dt.datetime] = mapped_column(UTCDateTime)


class CallNote(Base):
    """A timestamped note an operator wrote about a call (and its incident, if it has one).

    Append-only: the code offers no way to change or remove one; a correction is a new note.
    """

    __tablename__ = "call_notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    linkedid: Mapped[str] = mapped_column(String(64))
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("incidents.id"))
    author: Mapped[str] = mapped_column(String(64))  # the staff member's extension
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    text: Mapped[str] = mapped_column(Text)

    __table_args__ = (Index("ix_call_notes_linkedid", "linkedid"),
                      Index("ix_call_notes_incident", "incident_id"))


class CallDisposition(Base):
    """What an operator marked a call as (``DISPOSITIONS``). Each marking is a new row; the
    latest is the call's disposition, the earlier ones the audit trail. The caller's number is
    copied here so "marked prank before" is one indexed lookup by number."""

    __tablename__ = "call_dispositions"

    id: Mapped[int] = mapped_column(primary_key=True)
    linkedid: Mapped[str] = mapped_column(String(64))
    caller_number: Mapped[str] = mapped_column(String(64), default="")
    disposition: Mapped[str] = mapped_column(String(16))
    author: Mapped[str] = mapped_column(String(64))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_call_dispositions_linkedid", "linkedid"),
                      Index("ix_call_dispositions_number", "caller_number", "disposition"))


class Supervision(Base):
    """A supervisor listening to, whispering to or barging into an operator's call
    (dispatcher.console.spy): who, whom, how and when, whatever came of it."""

    __tablename__ = "supervisions"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    supervisor: Mapped[str] = mapped_column(String(16))  # the supervisor's extension
    operator: Mapped[str] = mapped_column(String(16))  # the operator's extension
    mode: Mapped[str] = mapped_column(String(8))  # listen, whisper or barge
    linkedid: Mapped[str] = mapped_column(String(64), default="")  # the call spied on
    channel: Mapped[str] = mapped_column(String(200), default="")  # the operator's channel
    result: Mapped[str] = mapped_column(String(16))  # originated, or failed (the PBX refused)
    detail: Mapped[str] = mapped_column(Text, default="")

    __table_args__ = (Index("ix_supervisions_at", "at"),)


class CallRollup(Base):
    """The finished citizen calls of one UTC hour, added up for the supervisors' report.

    Maintained by the call log's writer in the transaction that saves the journey (see
    :mod:`dispatcher.calllog.rollups`), so the report reads a few hundred rows per hour instead
    of every call. ``kind`` says which of the report's dimensions the row is for: ``all``
    (summary and hourly table), ``category`` or ``operator`` (their tables); the other
    dimension's column is ``""``/``0``. ``category_day`` and ``operator_day`` rows hold the same
    as those for a whole UTC day (``hour`` is then its midnight): their tables have no hour of
    day, so a month is read from day rows. ``short_second`` is the whole second of an abandoned
    call's duration (``-1`` below zero, ``10`` for none, 10 s or more, and every other
    outcome), which decides a short abandon for any whole-second threshold up to 10 s (see
    ``rollups.SHORT_MAX``). Seconds are summed
    as whole microseconds so adding and taking away a journey leaves no rounding behind.
    """

    __tablename__ = "call_rollups"

    id: Mapped[int] = mapped_column(primary_key=True)
    hour: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    kind: Mapped[str] = mapped_column(String(16))
    direction: Mapped[str] = mapped_column(String(16))
    category: Mapped[str] = mapped_column(String(32), default="")
    operator_id: Mapped[int] = mapped_column(Integer, default=0)
    outcome: Mapped[str] = mapped_column(String(32))
    short_second: Mapped[int] = mapped_column(Integer)
    calls: Mapped[int] = mapped_column(Integer, default=0)
    answer_us: Mapped[int] = mapped_column(BigInteger, default=0)
    talk_us: Mapped[int] = mapped_column(BigInteger, default=0)
    answer_max: Mapped[float | None] = mapped_column(Float)
    requeued: Mapped[int] = mapped_column(Integer, default=0)
    within_15: Mapped[int] = mapped_column(Integer, default=0)
    within_20: Mapped[int] = mapped_column(Integer, default=0)

    __table_args__ = (
        UniqueConstraint(
            "hour", "kind", "direction", "category", "operator_id", "outcome", "short_second",
            name="uq_call_rollups_key",
        ),
    )


class AgencyRollup(Base):
    """The transfer attempts and agency talk of one UTC hour's journeys, per agency (every
    journey, finished or not, as the report's agency table counts them)."""

    __tablename__ = "agency_rollups"

    id: Mapped[int] = mapped_column(primary_key=True)
    hour: Mapped[dt.datetime] = mapped_column(UTCDateTime)
    agency_id: Mapped[int] = mapped_column(Integer)
    legs: Mapped[int] = mapped_column(Integer, default=0)
    transfers: Mapped[int] = mapped_column(Integer, default=0)
    answered: Mapped[int] = mapped_column(Integer, default=0)
    no_answer: Mapped[int] = mapped_column(Integer, default=0)
    busy: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    cancelled: Mapped[int] = mapped_column(Integer, default=0)
    fallbacks: Mapped[int] = mapped_column(Integer, default=0)
    ring_n: Mapped[int] = mapped_column(Integer, default=0)
    ring_us: Mapped[int] = mapped_column(BigInteger, default=0)
    ring_max: Mapped[float | None] = mapped_column(Float)
    talk_us: Mapped[int] = mapped_column(BigInteger, default=0)

    __table_args__ = (UniqueConstraint("hour", "agency_id", name="uq_agency_rollups_key"),)
