"""Physical panic buttons: a button's call to the panic number opens an incident.

The dialplan alone puts the call at the front of the operators' queue (``buttons`` context →
``hotline,panic``, priority 100): that works with the server down. The server adds the
incident, with the button's identity and configured place, from AMI events:

* ``Newchannel`` or ``Newexten`` in context ``buttons`` at the panic number → open the
  incident, once per call
  (the alert id is ``call-<linkedid>``, so a repeated event changes nothing);
* ``QueueCallerJoin`` → ``caller_queued``; ``AgentConnect`` → ``caller_connected`` (with the
  operator); ``QueueCallerAbandon`` → ``caller_abandoned``.

The button is known by its PJSIP endpoint (from the channel name, which Asterisk sets after
digest authentication), never by the caller ID it sends.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from dispatcher.alerts.incident import IncidentInput

__all__ = ["ButtonWatcher", "endpoint_of"]

log = Logger(namespace="dispatcher.alerts.buttons")

_PJSIP_CHANNEL_RE = re.compile(r"^PJSIP/([0-9]{2,8})-[0-9a-f]+$")
_MEMBER_RE = re.compile(r"^(?:PJSIP/)?([A-Za-z0-9._-]{1,64})$")
BUTTONS_CONTEXT = "buttons"

OpenIncident = Callable[[str, str], "Deferred[int]"]
Report = Callable[[int, IncidentInput, str, "str | None"], object]


def endpoint_of(channel: str) -> str | None:
    """The extension of a PJSIP channel name (``PJSIP/901-0000002a`` → ``901``), else None."""
    match = _PJSIP_CHANNEL_RE.match(channel)
    return match.group(1) if match else None


class ButtonWatcher:
    """Follows button calls through AMI events and reports them as incident inputs."""

    def __init__(self, panic_number: str, extensions: Iterable[str], open_incident: OpenIncident,
                 report: Report, on_opened: Callable[[int, str], object] | None = None) -> None:
        self.panic_number = panic_number
        self.extensions = frozenset(extensions)
        self.open_incident = open_incident
        self.report = report
        self.on_opened = on_opened
        self.calls: dict[str, Deferred[int]] = {}  # button channel's Uniqueid -> incident id

    def on_newchannel(self, event: Any) -> None:
        """A new channel (or its first dialplan step, ``Newexten``): a button dialling the
        panic number opens an incident."""
        exten = event.get("Exten") or event.get("Extension")
        if event.get("Context") != BUTTONS_CONTEXT or exten != self.panic_number:
            return
        channel = event.get("Channel")
        extension = endpoint_of(channel)
        uniqueid = event.get("Uniqueid")
        if extension is None or extension not in self.extensions or not uniqueid:
            log.warn("panic call from {channel} which is not a configured button",
                     channel=channel)
            return
        if uniqueid in self.calls:
            return
        linkedid = event.get("Linkedid") or uniqueid
        d = self.open_incident(extension, linkedid)
        self.calls[uniqueid] = d

        def opened(incident_id: int) -> int:
            if self.on_opened is not None:
                self.on_opened(incident_id, channel)
            return incident_id

        def failed(failure: Failure) -> None:
            log.failure("button {ext}: the incident could not be opened", failure,
                        ext=extension)
            self.calls.pop(uniqueid, None)

        d.addCallbacks(opened, failed)

    def _follow(self, event: Any, what: IncidentInput, detail: str,
                operator: str | None = None) -> None:
        d = self.calls.get(event.get("Uniqueid"))
        if d is None:
            return

        def apply(incident_id: int | None) -> int | None:
            if incident_id is not None:
                self.report(incident_id, what, detail, operator)
            return incident_id

        d.addCallback(apply)

    def on_queue_join(self, event: Any) -> None:
        """``QueueCallerJoin``: the button's call waits for an operator."""
        self._follow(event, IncidentInput.CALLER_QUEUED,
                     f"queue {event.get('Queue')} position {event.get('Position')}")

    def on_agent_connect(self, event: Any) -> None:
        """``AgentConnect``: an operator answered the button's call."""
        match = _MEMBER_RE.match(event.get("Interface") or event.get("MemberName"))
        operator = match.group(1) if match else None
        self._follow(event, IncidentInput.CALLER_CONNECTED, f"operator {operator or '?'}",
                     operator)

    def on_queue_abandon(self, event: Any) -> None:
        """``QueueCallerAbandon``: the call ended before an operator answered."""
        self._follow(event, IncidentInput.CALLER_ABANDONED, "the call ended in the queue")

    def on_hangup(self, event: Any) -> None:
        """``Hangup`` of the button's channel: stop following it."""
        self.calls.pop(event.get("Uniqueid"), None)
