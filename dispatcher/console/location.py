"""Where the caller is, for the call card: from an alert's GPS fix, a button's configured
place, or the PIDF-LO location the caller's INVITE carried.

Sans-HTTP: :meth:`CardLocations.for_call` checks who asks (an operator only about a call on
their own phone, or one they talked in within the last day: the caller may hang up before
help is sent; a supervisor about any), finds the call's incident (the live journey's
``SIAGA_INCIDENT`` mark, else the call log) and the INVITE's location (remembered since it
was joined, else the call log), and answers a document: the best location first (a fix the
caller's device took beats a configured place), each with its coordinates, accuracy in
metres, the fix's age and its source, and links to open it elsewhere.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from twisted.internet.defer import Deferred, fail

from dispatcher.calllog.models import Call, CallLocation, Device, Incident, Leg, Operator
from dispatcher.console.calls import ConsoleError, NotYourCall, owns_call
from dispatcher.console.pidf import SipLocation
from pbx.ami.model import LiveModel

__all__ = ["BadLinkedid", "CardLocation", "CardLocations", "call_locations", "sip_row",
           "talked_in"]

#: An Asterisk linkedid: ``<epoch>.<sequence>``, optionally with a system-name prefix.
_LINKEDID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
#: Preference when a call has several: the caller's own device, their INVITE, a fixed place.
ORDER = {"alert": 0, "sip": 1, "button": 2}
#: How long after a call an operator who talked in it may still read where the caller was.
RECENT = dt.timedelta(hours=24)

Runner = Callable[..., "Deferred[Any]"]


class BadLinkedid(ConsoleError):
    """The linkedid asked about is not one (letters, digits, ``._-``, at most 64)."""


@dataclass(frozen=True)
class CardLocation:
    """One place the caller may be, and what it rests on."""

    source: str  # alert (the app's GPS fix), button (its configured place), sip (PIDF-LO)
    lat: float
    lon: float
    accuracy_m: float | None = None
    fix_time: dt.datetime | None = None
    label: str | None = None  # the button's or device's name; the PIDF-LO's method

    def document(self, now: dt.datetime) -> dict[str, Any]:
        """The JSON the card shows (every text is set with textContent by the page)."""
        age = None
        if self.fix_time is not None:
            age = max(0.0, round((now - self.fix_time).total_seconds(), 1))
        return {
            "source": self.source, "lat": self.lat, "lon": self.lon,
            "accuracy_m": self.accuracy_m,
            "fix_time": self.fix_time.isoformat().replace("+00:00", "Z")
            if self.fix_time else None,
            "fix_age_seconds": age, "label": self.label,
            "geo_uri": f"geo:{self.lat:.6f},{self.lon:.6f}"
                       + (f";u={self.accuracy_m:.0f}" if self.accuracy_m is not None else ""),
            "osm_url": (f"https://www.openstreetmap.org/?mlat={self.lat:.6f}"
                        f"&mlon={self.lon:.6f}#map=17/{self.lat:.6f}/{self.lon:.6f}"),
        }


def _from_sip(location: SipLocation) -> CardLocation:
    return CardLocation("sip", location.lat, location.lon, location.radius_m,
                        location.fix_time, location.method)


def call_locations(session: Session, linkedid: str, incident_id: int | None,
                   want_sip: bool) -> list[CardLocation]:
    """What the call log knows of call ``linkedid``'s place: its incident's (``incident_id``,
    else the call row's) and, if ``want_sip``, its INVITE's."""
    found: list[CardLocation] = []
    if incident_id is None:
        incident_id = session.scalar(select(Call.incident_id).where(Call.linkedid == linkedid))
    if incident_id is not None:
        incident = session.get(Incident, incident_id)
        if incident is not None and incident.lat is not None and incident.lon is not None:
            device = session.get(Device, incident.device_id) if incident.device_id else None
            source = "button" if device is not None and device.kind == "button" else "alert"
            found.append(CardLocation(source, incident.lat, incident.lon, incident.accuracy_m,
                                      incident.fix_time if source == "alert" else None,
                                      (device.label or None) if device is not None else None))
    if want_sip:
        row = session.scalar(select(CallLocation).where(CallLocation.linkedid == linkedid))
        if row is not None:
            found.append(CardLocation("sip", row.lat, row.lon, row.radius_m, row.fix_time,
                                      row.method))
    return found


def talked_in(session: Session, linkedid: str, extension: str, since: dt.datetime) -> bool:
    """True when desk ``extension`` talked in call ``linkedid`` (the call log's legs), the
    call having started after ``since``."""
    found = session.scalar(
        select(Leg.id).join(Call, Leg.call_id == Call.id).join(
            Operator, Leg.operator_id == Operator.id).where(
            Call.linkedid == linkedid, Operator.code == extension, Call.started_at >= since)
        .limit(1))
    return found is not None


def sip_row(session: Session, linkedid: str, location: SipLocation,
            received_at: dt.datetime) -> None:
    """Keep the INVITE's location of call ``linkedid`` in the call log (once per call)."""
    if session.scalar(select(CallLocation.id).where(CallLocation.linkedid == linkedid)):
        return
    session.add(CallLocation(linkedid=linkedid, source="sip", lat=location.lat,
                             lon=location.lon, radius_m=location.radius_m,
                             method=location.method, fix_time=location.fix_time,
                             received_at=received_at))


class CardLocations:
    """The location document of a call for the console (see the module docstring).

    ``incident_of(linkedid)`` is the live journey's incident (None when unknown);
    ``sip_of(linkedid)`` the INVITE location remembered; ``read(fn, *args)`` runs
    ``fn(session, *args)`` off the reactor; ``clock()`` is epoch seconds.
    """

    def __init__(self, model: LiveModel, read: Runner, clock: Callable[[], float],
                 incident_of: Callable[[str], int | None] = lambda _l: None,
                 sip_of: Callable[[str], SipLocation | None] = lambda _l: None) -> None:
        self.model = model
        self.read = read
        self.clock = clock
        self.incident_of = incident_of
        self.sip_of = sip_of

    def for_call(self, extension: str, role: str, linkedid: str) -> Deferred[dict[str, Any]]:
        """The call's locations, best first; refused (:class:`BadLinkedid`,
        :class:`NotYourCall`) before any location is read."""
        if not _LINKEDID.match(linkedid):
            return fail(BadLinkedid(f"not a call id: {linkedid[:40]!r}"))
        if role == "supervisor" or owns_call(self.model, extension, linkedid):
            return self._locations(linkedid)
        # Not on the phone now: one the desk talked in, recently, from the call log.
        since = dt.datetime.fromtimestamp(self.clock(), dt.UTC) - RECENT
        d = self.read(talked_in, linkedid, extension, since)

        def allowed(ok: bool) -> Deferred[dict[str, Any]]:
            if not ok:
                raise NotYourCall(f"call {linkedid!r} is not desk {extension}'s")
            return self._locations(linkedid)

        return d.addCallback(allowed)

    def _locations(self, linkedid: str) -> Deferred[dict[str, Any]]:
        sip = self.sip_of(linkedid)
        d = self.read(call_locations, linkedid, self.incident_of(linkedid), sip is None)

        def answer(found: list[CardLocation]) -> dict[str, Any]:
            if sip is not None:
                found.append(_from_sip(sip))
            found.sort(key=lambda loc: ORDER.get(loc.source, 9))
            now = dt.datetime.fromtimestamp(self.clock(), dt.UTC)
            docs = [loc.document(now) for loc in found]
            return {"linkedid": linkedid, "location": docs[0] if docs else None,
                    "locations": docs}

        return d.addCallback(answer)
