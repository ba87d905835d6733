"""Enrolling a panic app by a one-time link, and what the app may read about its own alert.

``siaga device add --link`` stores a device without a credential and a one-time code (its
hash only). The link carries the code in its fragment (``/panic/#code=...``), which browsers
never send to a server, so it reaches no access log or ``Referer``. The app posts the code
once to ``POST /api/v1/enrol`` and receives the device's token; the code is spent in the
same transaction (a second exchange is refused, even one racing the first), and refused once
expired. A device with neither token nor key cannot authenticate (``auth.Authenticator``),
so a link nobody exchanged gives nobody anything.

The functions here take a session in a transaction (the writer thread or a reader thread)
and return plain values, like ``storage``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from dispatcher.calllog import store_incidents
from dispatcher.calllog.models import (
    Agency,
    Alert,
    Callback,
    Device,
    EnrolmentCode,
    Incident,
    IncidentTransition,
)

__all__ = [
    "CODE_RE_TEXT",
    "DEFAULT_LINK_TTL",
    "EnrolmentRefused",
    "Enrolled",
    "alert_status",
    "exchange_code",
    "hash_code",
    "issue_code",
    "new_code",
]

DEFAULT_LINK_TTL = dt.timedelta(hours=24)
# What a well-formed code looks like (``secrets.token_urlsafe(18)``: 24 characters).
CODE_RE_TEXT = r"^[A-Za-z0-9_-]{16,64}$"


class EnrolmentRefused(Exception):
    """The code cannot be exchanged: ``reason`` is ``unknown``, ``used`` or ``expired``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Enrolled:
    """What the app receives once: its id, its token and the number on file (if any)."""

    device_id: str
    token: str
    callback_number: str | None
    label: str


def new_code() -> str:
    """A fresh one-time code (144 random bits, URL-safe, short enough for a QR code)."""
    return secrets.token_urlsafe(18)


def hash_code(code: str) -> str:
    """The stored form of a code: codes are random, so SHA-256 suffices."""
    return "sha256$" + hashlib.sha256(code.encode("utf-8")).hexdigest()


def issue_code(session: Session, device_id: str, code: str, now: dt.datetime,
               ttl: dt.timedelta = DEFAULT_LINK_TTL) -> dt.datetime:
    """Store a one-time code for the enrolled device ``device_id``; when it expires.

    Codes issued before for the same device and not used yet are spent: only the newest
    link works (an administrator re-issuing a link means the old one went astray).
    """
    device = store_incidents.get_device(session, device_id)
    if device is None:
        raise LookupError(f"no device {device_id!r}")
    session.execute(update(EnrolmentCode)
                    .where(EnrolmentCode.device_id == device.id,
                           EnrolmentCode.used_at.is_(None))
                    .values(used_at=now))
    expires = now + ttl
    session.add(EnrolmentCode(device_id=device.id, code_hash=hash_code(code), created_at=now,
                              expires_at=expires))
    session.flush()
    return expires


def exchange_code(session: Session, code: str, now: dt.datetime) -> Enrolled:
    """Spend ``code`` and give its device a new token (replacing any it had).

    Raises :class:`EnrolmentRefused` for an unknown code (or one whose device was revoked),
    a used one, or an expired one; nothing changes then.
    """
    row = session.scalar(select(EnrolmentCode).where(EnrolmentCode.code_hash
                                                     == hash_code(code)))
    if row is None:
        raise EnrolmentRefused("unknown")
    if row.used_at is not None:
        raise EnrolmentRefused("used")
    if row.expires_at <= now:
        raise EnrolmentRefused("expired")
    device = session.get(Device, row.device_id)
    if device is None or not device.enabled or device.kind != "app":
        raise EnrolmentRefused("unknown")
    # Spent only if nobody spent it since we read it: two exchanges racing on PostgreSQL
    # cannot both see one row updated.
    spent = session.execute(update(EnrolmentCode)
                            .where(EnrolmentCode.id == row.id, EnrolmentCode.used_at.is_(None))
                            .values(used_at=now))
    if spent.rowcount != 1:
        raise EnrolmentRefused("used")
    token = store_incidents.new_token()
    device.token_hash = store_incidents.hash_token(token)
    session.flush()
    return Enrolled(device.device_id, token, device.callback_number, device.label)


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def _newest(column: Any, table: Any) -> Any:
    # A column of the incident's newest row of ``table``: an index lookup each.
    return (select(column).where(table.incident_id == Incident.id)
            .order_by(table.id.desc()).limit(1).correlate(Incident).scalar_subquery())


# One statement, built once: every poll of every phone with a live alert runs it.
_STATUS = (
    select(Alert.alert_id, Alert.type, Alert.received_at, Incident.id, Incident.state,
           Incident.updated_at, Agency.code,
           _newest(IncidentTransition.from_state, IncidentTransition),
           _newest(IncidentTransition.detail, IncidentTransition),
           _newest(Callback.state, Callback), _newest(Callback.attempts, Callback))
    .join(Incident, Incident.id == Alert.incident_id)
    .outerjoin(Agency, Agency.id == Incident.agency_id)
    .where(Alert.device_id == bindparam("device_pk"), Alert.alert_id == bindparam("alert_id"))
)


def alert_status(session: Session, device_pk: int, alert_id: str) -> dict[str, Any] | None:
    """What the app that sent ``alert_id`` may know about it, or None if this device sent
    no such alert.

    Only the device's own alert is looked up (by the device's row and its alert id), and
    only what the citizen needs is shown: the incident's state, the last step taken (e.g.
    ``operator_answered``: the operator is calling the citizen now), the callback's state
    and the agency it went to. No operator, note, location or other incident.
    """
    row = session.execute(_STATUS, {"device_pk": device_pk, "alert_id": alert_id}).first()
    if row is None:
        return None
    (alert_id, kind, received_at, incident_id, state, updated_at, agency, from_state, detail,
     callback_state, callback_attempts) = row
    step = None
    if from_state is not None:
        step = (detail or "").split(":", 1)[0] or None
    return {
        "alert_id": alert_id,
        "incident_id": incident_id,
        "type": kind,
        "state": state,
        "step": step,
        "callback": None if callback_state is None else {"state": callback_state,
                                                         "attempts": callback_attempts},
        "agency": agency,
        "received_at": _iso(received_at),
        "updated_at": _iso(updated_at),
    }
