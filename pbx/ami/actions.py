"""The AMI actions the server uses, one thin method each, over any ``send_action``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer

from pbx.ami.protocol import AMIInjectionError, Message


@dataclass
class ListResult:
    """The outcome of an EventList action: its response, the listed events, and the
    ``...Complete`` event that closed the list."""

    response: Message
    events: list[Message] = field(default_factory=list)
    complete: Message | None = None


class AMIActions:
    """One thin method per AMI action the server uses; each returns a Deferred.

    A subclass provides :meth:`send_action`. Values are checked for CR/LF/NUL by the
    serializer; the Deferred fails with :class:`~pbx.ami.protocol.AMIInjectionError` and
    nothing is sent when one holds them.
    """

    def send_action(
        self,
        name: str,
        fields: Mapping[str, object] | Iterable[tuple[str, object]] = (),
        timeout: float | None = None,
    ) -> defer.Deferred[Any]:
        """Send an action; the Deferred fires with the response (or a :class:`ListResult`)."""
        raise NotImplementedError

    def ping(self) -> defer.Deferred[Message]:
        """``Ping``: the response proves the connection and Asterisk's manager are alive."""
        return self.send_action("Ping")

    def command(self, cli: str, timeout: float | None = None) -> defer.Deferred[list[str]]:
        """Run a CLI command; fires with its output lines.

        Needs the ``command`` write class, which the center's own AMI user does not have
        (the server runs CLI commands through the control socket: ``AsteriskService.cli``).
        """
        d = self.send_action("Command", {"Command": cli}, timeout)
        return d.addCallback(lambda response: list(response.output or ()))

    def originate(
        self,
        channel: str,
        *,
        context: str | None = None,
        exten: str | None = None,
        priority: int | str | None = None,
        application: str | None = None,
        data: str | None = None,
        caller_id: str | None = None,
        variables: Mapping[str, object] | None = None,
        account: str | None = None,
        channel_id: str | None = None,
        other_channel_id: str | None = None,
        originate_timeout_ms: int | None = None,
        timeout: float | None = None,
    ) -> defer.Deferred[Message]:
        """``Originate`` with ``Async: true``: fires when Asterisk has queued the call; the
        outcome comes as an ``OriginateResponse`` event carrying the same ActionID."""
        fields: list[tuple[str, object]] = [
            ("Channel", channel),
            ("Context", context),
            ("Exten", exten),
            ("Priority", priority),
            ("Application", application),
            ("Data", data),
            ("CallerID", caller_id),
            ("Account", account),
            ("ChannelId", channel_id),
            ("OtherChannelId", other_channel_id),
            ("Timeout", originate_timeout_ms),
            ("Async", "true"),
        ]
        for key, value in (variables or {}).items():
            if "=" in key:
                return defer.fail(AMIInjectionError(f"variable name {key!r} holds '='"))
            fields.append(("Variable", f"{key}={value}"))  # CR/LF/NUL: refused when sent
        return self.send_action("Originate", fields, timeout)

    def hangup(self, channel: str, cause: int | None = None) -> defer.Deferred[Message]:
        """``Hangup`` a channel (optionally with a Q.850 cause)."""
        return self.send_action("Hangup", {"Channel": channel, "Cause": cause})

    def redirect(
        self,
        channel: str,
        context: str,
        exten: str,
        priority: int | str = 1,
        extra_channel: str | None = None,
    ) -> defer.Deferred[Message]:
        """``Redirect`` a channel (and optionally its peer) to a dialplan location."""
        fields: dict[str, object] = {
            "Channel": channel, "Context": context, "Exten": exten, "Priority": priority,
        }
        if extra_channel is not None:
            fields.update(ExtraChannel=extra_channel, ExtraContext=context, ExtraExten=exten,
                          ExtraPriority=priority)
        return self.send_action("Redirect", fields)

    def bridge(self, channel1: str, channel2: str, tone: bool = False
               ) -> defer.Deferred[Message]:
        """``Bridge`` two answered channels together in a new basic bridge."""
        return self.send_action("Bridge", {"Channel1": channel1, "Channel2": channel2,
                                           "Tone": "yes" if tone else "no"})

    def atxfer(self, channel: str, exten: str, context: str | None = None
               ) -> defer.Deferred[Message]:
        """``Atxfer``: attended transfer of ``channel``'s peer to ``exten``."""
        return self.send_action("Atxfer", {"Channel": channel, "Exten": exten,
                                           "Context": context})

    def blindtransfer(self, channel: str, exten: str, context: str
                      ) -> defer.Deferred[Message]:
        """``BlindTransfer`` of ``channel`` to ``exten@context``."""
        return self.send_action("BlindTransfer", {"Channel": channel, "Exten": exten,
                                                  "Context": context})

    def getvar(self, variable: str, channel: str | None = None) -> defer.Deferred[str]:
        """``Getvar``: fires with the value ('' when unset)."""
        d = self.send_action("Getvar", {"Channel": channel, "Variable": variable})
        return d.addCallback(lambda response: response.get("Value"))

    def setvar(self, variable: str, value: object, channel: str | None = None
               ) -> defer.Deferred[Message]:
        """``Setvar`` on a channel, or a global variable when ``channel`` is None."""
        return self.send_action("Setvar", {"Channel": channel, "Variable": variable,
                                           "Value": value})

    def mixmonitor(self, channel: str, filename: str, options: str | None = None
                   ) -> defer.Deferred[Message]:
        """``MixMonitor``: record ``channel`` (both directions mixed) to ``filename``."""
        return self.send_action("MixMonitor", {"Channel": channel, "File": filename,
                                               "Options": options})

    def stop_mixmonitor(self, channel: str) -> defer.Deferred[Message]:
        """``StopMixMonitor`` on ``channel``."""
        return self.send_action("StopMixMonitor", {"Channel": channel})

    def corestatus(self) -> defer.Deferred[Message]:
        """``CoreStatus``: uptime, reload time, current calls."""
        return self.send_action("CoreStatus")

    def coreshowchannels(self, timeout: float | None = None) -> defer.Deferred[ListResult]:
        """``CoreShowChannels``: one ``CoreShowChannel`` event per channel."""
        return self.send_action("CoreShowChannels", (), timeout)

    def bridgelist(self, bridge_type: str | None = None, timeout: float | None = None
                   ) -> defer.Deferred[ListResult]:
        """``BridgeList``: one ``BridgeListItem`` event per bridge."""
        return self.send_action("BridgeList", {"BridgeType": bridge_type}, timeout)

    def bridgeinfo(self, bridge_uniqueid: str, timeout: float | None = None
                   ) -> defer.Deferred[ListResult]:
        """``BridgeInfo``: one ``BridgeInfoChannel`` event per channel in the bridge."""
        return self.send_action("BridgeInfo", {"BridgeUniqueid": bridge_uniqueid}, timeout)

    def queuestatus(self, queue: str | None = None, member: str | None = None,
                    timeout: float | None = None) -> defer.Deferred[ListResult]:
        """``QueueStatus``: ``QueueParams``, ``QueueMember`` and ``QueueEntry`` events."""
        return self.send_action("QueueStatus", {"Queue": queue, "Member": member}, timeout)

    def queuesummary(self, queue: str | None = None, timeout: float | None = None
                     ) -> defer.Deferred[ListResult]:
        """``QueueSummary``: one ``QueueSummary`` event per queue."""
        return self.send_action("QueueSummary", {"Queue": queue}, timeout)

    def queueadd(self, queue: str, interface: str, *, member_name: str | None = None,
                 state_interface: str | None = None, penalty: int | None = None,
                 paused: bool | None = None, reason: str | None = None
                 ) -> defer.Deferred[Message]:
        """``QueueAdd``: put an operator's interface into a queue."""
        return self.send_action("QueueAdd", {
            "Queue": queue, "Interface": interface, "MemberName": member_name,
            "StateInterface": state_interface, "Penalty": penalty, "Paused": paused,
            "Reason": reason,
        })

    def queueremove(self, queue: str, interface: str) -> defer.Deferred[Message]:
        """``QueueRemove``: take an interface out of a queue."""
        return self.send_action("QueueRemove", {"Queue": queue, "Interface": interface})

    def queuepause(self, interface: str, paused: bool, *, queue: str | None = None,
                   reason: str | None = None) -> defer.Deferred[Message]:
        """``QueuePause``: pause or unpause a member (in one queue or all)."""
        return self.send_action("QueuePause", {
            "Interface": interface, "Paused": paused, "Queue": queue, "Reason": reason,
        })

    def devicestatelist(self, timeout: float | None = None) -> defer.Deferred[ListResult]:
        """``DeviceStateList``: one ``DeviceStateChange`` event per known device."""
        return self.send_action("DeviceStateList", (), timeout)

    def pjsipshowendpoints(self, timeout: float | None = None) -> defer.Deferred[ListResult]:
        """``PJSIPShowEndpoints``: one ``EndpointList`` event per endpoint."""
        return self.send_action("PJSIPShowEndpoints", (), timeout)
