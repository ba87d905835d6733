"""``GET /console/api/location?linkedid=...``: where the caller of a call is, for its card.

An operator asks only about a call on their own phone, a supervisor about any
(:class:`dispatcher.console.location.CardLocations`); the answer is JSON, a refusal too.
"""

from __future__ import annotations

from typing import Any

from twisted.web.server import Request

from dispatcher.console.location import CardLocations
from dispatcher.web.console_api import ConsoleEndpoint, reply_later

__all__ = ["LocationEndpoint"]


class LocationEndpoint(ConsoleEndpoint):
    """The call card's location (see the module docstring)."""

    def __init__(self, console: Any, locations: CardLocations) -> None:  # noqa: ANN401
        super().__init__(console)
        self.locations = locations

    def render_GET(self, request: Request) -> Any:  # noqa: N802, ANN401
        """``?linkedid=``: the call's locations, best first."""
        raw = (request.args.get(b"linkedid") or [b""])[0][:200]
        linkedid = raw.decode("ascii", "replace")
        staff = request.staff  # type: ignore[attr-defined]
        return reply_later(request, self.locations.for_call(staff.extension, staff.role,
                                                            linkedid))
