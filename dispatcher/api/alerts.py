"""The API's alert resources: a panic app's alerts and enrolment, operators' incidents.

``POST /api/v1/alerts`` and ``GET /api/v1/alerts/{alert_id}`` (a device's own alert),
``POST /api/v1/enrol`` (a one-time link's code for a token), and the operator endpoints
``/api/v1/incidents/{id}``, ``.../events`` and ``/api/v1/incidents/feed``, which answer only
the center's own machine (``check_operator``).
"""

from __future__ import annotations

from typing import Any

from twisted.web.server import Request

from dispatcher.alerts.feed import IncidentFeed
from dispatcher.alerts.incident import IncidentInput
from dispatcher.alerts.intake import parse_json_object
from dispatcher.alerts.outcomes import AlertAccepted
from dispatcher.alerts.service import AlertService
from dispatcher.api.base import (
    JsonResource,
    check_operator,
    finish_async,
    header,
    int_arg,
    read_body,
)
from dispatcher.api.errors import ApiError, json_body
from dispatcher.config.model import AGENCY_KINDS

__all__ = ["AlertsResource", "EnrolResource", "FeedResource", "IncidentsResource",
           "render_feed"]

MAX_FEED_WAIT = 30.0
# Inputs an operator may give through the API; the rest come from Asterisk's events.
OPERATOR_INPUTS = {IncidentInput.HAND_TO_AGENCY, IncidentInput.CLOSE, IncidentInput.CANCEL}


class AlertsResource(JsonResource):
    """``POST /api/v1/alerts``."""

    isLeaf = True

    def __init__(self, alerts: AlertService) -> None:
        super().__init__()
        self.alerts = alerts

    def render_POST(self, request: Request) -> bytes | int:  # noqa: N802
        """Take an alert: 201 once committed, 200 for a retry of a known alert id."""
        if request.postpath not in ([], [b""]):
            raise ApiError(404, "not_found", "no such resource")
        body = read_body(request, self.alerts.settings.max_body_bytes)
        headers = {name: header(request, name.encode()) for name in
                   ("authorization", "x-siaga-timestamp", "x-siaga-signature")}
        source = getattr(request.getClientAddress(), "host", None)
        d = self.alerts.post_alert(headers, body, source)

        def render(taken: AlertAccepted) -> tuple[int, bytes, dict[str, str]]:
            url = f"/api/v1/incidents/{taken.incident_id}"
            document = {"alert_id": taken.alert_id, "incident_id": taken.incident_id,
                        "state": taken.state, "created": taken.created, "incident_url": url}
            if not taken.created:
                return 200, json_body(document), {}  # a retry of an alert already stored
            return 201, json_body(document), {"Location": url}

        return finish_async(request, d, render)

    def render_GET(self, request: Request) -> bytes | int:  # noqa: N802
        """``GET /api/v1/alerts/{alert_id}``: the sending device's view of its own alert."""
        parts = [p.decode("ascii", "replace") for p in request.postpath]
        if parts and parts[-1] == "":
            parts = parts[:-1]
        if not parts:
            raise ApiError(405, "method_not_allowed", "GET is not allowed here: "
                           "GET /alerts/{alert_id} reads one alert", {"Allow": "POST"})
        if len(parts) != 1:
            raise ApiError(404, "not_found", "no such resource")
        headers = {name: header(request, name.encode()) for name in
                   ("authorization", "x-siaga-timestamp", "x-siaga-signature",
                    "x-siaga-device")}
        source = getattr(request.getClientAddress(), "host", None)
        d = self.alerts.alert_status(headers, parts[0], source)
        return finish_async(request, d, lambda doc: (200, json_body(doc), {}))


class EnrolResource(JsonResource):
    """``POST /api/v1/enrol``: a panic app spends its one-time code for its token."""

    isLeaf = True

    def __init__(self, alerts: AlertService) -> None:
        super().__init__()
        self.alerts = alerts

    def render_POST(self, request: Request) -> bytes | int:  # noqa: N802
        """``{"code": ...}`` → 200 ``{"device_id", "token", "callback_number", "label"}``."""
        if request.postpath not in ([], [b""]):
            raise ApiError(404, "not_found", "no such resource")
        body = read_body(request, 1024)
        source = getattr(request.getClientAddress(), "host", None)
        d = self.alerts.enrol(body, source)
        return finish_async(request, d, lambda doc: (200, json_body(doc), {}))


def render_feed(request: Request, feed: IncidentFeed) -> int:
    """``GET .../feed?after=N&wait=S`` (the operator check already passed): the events after
    ``N``, at once or when one arrives within ``S`` seconds."""
    after = int_arg(request, b"after", 0, 0, 2**62)
    wait = int_arg(request, b"wait", 0, 0, int(MAX_FEED_WAIT))
    d = feed.wait(after, float(wait))
    return finish_async(request, d, lambda events: (
        200, json_body(feed.answer(after, events)), {}))  # type: ignore[no-any-return]


class FeedResource(JsonResource):
    """``/api/v1/incidents/feed`` alone, over a feed: an intake process answers the operators'
    long-polls from its mirror of the writer's feed (``IncidentFeed.mirror``)."""

    isLeaf = True

    def __init__(self, feed: IncidentFeed, operator_token: str | None) -> None:
        super().__init__()
        self.feed = feed
        self.operator_token = operator_token

    def render_GET(self, request: Request) -> bytes | int:  # noqa: N802
        """The feed, as the writer's own ``IncidentsResource`` answers it."""
        check_operator(request, self.operator_token)
        return render_feed(request, self.feed)


class IncidentsResource(JsonResource):
    """``/api/v1/incidents/{id}``, ``/api/v1/incidents/{id}/events``, ``.../feed``."""

    isLeaf = True

    def __init__(self, alerts: AlertService, operator_token: str | None) -> None:
        super().__init__()
        self.alerts = alerts
        self.operator_token = operator_token

    def _check_operator(self, request: Request) -> None:
        check_operator(request, self.operator_token)

    def _route(self, request: Request) -> tuple[str, int | None]:
        parts = [p.decode("ascii", "replace") for p in request.postpath]
        if parts and parts[-1] == "":
            parts = parts[:-1]
        if parts == ["feed"]:
            return "feed", None
        if 1 <= len(parts) <= 2 and parts[0].isdigit() and len(parts[0]) <= 12:
            if len(parts) == 1:
                return "incident", int(parts[0])
            if parts[1] == "events":
                return "events", int(parts[0])
        raise ApiError(404, "not_found", "no such resource")

    def render_GET(self, request: Request) -> bytes | int:  # noqa: N802
        """An incident (location, note, state, history), or the feed of changes."""
        kind, incident_id = self._route(request)
        if kind == "events":
            raise ApiError(405, "method_not_allowed", "GET is not allowed here",
                           {"Allow": "POST"})
        self._check_operator(request)
        if kind == "feed":
            return render_feed(request, self.alerts.feed)
        assert incident_id is not None
        d = self.alerts.incident(incident_id)

        def render(document: dict[str, Any] | None) -> tuple[int, bytes, dict[str, str]]:
            if document is None:
                raise ApiError(404, "not_found", f"no incident {incident_id}")
            return 200, json_body(document), {}

        return finish_async(request, d, render)

    def render_POST(self, request: Request) -> bytes | int:  # noqa: N802
        """An operator's input: ``{"input": "hand_to_agency"|"close"|"cancel", ...}``."""
        kind, incident_id = self._route(request)
        if kind != "events":
            raise ApiError(405, "method_not_allowed", "POST is not allowed here",
                           {"Allow": "GET"})
        self._check_operator(request)
        body = read_body(request, 4096)
        document = parse_json_object(body, 4096)
        unknown = sorted(set(document) - {"input", "agency", "detail"})
        if unknown:
            raise ApiError(422, "unknown_field", f"unknown field(s): {', '.join(unknown)}")
        raw = document.get("input")
        allowed = sorted(i.value for i in OPERATOR_INPUTS)
        if not isinstance(raw, str) or raw not in allowed:
            raise ApiError(422, "invalid_field", f"input must be one of {', '.join(allowed)}")
        what = IncidentInput(raw)
        agency = document.get("agency")
        if what is IncidentInput.HAND_TO_AGENCY:
            if agency not in AGENCY_KINDS:
                raise ApiError(422, "invalid_field",
                               f"agency must be one of {', '.join(AGENCY_KINDS)}")
        elif agency is not None:
            raise ApiError(422, "invalid_field", "agency goes with hand_to_agency only")
        detail = document.get("detail", "")
        if not isinstance(detail, str) or len(detail) > 500 or any(
                ord(c) < 32 or ord(c) == 127 for c in detail):
            raise ApiError(422, "invalid_field", "detail must be one line of at most 500 "
                           "characters")
        assert incident_id is not None
        d = self.alerts.operator_input(incident_id, what, detail, agency)
        return finish_async(request, d, lambda r: (200, json_body({
            "incident_id": r.incident_id, "from": r.from_state, "state": r.to_state}), {}))
