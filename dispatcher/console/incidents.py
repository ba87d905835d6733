"""Case work on a call from the console: open an incident, append notes, mark the call's
disposition, close the incident with an outcome.

An incident opened here reuses the call log's incident (``incidents`` table, the state
machine of ``dispatcher.alerts.incident``): it starts ``talking`` (the operator is on the
call) and closes through the table's ``close`` input, so a case the table does not let close
is refused, never forced. A call that arrived for an alert's incident (``calls.incident_id``)
already has its incident: notes and the close go to that one.

Notes are append-only: there is no function to change or remove one; a correction is a new
note. A disposition is appended too: the latest marking is the call's, the earlier ones stay
as the audit trail.

:func:`validate_*` check a page's input on the reactor thread (a refusal costs no database
work); the ``*_in`` functions take a session inside the writer's transaction (they block).
Nothing is written when any check fails.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from dispatcher.alerts.incident import (
    IncidentInput,
    InvalidTransition,
    accepted_inputs,
    next_state,
)
from dispatcher.calllog.models import (
    DISPOSITIONS,
    Call,
    CallDisposition,
    CallNote,
    Incident,
    IncidentTransition,
    Operator,
    utc,
)
from dispatcher.calllog.store_incidents import set_incident_state
from dispatcher.calllog.store_journeys import ensure_operator
from dispatcher.console.calls import ConsoleError, NotYourCall

__all__ = ["CATEGORY_TYPES", "DISPOSITIONS", "CaseConflict", "InvalidCaseInput", "NoIncident",
           "NoSuchCall",
           "add_note_in", "call_case_in", "close_incident_in", "handed_off_in", "open_incident_in",
           "set_disposition_in", "validate_category", "validate_disposition",
           "validate_text"]

MAX_NOTE = 2000
MAX_ADDRESS = 500
MAX_OUTCOME = 500
# The incident's ``type`` (the alerts' vocabulary) for a call's hotline category.
CATEGORY_TYPES = {"police": "crime", "fire": "fire", "health": "medical", "ambulance": "medical"}


class InvalidCaseInput(ConsoleError):
    """A field the page sent is not acceptable (422, with the field and why)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field


class NoSuchCall(ConsoleError):
    """Neither live nor in the call log."""


class NoIncident(ConsoleError):
    """The call has no incident (open one first)."""


class CaseConflict(ConsoleError):
    """The incident is not in a state that allows this (already open, already closed)."""


def validate_text(field: str, value: Any, max_len: int, required: bool = True) -> str:
    """A free text from the page: a string, trimmed, within ``max_len``, no control
    characters but newlines and tabs. Kept as the operator wrote it otherwise: the pages
    show it as text, never as HTML."""
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise InvalidCaseInput(field, "must be a string")
    text = value.strip()
    if required and not text:
        raise InvalidCaseInput(field, "must not be empty")
    if len(text) > max_len:
        raise InvalidCaseInput(field, f"is longer than {max_len} characters")
    if any(unicodedata.category(c) == "Cc" and c not in "\n\t" for c in text):
        raise InvalidCaseInput(field, "must not contain control characters")
    return text


def validate_disposition(value: Any) -> str:
    """One of :data:`DISPOSITIONS`."""
    if not isinstance(value, str) or value not in DISPOSITIONS:
        raise InvalidCaseInput("disposition", f"must be one of {', '.join(DISPOSITIONS)}")
    return value


def validate_category(value: Any, categories: set[str]) -> str:
    """One of the center's categories (its agencies' keys) or ``other``."""
    allowed = categories | {"other"}
    if not isinstance(value, str) or value not in allowed:
        raise InvalidCaseInput("category", f"must be one of {', '.join(sorted(allowed))}")
    return value


def validate_linkedid(value: Any) -> str:
    """A call's linkedid: a lookup key, bounded."""
    if not isinstance(value, str) or not value or len(value) > 64:
        raise InvalidCaseInput("linkedid", "must be a call's linkedid")
    return value


# -- in the writer's transaction -----------------------------------------------------------


def check_answered(session: Session, linkedid: str, extension: str | None) -> None:
    """With ``extension`` (an operator whose phone no longer holds the call), refuse unless
    the call log says that operator answered it: the one who took a call may finish its
    paperwork after hanging up; nobody else."""
    if extension is None:
        return
    code = session.scalar(select(Operator.code).join(Call, Call.answered_by_id == Operator.id)
                          .where(Call.linkedid == linkedid))
    if code != extension:
        raise NotYourCall(f"call {linkedid[:40]!r} is not on desk {extension}'s phone")


def call_incident(session: Session, linkedid: str) -> Incident | None:
    """The call's incident: one opened from it, else the one the call came for (an alert's)."""
    opened = session.scalar(select(Incident).where(Incident.linkedid == linkedid)
                            .order_by(Incident.id.desc()).limit(1))
    if opened is not None:
        return opened
    incident_id = session.scalar(select(Call.incident_id).where(Call.linkedid == linkedid))
    return session.get(Incident, incident_id) if incident_id else None


def open_incident_in(session: Session, linkedid: str, caller_number: str, category: str,
                     address: str, note: str, author: str, now: dt.datetime,
                     owner: str | None = None) -> dict[str, Any]:
    """Open the call's incident (refused if it has one that is not finished)."""
    check_answered(session, linkedid, owner)
    existing = call_incident(session, linkedid)
    if existing is not None and existing.state not in ("closed", "cancelled"):
        raise CaseConflict(f"the call already has incident {existing.id} ({existing.state})")
    call = session.scalar(select(Call).where(Call.linkedid == linkedid))
    number = call.caller_number if call is not None and call.caller_number else caller_number
    incident = Incident(
        state="talking", type=CATEGORY_TYPES.get(category, "other"), linkedid=linkedid,
        category=category, address=address or None, callback_number=number or None,
        operator_id=ensure_operator(session, author).id, created_at=now, updated_at=now)
    session.add(incident)
    session.flush()
    session.add(IncidentTransition(incident_id=incident.id, at=now, from_state=None,
                                   to_state="talking",
                                   detail=f"opened from call {linkedid} by {author}"))
    if call is not None and call.incident_id is None:
        call.incident_id = incident.id
    if note:
        session.add(CallNote(linkedid=linkedid, incident_id=incident.id, author=author, at=now,
                             text=note))
    session.flush()
    return call_case_in(session, linkedid)


def add_note_in(session: Session, linkedid: str, text: str, author: str, now: dt.datetime,
                owner: str | None = None) -> dict[str, Any]:
    """Append a note to the call (and its incident, if it has one)."""
    check_answered(session, linkedid, owner)
    incident = call_incident(session, linkedid)
    note = CallNote(linkedid=linkedid, incident_id=incident.id if incident else None,
                    author=author, at=now, text=text)
    session.add(note)
    session.flush()
    return _note_document(note)


def set_disposition_in(session: Session, linkedid: str, caller_number: str, disposition: str,
                       author: str, now: dt.datetime, owner: str | None = None
                       ) -> dict[str, Any]:
    """Mark what the call was (a new row; the latest is the call's)."""
    check_answered(session, linkedid, owner)
    call = session.scalar(select(Call).where(Call.linkedid == linkedid))
    number = call.caller_number if call is not None and call.caller_number else caller_number
    row = CallDisposition(linkedid=linkedid, caller_number=number[:64], disposition=disposition,
                          author=author, at=now)
    session.add(row)
    session.flush()
    return {"disposition": disposition, "by": author, "at": utc(now).isoformat()}


def close_incident_in(session: Session, linkedid: str, outcome: str, author: str,
                      now: dt.datetime, owner: str | None = None) -> dict[str, Any]:
    """Close the call's incident with ``outcome`` (as the incident's state machine allows)."""
    check_answered(session, linkedid, owner)
    incident = call_incident(session, linkedid)
    if incident is None:
        raise NoIncident(f"call {linkedid[:40]!r} has no incident to close")
    try:
        to = next_state(incident.state, IncidentInput.CLOSE)
    except InvalidTransition as exc:
        raise CaseConflict(f"incident {incident.id}: {exc}") from None
    set_incident_state(session, incident.id, to.value, now=now,
                       detail=f"closed by {author}: {outcome[:200]}", operator_code=author)
    incident.outcome = outcome
    session.flush()
    return call_case_in(session, linkedid)


def handed_off_in(session: Session, linkedid: str, agency: str, now: dt.datetime
                  ) -> tuple[int, str] | None:
    """The call's citizen now talks with ``agency``: the incident opened from this call (if
    any, and if its state takes a hand-off) moves to ``handed_to_agency``. Returns the
    incident's id and state, or None when nothing changed. An alert's incident is moved by
    the alert service itself (``dispatcher.alerts.journeys``), not here."""
    incident = session.scalar(select(Incident).where(Incident.linkedid == linkedid)
                              .order_by(Incident.id.desc()).limit(1))
    if incident is None or IncidentInput.HAND_TO_AGENCY not in accepted_inputs(incident.state):
        return None
    to = next_state(incident.state, IncidentInput.HAND_TO_AGENCY)
    set_incident_state(session, incident.id, to.value, now=now, detail=f"{agency} answered",
                       agency_code=agency)
    return incident.id, to.value


def _note_document(note: CallNote) -> dict[str, Any]:
    return {"id": note.id, "by": note.author, "at": utc(note.at).isoformat(),
            "text": note.text, "incident_id": note.incident_id}


def call_case_in(session: Session, linkedid: str, owner: str | None = None) -> dict[str, Any]:
    """The call's case: its incident, notes (oldest first) and disposition."""
    check_answered(session, linkedid, owner)
    incident = call_incident(session, linkedid)
    # The call's notes, and those of other calls on the same incident (an alert's callbacks).
    whose = CallNote.linkedid == linkedid
    if incident is not None:
        whose = or_(whose, CallNote.incident_id == incident.id)
    notes = session.scalars(select(CallNote).where(whose).order_by(CallNote.id)).all()
    marked = session.scalar(select(CallDisposition).where(CallDisposition.linkedid == linkedid)
                            .order_by(CallDisposition.id.desc()).limit(1))
    doc: dict[str, Any] = {"linkedid": linkedid, "incident": None,
                           "notes": [_note_document(n) for n in notes],
                           "disposition": None, "dispositions": list(DISPOSITIONS)}
    if incident is not None:
        doc["incident"] = {
            "id": incident.id, "state": incident.state, "type": incident.type,
            "category": incident.category, "address": incident.address,
            "outcome": incident.outcome, "note": incident.note,
            "created_at": utc(incident.created_at).isoformat(),
            "closed_at": utc(incident.closed_at).isoformat() if incident.closed_at else None,
            "can_close": IncidentInput.CLOSE in accepted_inputs(incident.state),
        }
    if marked is not None:
        doc["disposition"] = {"disposition": marked.disposition, "by": marked.author,
                              "at": utc(marked.at).isoformat()}
    return doc
