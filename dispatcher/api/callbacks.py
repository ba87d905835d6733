"""The API's callback resources: the hotline's list of callbacks owed, and ringing one.

Operator endpoints: they answer only the center's own machine (``check_operator``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from twisted.web.server import Request

from dispatcher.alerts.intake import parse_json_object
from dispatcher.api.base import (
    JsonResource,
    check_operator,
    finish_async,
    int_arg,
    read_body,
    send,
)
from dispatcher.api.errors import ApiError, json_body
from dispatcher.hotline.callbacks import CallbackEntry
from dispatcher.hotline.service import HotlineService

__all__ = ["CALLBACKS_PAGE", "CALLBACKS_PAGE_MAX", "CallbacksResource", "callback_document"]

# A page of the callback list: the list may hold thousands (a flood of hang-ups), a request
# never serializes more than this.
CALLBACKS_PAGE = 50
CALLBACKS_PAGE_MAX = 200


def callback_document(entry: CallbackEntry) -> dict[str, Any]:
    """A callback as operators see it, with the evidence it is ranked by."""
    created = dt.datetime.fromtimestamp(entry.created_at, dt.UTC)
    return {
        "id": entry.id, "number": entry.number, "reason": entry.reason,
        "category": entry.category, "state": entry.state, "attempts": entry.attempts,
        "created_at": created.isoformat().replace("+00:00", "Z"), "calls": list(entry.calls),
        "endpoint": entry.endpoint, "missed_calls": entry.missed,
        "waited_s": round(entry.waited, 1), "queued": entry.queued,
        "strength": round(entry.strength, 1),
    }


class CallbacksResource(JsonResource):
    """``/api/v1/callbacks`` (the open ones, a page) and ``/api/v1/callbacks/{id}/call``.

    The hotline's callback list: citizens who hung up before an operator answered, or whose
    call dropped right after, the strongest evidence of a person first; ``?limit=&offset=``
    pages through it. ``POST .../call`` with ``{"operator": "201"}`` rings that operator's
    phone first; once answered, the dialplan dials the citizen, by the way they came in
    only (409 ``no_way_back`` otherwise, and nothing is dialled).
    """

    isLeaf = True

    def __init__(self, hotline: HotlineService, operator_token: str | None) -> None:
        super().__init__()
        self.hotline = hotline
        self.operator_token = operator_token

    def _route(self, request: Request) -> int | None:
        parts = [p.decode("ascii", "replace") for p in request.postpath]
        if parts and parts[-1] == "":
            parts = parts[:-1]
        if not parts:
            return None
        if len(parts) == 2 and parts[0].isdigit() and len(parts[0]) <= 12 \
                and parts[1] == "call":
            return int(parts[0])
        raise ApiError(404, "not_found", "no such resource")

    def render_GET(self, request: Request) -> bytes:  # noqa: N802
        """A page of the callbacks still owed, strongest evidence first (then oldest)."""
        if self._route(request) is not None:
            raise ApiError(405, "method_not_allowed", "GET is not allowed here",
                           {"Allow": "POST"})
        check_operator(request, self.operator_token)
        limit = int_arg(request, b"limit", CALLBACKS_PAGE, 1, CALLBACKS_PAGE_MAX)
        offset = int_arg(request, b"offset", 0, 0, 10**9)
        callbacks = self.hotline.callbacks
        entries = callbacks.page(offset, limit)
        total = callbacks.open_count
        following = offset + len(entries)
        return send(request, 200, json_body({
            "callbacks": [callback_document(e) for e in entries], "total": total,
            "offset": offset, "limit": limit,
            "next_offset": following if following < total else None,
        }))

    def render_POST(self, request: Request) -> bytes | int:  # noqa: N802
        """Ring an operator for a callback: ``{"operator": "<extension>"}``."""
        entry_id = self._route(request)
        if entry_id is None:
            raise ApiError(405, "method_not_allowed", "POST is not allowed here",
                           {"Allow": "GET"})
        check_operator(request, self.operator_token)
        document = parse_json_object(read_body(request, 4096), 4096)
        unknown = sorted(set(document) - {"operator", "ring_seconds"})
        if unknown:
            raise ApiError(422, "unknown_field", f"unknown field(s): {', '.join(unknown)}")
        operator = document.get("operator")
        ring = document.get("ring_seconds", 30)
        if not isinstance(operator, str) or not operator.isdigit() or len(operator) > 12:
            raise ApiError(422, "invalid_field", "operator must be an extension (digits)")
        if not isinstance(ring, int) or isinstance(ring, bool) or not 5 <= ring <= 120:
            raise ApiError(422, "invalid_field", "ring_seconds must be an integer 5..120")
        try:
            entry = self.hotline.callbacks.get(entry_id)
        except KeyError:
            raise ApiError(404, "not_found", f"no callback {entry_id}") from None
        if not entry.open:
            raise ApiError(409, "not_open", f"callback {entry_id} is {entry.state}")
        if entry.state == "ringing":
            raise ApiError(409, "already_ringing", f"callback {entry_id} is ringing now")
        # Refused (invalid input, no way back, the PBX away or refusing): HTTP_REFUSALS.
        d = self.hotline.call_back(entry_id, operator, ring)
        return finish_async(request, d, lambda _: (
            202, json_body(callback_document(self.hotline.callbacks.get(entry_id))), {}))
