"""Call-log data access for devices, alerts and incidents (issue 7 drives them; the schema and
idempotency live here).

Every function takes a :class:`~sqlalchemy.orm.Session` already inside a transaction (see
``db.transaction``) and blocks: call them from the writer's thread
(:class:`dispatcher.calllog.writer.CallLogWriter`) or at start-up, never on the reactor thread.
They flush but never commit; the caller's transaction decides.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dispatcher.calllog.models import (
    ALERT_TYPES,
    INCIDENT_STATES,
    Alert,
    Device,
    Incident,
    IncidentTransition,
)
from dispatcher.calllog.store_journeys import _now, ensure_agency, ensure_operator


def hash_token(token: str) -> str:
    """Hash a device token for storage. Tokens are random (``new_token``), so SHA-256 suffices."""
    return "sha256$" + hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    """A fresh random device token (shown once to the administrator, stored hashed)."""
    return secrets.token_urlsafe(32)


def add_device(
    session: Session,
    device_id: str,
    kind: str = "app",
    label: str = "",
    token: str | None = None,
    hmac_key: str | None = None,
    callback_number: str | None = None,
    lat: float | None = None,
    lon: float | None = None,
    now: dt.datetime | None = None,
) -> Device:
    """Enrol a device. Raises ValueError if the device id is taken."""
    if get_device(session, device_id) is not None:
        raise ValueError(f"device {device_id!r} already enrolled")
    device = Device(
        device_id=device_id,
        kind=kind,
        label=label,
        token_hash=hash_token(token) if token else None,
        hmac_key=hmac_key,
        callback_number=callback_number,
        lat=lat,
        lon=lon,
        enabled=True,
        created_at=_now(now),
    )
    session.add(device)
    session.flush()
    return device


def get_device(session: Session, device_id: str) -> Device | None:
    """Return the device with this external id, or None."""
    return session.scalar(select(Device).where(Device.device_id == device_id))


def authenticate_token(session: Session, device_id: str, token: str) -> Device | None:
    """Return the enabled device if ``token`` is its token, else None (constant-time compare)."""
    device = get_device(session, device_id)
    if device is None or not device.enabled or device.token_hash is None:
        return None
    if not hmac.compare_digest(device.token_hash, hash_token(token)):
        return None
    return device


def revoke_device(session: Session, device_id: str, now: dt.datetime | None = None) -> bool:
    """Disable a device; return False if there is none."""
    device = get_device(session, device_id)
    if device is None:
        return False
    device.enabled = False
    device.revoked_at = _now(now)
    session.flush()
    return True


@dataclass
class AlertOutcome:
    """The incident an alert belongs to, and whether this request created it."""

    alert: Alert
    incident: Incident
    created: bool


def record_alert(
    session: Session,
    device: Device,
    alert_id: str,
    type: str,
    lat: float | None = None,
    lon: float | None = None,
    accuracy_m: float | None = None,
    fix_time: dt.datetime | None = None,
    callback_number: str | None = None,
    note: str | None = None,
    now: dt.datetime | None = None,
) -> AlertOutcome:
    """Store an alert and open its incident, once per ``(device, alert_id)``.

    A retry with the same alert id returns the first alert's incident with ``created=False``,
    even when two retries race (the unique constraint decides; the loser reads the winner's row).
    Input validation is the HTTP layer's job; this only refuses an unknown type.
    """
    if type not in ALERT_TYPES:
        raise ValueError(f"unknown alert type {type!r}")
    existing = _find_alert(session, device.id, alert_id)
    if existing is not None:
        return AlertOutcome(existing, existing.incident, False)
    at = _now(now)
    try:
        with session.begin_nested():
            incident = Incident(
                state="new",
                type=type,
                device_id=device.id,
                lat=lat if lat is not None else device.lat,
                lon=lon if lon is not None else device.lon,
                accuracy_m=accuracy_m,
                fix_time=fix_time,
                callback_number=callback_number or device.callback_number,
                note=note,
                created_at=at,
                updated_at=at,
            )
            session.add(incident)
            session.flush()
            alert = Alert(
                device_id=device.id,
                alert_id=alert_id,
                type=type,
                lat=lat,
                lon=lon,
                accuracy_m=accuracy_m,
                fix_time=fix_time,
                callback_number=callback_number,
                note=note,
                received_at=at,
                incident_id=incident.id,
            )
            session.add(alert)
            session.add(
                IncidentTransition(
                    incident_id=incident.id,
                    at=at,
                    from_state=None,
                    to_state="new",
                    detail=f"alert {alert_id}",
                )
            )
            session.flush()
    except IntegrityError:
        existing = _find_alert(session, device.id, alert_id)
        if existing is None:
            raise
        return AlertOutcome(existing, existing.incident, False)
    return AlertOutcome(alert, incident, True)


def _find_alert(session: Session, device_pk: int, alert_id: str) -> Alert | None:
    return session.scalar(
        select(Alert).where(Alert.device_id == device_pk, Alert.alert_id == alert_id)
    )


def get_incident(session: Session, incident_id: int) -> Incident | None:
    """Return an incident, or None."""
    return session.get(Incident, incident_id)


def set_incident_state(
    session: Session,
    incident_id: int,
    to_state: str,
    now: dt.datetime | None = None,
    detail: str = "",
    operator_code: str | None = None,
    agency_code: str | None = None,
) -> Incident:
    """Record an incident's move to ``to_state`` (the state machine decides if it is allowed)."""
    if to_state not in INCIDENT_STATES:
        raise ValueError(f"unknown incident state {to_state!r}")
    incident = session.get(Incident, incident_id)
    if incident is None:
        raise LookupError(f"no incident {incident_id}")
    at = _now(now)
    session.add(
        IncidentTransition(
            incident_id=incident.id,
            at=at,
            from_state=incident.state,
            to_state=to_state,
            detail=detail,
        )
    )
    incident.state = to_state
    incident.updated_at = at
    if operator_code:
        incident.operator_id = ensure_operator(session, operator_code).id
    if agency_code:
        incident.agency_id = ensure_agency(session, agency_code).id
    if to_state in ("closed", "cancelled", "unreachable"):
        incident.closed_at = at
    session.flush()
    return incident


def open_incidents(session: Session) -> list[Incident]:
    """Incidents not closed, cancelled or unreachable, oldest first."""
    return list(
        session.scalars(
            select(Incident)
            .where(Incident.state.not_in(("closed", "cancelled", "unreachable")))
            .order_by(Incident.created_at)
        )
    )
