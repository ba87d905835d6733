"""The console's push views, wired to their sources of change (the server calls
:func:`publish_console` once, on its push hub).

* ``desk`` (personal): the operator's own desk and call card (:class:`~.desk.Desks`);
* ``console`` (shared): callers waiting, callbacks owed, open incidents (:mod:`.lists`),
  and over several nodes each node's state (``nodes``: the pages' banner of a node down).

:meth:`ConsoleViews.own_calls` makes a per-call document (the hand-offs, what the card's
buttons may do) personal: each page gets its own calls' entries only.

Both change with AMI events (the live model), the model's resyncs, the call log's journeys
(the card's category, language, priority as the dialplan sets them), the callback list and
the incident feed. The open incidents are read once from the database, so the list is whole
after a restart.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from dispatcher.config.model import Center
from dispatcher.console.calls import desk_channels, desk_of
from dispatcher.console.desk import Desks
from dispatcher.console.lists import OWED_SHOWN, OpenIncidents, lists_document, read_open_incidents
from pbx.ami.model import LiveModel

__all__ = ["CONSOLE_VIEW", "DESK_VIEW", "ConsoleViews", "DeskCalls", "publish_console"]

log = Logger(namespace="dispatcher.console.views")

DESK_VIEW = "desk"
CONSOLE_VIEW = "console"


class DeskCalls:
    """The calls each staff phone was in lately (linkedids, from AMI events): a page still
    sees the hand-offs of a call its phone has left (a blind hand-off, the agency failing
    after), and never those of a call its phone was never in. Bounded per phone; only the
    phones of ``staff()`` (the config's operators and supervisors) are kept."""

    per_desk = 20

    def __init__(self, staff: Callable[[], set[str]]) -> None:
        self.staff = staff
        self.calls: dict[str, dict[str, None]] = {}

    def on_event(self, event: Any) -> None:  # noqa: ANN401 (a pbx.ami.protocol.Message)
        """Take one AMI event: a staff phone's channel in a call."""
        linkedid = event.get("Linkedid") or ""
        desk = desk_of(event.get("Channel") or "")
        if not linkedid or desk is None or desk not in self.staff():
            return
        calls = self.calls.setdefault(desk, {})
        calls.pop(linkedid, None)
        calls[linkedid] = None  # the latest last
        while len(calls) > self.per_desk:
            calls.pop(next(iter(calls)))

    def of(self, extension: str) -> set[str]:
        """The calls ``extension``'s phone was in lately."""
        return set(self.calls.get(extension, ()))


class ConsoleViews:
    """The console's parts behind its views: each desk's card, the open incidents."""

    def __init__(self, model: LiveModel, journeys: Any, center: Callable[[], Center],  # noqa: ANN401
                 callbacks: Any,  # noqa: ANN401
                 nodes: Callable[[], list[dict[str, Any]]] | None = None) -> None:
        self.model = model
        #: Each node's name and state, when the center runs over several (else None).
        self.nodes = nodes
        self.journeys = journeys
        self.callbacks = callbacks
        self.incidents = OpenIncidents()
        self.desks = Desks(model, journeys, center, self.incidents, self._callback_number)
        self.desk_calls = DeskCalls(lambda: {op.extension for op in center().operators}
                                    | set(center().supervisors))

    def _callback_number(self, entry_id: int) -> str | None:
        try:
            return str(self.callbacks.get(entry_id).number)
        except KeyError:
            return None

    def lists(self) -> dict[str, Any]:
        """The shared ``console`` view (with ``nodes``, each node's name and whether it is
        up, when the center runs over several)."""
        document = lists_document(self.model, self.journeys,
                                  self.callbacks.page(0, OWED_SHOWN),
                                  self.callbacks.open_count, self.incidents)
        if self.nodes is not None:
            document["nodes"] = self.nodes()
        return document

    def calls_of(self, extension: str) -> set[str]:
        """The calls (linkedids) that are ``extension``'s to see: those with a channel on
        the desk's phone now or lately (:class:`DeskCalls`), and the call its card last
        showed (an ended card still shows its hand-offs)."""
        calls = {c.linkedid for c in desk_channels(self.model, extension) if c.linkedid}
        calls |= self.desk_calls.of(extension)
        last = self.desks.last_call(extension)
        if last:
            calls.add(last)
        return calls

    def own_calls(self, document: Callable[[], dict[str, Any]]
                  ) -> Callable[[Any], dict[str, Any]]:
        """A personal view of ``document()`` (keyed by linkedid, every call's): for each
        member of staff only the entries of their own calls (:meth:`calls_of`)."""

        def render(staff: Any) -> dict[str, Any]:  # noqa: ANN401 (sessions.Staff)
            mine = self.calls_of(staff.extension)
            return {linkedid: entry for linkedid, entry in document().items()
                    if linkedid in mine}

        return render


def publish_console(push: Any, views: ConsoleViews, ami: Any, model_sync: Any,  # noqa: ANN401
                    feed: Any, read: Callable[..., Deferred[Any]]) -> ConsoleViews:  # noqa: ANN401
    """Add the console's views to ``push`` and mark them changed from every source;
    start reading the open incidents with ``read`` (a read pool's ``run``)."""
    push.add_personal_view(DESK_VIEW, views.desks.document)
    push.add_view(CONSOLE_VIEW, views.lists)

    def changed(*_args: Any) -> None:  # noqa: ANN401
        push.changed(DESK_VIEW)
        push.changed(CONSOLE_VIEW)

    ami.subscribe_all(views.desk_calls.on_event)
    ami.subscribe_all(changed)
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
        views.incidents.load([])

    read(read_open_incidents).addCallbacks(loaded, failed)
    return views

