"""The call card's history and case work over HTTP (``/console/api/...``) and the
supervisors' page of flagged numbers (``/console/flagged``).

- ``GET history?linkedid=`` — the caller's history and the repeat/prank flag;
- ``GET incident?linkedid=`` — the call's incident, notes and disposition;
- ``POST incident-open`` ``{linkedid, category, address?, note?}``;
- ``POST incident-note`` ``{linkedid, text}``; ``POST incident-disposition``
  ``{linkedid, disposition}``; ``POST incident-close`` ``{linkedid, outcome}``;
- ``GET flagged`` (supervisors) — the flagged numbers with their calls.

An operator acts on a call while it is on their phone (``owns_call``, as ``require_call``)
and, once they hung up, on a call the log says they answered (wrap-up); a supervisor on
any. The linkedid a page sends is only a lookup key. Reads run in the reader pool, writes
through the call log's writer: nothing blocks the reactor. Input is checked before anything
is written.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web import server
from twisted.web.iweb import IRequest
from twisted.web.resource import Resource

from dispatcher.calllog.models import Call
from dispatcher.config.model import Center
from dispatcher.console import history, incidents
from dispatcher.console.calls import desk_of, owns_call
from dispatcher.web.console_api import ConsoleEndpoint, json_object, reply_later
from pbx.ami.model import LiveModel

__all__ = ["CaseParts", "FlaggedPage", "incident_endpoints"]

Run = Callable[..., Deferred[Any]]
log = Logger(namespace="dispatcher.web.console_incident")


@dataclass
class CaseParts:
    """What the endpoints act with: the live model (whose calls), the current config, the
    reader pool's ``run(fn, *args)``, the writer's ``submit(fn, *args)`` and the clock."""

    model: LiveModel
    center: Callable[[], Center]
    read: Run
    write: Run
    clock: Callable[[], float]
    #: Tells the operators' incident feed (``IncidentFeed.publish``): the consoles' list of
    #: open incidents then shows those opened from calls too.
    publish: Callable[..., object] | None = None
    #: The live journey's facts (``JourneyTracker.facts``): the operator who answered a call
    #: still in progress (handed to an agency) may work its case before the log has its row.
    facts: Callable[[str], Any] | None = None

    def now(self) -> dt.datetime:
        """The clock as an aware UTC datetime."""
        return dt.datetime.fromtimestamp(self.clock(), dt.UTC)

    def published(self, d: Deferred[Any], event: str, by: str) -> Deferred[Any]:
        """Publish the case's incident state once ``d`` (a case document) is written."""
        def tell(doc: dict[str, Any]) -> dict[str, Any]:
            incident = doc.get("incident")
            if self.publish is not None and incident is not None:
                try:
                    self.publish(incident["id"], incident["state"], event, operator=by,
                                 category=incident["category"])
                except Exception:  # noqa: BLE001 -- stored already; the page still hears so
                    log.failure("incident {id}: feed not told", id=incident["id"])
            return doc
        return d.addCallback(tell)

    def handed_off(self, linkedid: str, agency: str) -> Deferred[Any]:
        """The call was handed to ``agency`` (the call log saw the agency answer): its
        incident opened from the call follows."""
        d = self.write(incidents.handed_off_in, linkedid, agency, self.now())

        def tell(moved: tuple[int, str] | None) -> None:
            if moved is not None and self.publish is not None:
                self.publish(moved[0], moved[1], "hand_to_agency", agency=agency,
                             detail=f"{agency} answered")

        d.addCallback(tell)
        d.addErrback(lambda f: log.failure("call {linkedid}: hand-off not recorded on its "
                                           "incident", f, linkedid=linkedid))
        return d

    def citizen_number(self, linkedid: str) -> str:
        """The caller's number of a live call: the caller ID of its oldest channel that is
        on no staff phone (an operator's, a supervisor's, an agency's), or ''."""
        staff = self.center().extensions()
        for channel in self.model.channels_of(linkedid):
            desk = desk_of(channel.name)
            if desk is None or staff.get(desk, ("", None))[0] not in (
                    "operator", "supervisor", "agency"):
                return channel.caller_num
        return ""


def _linkedid(request: IRequest, body: dict[str, Any] | None = None) -> str:
    if body is None:
        raw = (request.args.get(b"linkedid") or [b""])[0]
        value: Any = raw.decode("utf-8", "replace")
    else:
        value = body.get("linkedid")
    return incidents.validate_linkedid(value)


class _CaseEndpoint(ConsoleEndpoint):
    def __init__(self, console: Any, parts: CaseParts) -> None:  # noqa: ANN401
        super().__init__(console)
        self.parts = parts

    def owner(self, request: IRequest, linkedid: str) -> str | None:
        """None when the staff member may act on the call now; an operator's extension when
        the call log must say they answered it (the call is no longer on their phone)."""
        staff = request.staff  # type: ignore[attr-defined]
        if staff.role == "supervisor" or owns_call(self.parts.model, staff.extension, linkedid):
            return None
        live = self.parts.facts(linkedid) if self.parts.facts is not None else None
        if live is not None and live.answered_by == staff.extension:
            return None  # answered on this desk, the citizen now talking with an agency
        return staff.extension


class HistoryEndpoint(_CaseEndpoint):
    """``GET history?linkedid=``: the caller's history and flag for one call."""

    def render_GET(self, request: IRequest) -> Any:  # noqa: N802, ANN401
        linkedid = _linkedid(request)
        owner = self.owner(request, linkedid)
        parts = self.parts
        live_number = parts.citizen_number(linkedid)
        settings = parts.center().console
        now = parts.now()

        def work(session: Any) -> dict[str, Any]:  # noqa: ANN401
            incidents.check_answered(session, linkedid, owner)
            logged = session.scalar(select(Call.caller_number).where(Call.linkedid == linkedid))
            if not live_number and logged is None:
                raise incidents.NoSuchCall(f"no call {linkedid[:40]!r} live or in the log")
            # The log's number first: it is the citizen's for a callback too (whose first
            # channel is the operator's).
            number = logged or live_number or ""
            return {"linkedid": linkedid,
                    **history.caller_history(session, number, now, settings, linkedid)}

        return reply_later(request, parts.read(work))


class IncidentEndpoint(_CaseEndpoint):
    """``GET incident?linkedid=``: the call's incident, notes and disposition."""

    def render_GET(self, request: IRequest) -> Any:  # noqa: N802, ANN401
        linkedid = _linkedid(request)
        categories = [a.key for a in self.parts.center().agencies] + ["other"]
        d = self.parts.read(incidents.call_case_in, linkedid, self.owner(request, linkedid))
        d.addCallback(lambda doc: {**doc, "categories": categories})
        return reply_later(request, d)


class OpenEndpoint(_CaseEndpoint):
    """``POST incident-open``: open an incident from the call."""

    def render_POST(self, request: IRequest) -> Any:  # noqa: N802, ANN401
        body = json_object(request)
        linkedid = _linkedid(request, body)
        center = self.parts.center()
        category = incidents.validate_category(body.get("category"),
                                               {a.key for a in center.agencies})
        address = incidents.validate_text("address", body.get("address"),
                                          incidents.MAX_ADDRESS, required=False)
        note = incidents.validate_text("note", body.get("note"), incidents.MAX_NOTE,
                                       required=False)
        staff = request.staff  # type: ignore[attr-defined]
        d = self.parts.write(
            incidents.open_incident_in, linkedid, self.parts.citizen_number(linkedid), category,
            address, note, staff.extension, self.parts.now(), self.owner(request, linkedid))
        return reply_later(request, self.parts.published(d, "opened_from_call",
                                                         staff.extension), 201)


class NoteEndpoint(_CaseEndpoint):
    """``POST incident-note``: append a note (append-only: there is no edit, no delete)."""

    def render_POST(self, request: IRequest) -> Any:  # noqa: N802, ANN401
        body = json_object(request)
        linkedid = _linkedid(request, body)
        text = incidents.validate_text("text", body.get("text"), incidents.MAX_NOTE)
        staff = request.staff  # type: ignore[attr-defined]
        return reply_later(request, self.parts.write(
            incidents.add_note_in, linkedid, text, staff.extension, self.parts.now(),
            self.owner(request, linkedid)), 201)


class DispositionEndpoint(_CaseEndpoint):
    """``POST incident-disposition``: mark what the call was."""

    def render_POST(self, request: IRequest) -> Any:  # noqa: N802, ANN401
        body = json_object(request)
        linkedid = _linkedid(request, body)
        disposition = incidents.validate_disposition(body.get("disposition"))
        staff = request.staff  # type: ignore[attr-defined]
        return reply_later(request, self.parts.write(
            incidents.set_disposition_in, linkedid, self.parts.citizen_number(linkedid),
            disposition, staff.extension, self.parts.now(), self.owner(request, linkedid)))


class CloseEndpoint(_CaseEndpoint):
    """``POST incident-close``: close the call's incident with an outcome."""

    def render_POST(self, request: IRequest) -> Any:  # noqa: N802, ANN401
        body = json_object(request)
        linkedid = _linkedid(request, body)
        outcome = incidents.validate_text("outcome", body.get("outcome"),
                                          incidents.MAX_OUTCOME)
        staff = request.staff  # type: ignore[attr-defined]
        d = self.parts.write(incidents.close_incident_in, linkedid, outcome, staff.extension,
                             self.parts.now(), self.owner(request, linkedid))
        return reply_later(request, self.parts.published(d, "close", staff.extension))


class FlaggedEndpoint(_CaseEndpoint):
    """``GET flagged`` (supervisors): the flagged numbers with their calls."""

    roles = ("supervisor",)

    def render_GET(self, request: IRequest) -> Any:  # noqa: N802, ANN401
        parts = self.parts
        settings = parts.center().console
        d = parts.read(history.flagged_numbers, parts.now(), settings)
        d.addCallback(lambda numbers: {"numbers": numbers, "repeat_calls": settings.repeat_calls,
                                       "repeat_hours": settings.repeat_hours,
                                       "days": settings.history_days})
        return reply_later(request, d)


class FlaggedPage(Resource):
    """``/console/flagged``: the flagged numbers as a page, for supervisors (rendered on the
    server by the autoescaping templates: every number and note is text)."""

    isLeaf = True
    log = Logger()

    def __init__(self, console: Any, parts: CaseParts) -> None:  # noqa: ANN401
        super().__init__()
        self.console = console
        self.parts = parts

    def render_GET(self, request: IRequest) -> bytes | int:  # noqa: N802
        from dispatcher.web.site import send_error

        staff = self.console.staff(request)
        if staff is None:
            request.redirect(b"/login?next=/console/flagged")
            return b""
        if staff.role != "supervisor":
            return send_error(request, 403, "forbidden", f"a {staff.role} may not open this page")
        parts = self.parts
        settings = parts.center().console
        d = parts.read(history.flagged_numbers, parts.now(), settings)

        def done(numbers: list[dict[str, Any]]) -> None:
            request.write(self.console.page(request, "console-flagged.html.j2",
                                            numbers=numbers, settings=settings))
            request.finish()

        def failed(failure: Any) -> None:  # noqa: ANN401
            self.log.failure("flagged numbers could not be read", failure)
            request.write(send_error(request, 500, "internal_error",
                                     "the flagged numbers could not be read; see the log"))
            request.finish()

        d.addCallbacks(done, failed)
        return server.NOT_DONE_YET


def incident_endpoints(console: Any, parts: CaseParts) -> dict[str, Resource]:  # noqa: ANN401
    """The history and case endpoints by name (``SiagaServer.console_endpoints``)."""
    return {
        "history": HistoryEndpoint(console, parts),
        "incident": IncidentEndpoint(console, parts),
        "incident-open": OpenEndpoint(console, parts),
        "incident-note": NoteEndpoint(console, parts),
        "incident-disposition": DispositionEndpoint(console, parts),
        "incident-close": CloseEndpoint(console, parts),
        "flagged": FlaggedEndpoint(console, parts),
    }

