"""Physical panic buttons: a button's call to the panic number opens an incident.

The dialplan alone puts the call at the front of the operators' queue (``buttons`` context →
``hotline,panic``, priority 100): that works with the server down. The server adds the
incident, with the button's identity and configured place, from AMI events:

* ``Newchannel`` or ``Newexten`` in context ``buttons`` at the panic number → open the
  incident, once per call
  (the alert id is ``call-<linkedid>``, so a repeated event changes nothing);
* ``QueueCallerJoin`` → ``caller_queued``; ``AgentConnect`` → ``caller_connected`` (with the
  operator); ``QueueCallerAbandon`` → ``caller_abandoned``.

A button call that began while the server was not listening (the server started or restarted
during it, or AMI reconnected) has no event left to open its incident: after every AMI login
the server lists Asterisk's channels (``CoreShowChannels``, :meth:`ButtonWatcher.on_channels`);
a button's own channel opens its incident there (the same alert id, so a call the previous
process had already seen keeps its incident), is reported where it stands (waiting in the
queue, or bridged with an operator) and is followed by its live events from then on. A call
made entirely while the server was away is found in Asterisk's CEL when the call log
reconciles it (:meth:`ButtonWatcher.on_finished_call`).

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

from dialplans import contract
from dispatcher.alerts.incident import IncidentInput, InvalidTransition, next_state
from pbx.channels import endpoint_of

__all__ = ["ButtonWatcher", "extension_of"]

log = Logger(namespace="dispatcher.alerts.buttons")

_EXTENSION_RE = re.compile(r"^[0-9]{2,8}$")
_MEMBER_RE = re.compile(r"^(?:PJSIP/)?([A-Za-z0-9._-]{1,64})$")
BUTTONS_CONTEXT = contract.CONTEXT_BUTTONS

# (button extension, linkedid) -> fires with (incident id, its state once opened)
OpenIncident = Callable[[str, str], "Deferred[tuple[int, str]]"]
Report = Callable[[int, IncidentInput, str, "str | None"], object]


def extension_of(channel: str) -> str | None:
    """The extension of a PJSIP channel name (``PJSIP/901-0000002a`` → ``901``), else None."""
    endpoint = endpoint_of(channel)
    return endpoint if _EXTENSION_RE.match(endpoint) else None


class ButtonWatcher:
    """Follows button calls through AMI events and reports them as incident inputs."""

    def __init__(self, panic_number: str, extensions: Iterable[str], open_incident: OpenIncident,
                 report: Report, on_opened: Callable[[int, str], object] | None = None) -> None:
        self.panic_number = panic_number
        self.extensions = frozenset(extensions)
        self.open_incident = open_incident
        self.report = report
        self.on_opened = on_opened
        # button channel's Uniqueid -> its incident id (None if it could not be opened)
        self.calls: dict[str, Deferred[int | None]] = {}

    def on_newchannel(self, event: Any) -> None:
        """A new channel (or its first dialplan step, ``Newexten``): a button dialling the
        panic number opens an incident."""
        exten = event.get("Exten") or event.get("Extension")
        if event.get("Context") != BUTTONS_CONTEXT or exten != self.panic_number:
            return
        channel = event.get("Channel")
        extension = extension_of(channel)
        uniqueid = event.get("Uniqueid")
        if extension is None or extension not in self.extensions or not uniqueid:
            log.warn("panic call from {channel} which is not a configured button",
                     channel=channel, call_id=event.get("Linkedid") or uniqueid)
            return
        if uniqueid in self.calls:
            return
        self._open(channel, extension, uniqueid, event.get("Linkedid") or uniqueid)

    def _open(self, channel: str, extension: str, uniqueid: str, linkedid: str,
              catch_up: tuple[IncidentInput, str, str | None] | None = None) -> None:
        """Open the call's incident (once per call: the alert id is ``call-<linkedid>``) and
        follow the channel by its Uniqueid. ``catch_up`` (input, detail, operator) is where a
        call found after login stands: reported before any live event that came meanwhile."""
        d = self.open_incident(extension, linkedid)
        followed: Deferred[int | None] = Deferred()
        self.calls[uniqueid] = followed

        def opened(receipt: tuple[int, str]) -> None:
            incident_id, state = receipt
            if self.on_opened is not None:
                self.on_opened(incident_id, channel)
            if catch_up is not None:
                self._catch_up(incident_id, state, *catch_up)
            followed.callback(incident_id)

        def failed(failure: Failure) -> None:
            log.failure("button {ext}: the incident could not be opened", failure,
                        ext=extension, call_id=linkedid)
            if self.calls.get(uniqueid) is followed:
                del self.calls[uniqueid]
            followed.callback(None)  # the events already chained on it do nothing

        d.addCallbacks(opened, failed)

    def on_channels(self, channels: Iterable[Any]) -> None:
        """The ``CoreShowChannel`` events listed after an AMI login: open and place the button
        calls whose start this server did not see (see the module doc)."""
        listed = list(channels)
        in_bridge: dict[str, list[str]] = {}
        for item in listed:
            if item.get("BridgeId"):
                in_bridge.setdefault(item.get("BridgeId"), []).append(item.get("Channel") or "")
        for item in listed:
            channel = item.get("Channel") or ""
            extension = extension_of(channel)
            uniqueid = item.get("Uniqueid")
            if extension is None or extension not in self.extensions or not uniqueid:
                continue
            if uniqueid in self.calls:
                continue  # already followed from its live events
            # The button's own call (it dialled): a channel dialled *to* the button belongs
            # to another call. Its context only has the panic number.
            if (item.get("Linkedid") or uniqueid) != uniqueid:
                continue
            exten = item.get("Exten") or item.get("Extension")
            if item.get("Context") == BUTTONS_CONTEXT and exten != self.panic_number:
                continue
            log.info("button {ext}: call {channel} found in progress after AMI login",
                     ext=extension, channel=channel, call_id=uniqueid)
            catch_up: tuple[IncidentInput, str, str | None] | None = None
            bridge = item.get("BridgeId")
            if item.get("Application") != "Queue":
                pass  # not queued yet: its QueueCallerJoin is still to come, live
            elif not bridge:
                queue = (item.get("ApplicationData") or "").split(",")[0]
                catch_up = (IncidentInput.CALLER_QUEUED,
                            f"queue {queue} (found waiting after AMI login)", None)
            else:
                peers = [extension_of(c) for c in in_bridge.get(bridge, []) if c != channel]
                operator = next((p for p in peers if p is not None), None)
                catch_up = (IncidentInput.CALLER_CONNECTED,
                            f"operator {operator or '?'} (found talking after AMI login)",
                            operator)
            self._open(channel, extension, uniqueid, uniqueid, catch_up)

    def on_finished_call(self, record: Any) -> None:
        """A whole button call found afterwards in Asterisk's CEL (the server was away from
        its first event to its last; ``record`` is the call log's ``JourneyRecord``): open
        its incident (or find the one already open for it) and record how it ended: an
        operator took it (``talking``, for the operator to close) or nobody did
        (``unreachable``)."""
        channel = record.legs[0].channel if record.legs else ""
        extension = extension_of(channel)
        if (record.dialed != self.panic_number or extension is None
                or extension not in self.extensions or record.linkedid in self.calls):
            return
        if record.answered_at is not None:
            operator = record.answered_by
            catch_up = (IncidentInput.CALLER_CONNECTED,
                        f"operator {operator or '?'} (call found in CEL after downtime)",
                        operator)
        else:
            catch_up = (IncidentInput.CALLER_ABANDONED,
                        "the call ended before an operator answered (found in CEL after "
                        "downtime)", None)
        log.info("button {ext}: call {linkedid} made while the server was away",
                 ext=extension, linkedid=record.linkedid)
        self._open(channel, extension, record.linkedid, record.linkedid, catch_up)
        # Over already: no Hangup will come to stop following it.
        self.calls.pop(record.linkedid, None)

    def _catch_up(self, incident_id: int, state: str, what: IncidentInput, detail: str,
                  operator: str | None) -> None:
        try:
            next_state(state, what)
        except InvalidTransition:
            # Already past this point (the previous process followed the call that far):
            # nothing to catch up on, and no refused transition to log as an error.
            return
        self.report(incident_id, what, detail, operator)

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
