"""The console's push views, wired to their sources of change (the server calls
:func:`publish_console` once, on its push hub).

* ``desk`` (personal): the operator's own desk and call card (:class:`~.desk.Desks`);
* ``console`` (shared): callers waiting, callbacks owed, open incidents (:mod:`.lists`).

Both change with AMI events (the live model), the model's resyncs, the call log's journeys
(the card's category, language, priority as the dialplan sets them), the callback list and
the incident feed. The open incidents are read once from the database, so the list is whole
after a restart.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from dispatcher.config.model import Center
from dispatcher.console.calls import desk_channels, desk_of
from dispatcher.console.desk import Desks
from dispatcher.console.lists import OWED_SHOWN, OpenIncidents, lists_document, read_open_incidents
from pbx.ami.model import LiveModel

__all__ = ["CONSOLE_VIEW", "DESK_VIEW", "ConsoleViews", "own_calls", "publish_console",
           "supervisors_only"]

log = Logger(namespace="dispatcher.console.views")

#: How many of its latest calls an operator's streams keep seeing the hand-offs of.
DESK_CALLS_KEPT = 20

DESK_VIEW = "desk"
CONSOLE_VIEW = "console"


class ConsoleViews:
    """The console's parts behind its views: each desk's card, the open incidents."""

    def __init__(self, model: LiveModel, journeys: Any, center: Callable[[], Center],  # noqa: ANN401
                 callbacks: Any) -> None:  # noqa: ANN401
        self.model = model
        self.journeys = journeys
        self.callbacks = callbacks
        self.incidents = OpenIncidents()
        self.desks = Desks(model, journeys, center, self.incidents, self._callback_number)
        self.center = center
        self._desk_calls: dict[str, deque[str]] = {}  # each operator's latest calls

    def note(self, event: Any) -> None:  # noqa: ANN401 (a pbx.ami.protocol.Message)
        """Remember the call of a channel an AMI event shows on an operator's phone: its
        hand-offs stay that operator's to see after the call has left the phone."""
        fields = getattr(event, "fields", event)
        if not isinstance(fields, Mapping):
            return
        desk, linkedid = desk_of(fields.get("Channel", "")), fields.get("Linkedid", "")
        if not desk or not linkedid:
            return
        calls = self._desk_calls.get(desk)
        if calls is None:
            if desk not in {op.extension for op in self.center().operators}:
                return
            calls = self._desk_calls[desk] = deque(maxlen=DESK_CALLS_KEPT)
        if linkedid not in calls:
            calls.append(linkedid)

    def _callback_number(self, entry_id: int) -> str | None:
        try:
            return str(self.callbacks.get(entry_id).number)
        except KeyError:
            return None

    def calls_of(self, extension: str) -> set[str]:
        """The calls that are ``extension``'s to see: those on the desk's phone now, and
        its card's (the last call stays on the card, ended, until the next one rings)."""
        calls = {c.linkedid for c in desk_channels(self.model, extension) if c.linkedid}
        calls.update(self._desk_calls.get(extension, ()))
        card = self.desks.card(extension)
        if card is not None:
            calls.add(card["linkedid"])
        return calls

    def lists(self) -> dict[str, Any]:
        """The shared ``console`` view."""
        return lists_document(self.model, self.journeys, self.callbacks.page(0, OWED_SHOWN),
                              self.callbacks.open_count, self.incidents)


def publish_console(push: Any, views: ConsoleViews, ami: Any, model_sync: Any,  # noqa: ANN401
                    feed: Any, read: Callable[..., Deferred[Any]]) -> ConsoleViews:  # noqa: ANN401
    """Add the console's views to ``push`` and mark them changed from every source;
    start reading the open incidents with ``read`` (a read pool's ``run``)."""
    push.add_personal_view(DESK_VIEW, views.desks.document)
    push.add_view(CONSOLE_VIEW, views.lists)

    def changed(*_args: Any) -> None:  # noqa: ANN401
        push.changed(DESK_VIEW)
        push.changed(CONSOLE_VIEW)

    def event(message: Any) -> None:  # noqa: ANN401
        views.note(message)
        changed()

    ami.subscribe_all(event)
    model_sync.on_resynced(changed)
    views.journeys.listeners.append(changed)

    def incident(item: dict[str, Any]) -> None:
        views.incidents.feed(item)
        changed()

    feed.listeners.append(incident)

    def loaded(rows: list[dict[str, Any]]) -> None:
        views.incidents.load(rows)
        changed()

    def failed(failure: Failure) -> None:
        log.failure("the open incidents could not be read; the list fills as they change",
                    failure)

    read(read_open_incidents).addCallbacks(loaded, failed)
    return views


def supervisors_only(render: Callable[[], dict[str, Any]]
                     ) -> Callable[[Any], dict[str, Any] | None]:  # noqa: ANN401
    """A personal view of ``render()`` that only supervisors' streams get (every desk's
    call: an operator's page is not told of another operator's calls)."""
    def personal(staff: Any) -> dict[str, Any] | None:  # noqa: ANN401
        return render() if staff.role == "supervisor" else None
    return personal


def own_calls(render: Callable[[], dict[str, Any]], views: ConsoleViews
              ) -> Callable[[Any], dict[str, Any]]:
    """A personal view of ``render()`` (keyed by linkedid) holding, for an operator, only
    the operator's own calls (:meth:`ConsoleViews.calls_of`); supervisors get all."""
    def personal(staff: Any) -> dict[str, Any]:  # noqa: ANN401
        document = render()
        if staff.role == "supervisor":
            return document
        mine = views.calls_of(staff.extension)
        return {linkedid: value for linkedid, value in document.items() if linkedid in mine}
    return personal
