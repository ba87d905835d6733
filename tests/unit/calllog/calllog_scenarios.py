"""Event sequences of typical hotline journeys, as AMI and as CEL would report them.

Each scenario is written once as a timeline of what happened (``Timeline``); ``ami()`` renders
it as the AMI events Asterisk 22 sends (header names as on the wire) and ``cel()`` as the CEL
rows cel_custom writes, so the live builder and the reconciliation are tested on the same story.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from dispatcher.calllog.cel import CelRow
from dispatcher.calllog.journey import Directory

# 2026-11-27 03:00:00 UTC = 10:00 in Jakarta.
T0 = 1795748400.0

DIRECTORY = Directory(
    operators={"201": "op201", "202": "op202"},
    agencies={"301": "police", "302": "police", "309": "police", "311": "fire"},
)


@dataclass
class Timeline:
    """Builds matching AMI events and CEL rows for one journey."""

    linkedid: str
    t0: float = T0
    user_events: bool = True  # the dialplan's SIAGA_QUEUE/SIAGA_QUEUE_EXIT CEL user events
    events: list[dict[str, str]] = field(default_factory=list)
    rows: list[CelRow] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)
    bridges: dict[str, str] = field(default_factory=dict)  # uid -> bridge

    def _ts(self, at: float) -> str:
        return f"{self.t0 + at:.6f}"

    def _ami(self, at: float, name: str, uid: str = "", **fields: str) -> None:
        event = {"Event": name, "Timestamp": self._ts(at), "Linkedid": self.linkedid}
        if uid:
            event.update(Uniqueid=uid, Channel=self.names.get(uid, ""))
        event.update(fields)
        self.events.append(event)

    def _cel(self, at: float, kind: str, uid: str, **fields: str) -> None:
        self.rows.append(
            CelRow(
                eventtype=kind,
                eventtime=self.t0 + at,
                channame=self.names.get(uid, ""),
                uniqueid=uid,
                linkedid=self.linkedid,
                **fields,
            )
        )

    # -- what happens ----------------------------------------------------------------------------

    def channel(self, at: float, uid: str, name: str, number: str = "", exten: str = "") -> None:
        """A channel is created."""
        self.names[uid] = name
        self._ami(
            at, "Newchannel", uid, CallerIDNum=number or "<unknown>", Exten=exten, ChannelState="0"
        )
        self._cel(at, "CHAN_START", uid, cidnum=number, exten=exten)

    def dial(self, at: float, src: str, dst: str, dial_string: str = "") -> None:
        """``src`` dials ``dst`` (already created)."""
        self._ami(
            at,
            "DialBegin",
            src,
            DestChannel=self.names[dst],
            DestUniqueid=dst,
            DialString=dial_string,
        )

    def answer(self, at: float, uid: str, dialed_by: str | None = None) -> None:
        """A channel answers."""
        self._ami(at, "Newstate", uid, ChannelState="6", ChannelStateDesc="Up")
        if dialed_by is not None:
            self._ami(
                at,
                "DialEnd",
                dialed_by,
                DestChannel=self.names[uid],
                DestUniqueid=uid,
                DialStatus="ANSWER",
            )
        self._cel(at, "ANSWER", uid)

    def no_answer(self, at: float, uid: str, dialed_by: str, status: str, cause: int) -> None:
        """A dialled channel gives up unanswered and hangs up."""
        self._ami(
            at,
            "DialEnd",
            dialed_by,
            DestChannel=self.names[uid],
            DestUniqueid=uid,
            DialStatus=status,
        )
        self.hangup(at, uid, cause)

    def mark(self, at: float, uid: str, name: str, value: str) -> None:
        """The dialplan records a fact (Set() and CELGenUserEvent())."""
        self._ami(at, "VarSet", uid, Variable=f"__SIAGA_{name}", Value=value)
        self._cel(
            at, f"SIAGA_{name}", uid, appname="CELGenUserEvent", extra=json.dumps({"extra": value})
        )

    def dtmf(self, at: float, uid: str, digit: str, context: str = "ivr-id") -> None:
        """The citizen presses a key in a menu."""
        self._ami(
            at, "DTMFEnd", uid, Digit=digit, Direction="Received", Context=context, DurationMs="120"
        )
        self._cel(
            at,
            "DTMF",
            uid,
            context=context,
            appname="BackGround",
            extra=json.dumps({"digit": digit, "duration_ms": 120}),
        )

    def queue_join(self, at: float, uid: str, queue: str = "operators") -> None:
        """The citizen enters the queue. CEL (Asterisk 22) has no queue event: the dialplan's
        user event says so, and the queue's announcement is written with appname Queue."""
        self._ami(at, "QueueCallerJoin", uid, Queue=queue, Position="1")
        if self.user_events:
            self._cel(
                at,
                "SIAGA_QUEUE",
                uid,
                appname="CELGenUserEvent",
                extra=json.dumps({"extra": queue}),
            )
        self._cel(
            at,
            "STREAM_BEGIN",
            uid,
            appname="Queue",
            appdata=f"{queue},rt,,,60",
            extra=json.dumps({"sound": "queue-youarenext"}),
        )

    def queue_leave(self, at: float, uid: str, queue: str = "operators") -> None:
        """The citizen leaves the queue without an operator (timeout)."""
        self._ami(at, "QueueCallerLeave", uid, Queue=queue)
        if self.user_events:
            self._cel(
                at,
                "SIAGA_QUEUE_EXIT",
                uid,
                appname="CELGenUserEvent",
                extra=json.dumps({"extra": "TIMEOUT"}),
            )

    def queue_abandon(self, at: float, uid: str, queue: str = "operators") -> None:
        """The citizen hangs up while waiting."""
        self._ami(at, "QueueCallerAbandon", uid, Queue=queue)
        self._ami(at, "QueueCallerLeave", uid, Queue=queue)
        self.hangup(at, uid, 16, by_self=True)

    def agent_connect(
        self, at: float, citizen: str, member: str, interface: str, queue: str = "operators"
    ) -> None:
        """The queue hands the citizen to a member."""
        self._ami(at, "QueueCallerLeave", citizen, Queue=queue)
        self._ami(
            at,
            "AgentConnect",
            citizen,
            Queue=queue,
            DestChannel=self.names[member],
            DestUniqueid=member,
            Interface=interface,
            MemberName=interface,
        )

    def bridge(self, at: float, bridge: str, *uids: str) -> None:
        """Channels enter a bridge."""
        for uid in uids:
            self.bridges[uid] = bridge
            self._ami(at, "BridgeEnter", uid, BridgeUniqueid=bridge)
            self._cel(
                at,
                "BRIDGE_ENTER",
                uid,
                extra=json.dumps({"bridge_id": bridge, "bridge_technology": "simple"}),
            )

    def unbridge(self, at: float, *uids: str) -> None:
        """Channels leave their bridge."""
        for uid in uids:
            bridge = self.bridges.pop(uid)
            self._ami(at, "BridgeLeave", uid, BridgeUniqueid=bridge)
            self._cel(
                at,
                "BRIDGE_EXIT",
                uid,
                extra=json.dumps({"bridge_id": bridge, "bridge_technology": "simple"}),
            )

    def record(self, at: float, uid: str, path: str) -> None:
        """MixMonitor starts on a channel."""
        self._ami(at, "VarSet", uid, Variable="MIXMONITOR_FILENAME", Value=path)
        self._cel(
            at, "SIAGA_RECORDING", uid, appname="CELGenUserEvent", extra=json.dumps({"extra": path})
        )

    def hangup(self, at: float, uid: str, cause: int = 16, by_self: bool = False) -> None:
        """A channel hangs up."""
        if uid in self.bridges:
            self.unbridge(at, uid)
        self._ami(at, "Hangup", uid, Cause=str(cause))
        source = self.names[uid] if by_self else ""
        self._cel(
            at,
            "HANGUP",
            uid,
            extra=json.dumps({"hangupcause": cause, "hangupsource": source, "dialstatus": ""}),
        )
        self._cel(at, "CHAN_END", uid)

    def end(self, at: float) -> None:
        """The last channel is gone (CEL only: AMI has no such event)."""
        first = next(iter(self.names))
        self._cel(at, "LINKEDID_END", first)

    def ami(self) -> list[dict[str, str]]:
        """The AMI events in order."""
        return list(self.events)

    def cel(self) -> list[CelRow]:
        """The CEL rows in order."""
        return list(self.rows)


# --------------------------------------------------------------------------------------------
# Journeys


def answered_call(
    linkedid: str = "1000.1",
    t0: float = T0,
    number: str = "081234567",
    talk: float = 60.0,
    answer_at: float = 9.0,
    operator_ext: str = "201",
    user_events: bool = True,
) -> Timeline:
    """Menu (key 1: police), queue 4 s, operator 201 answers at ``answer_at``, talks ``talk``
    s."""
    tl = Timeline(linkedid, t0, user_events=user_events)
    citizen, operator = linkedid, linkedid + "1"
    tl.channel(0.0, citizen, f"PJSIP/trunk-{linkedid}", number, "112")
    tl.answer(0.5, citizen)
    tl.dtmf(2.5, citizen, "1")
    tl.mark(3.0, citizen, "CATEGORY", "police")
    tl.mark(3.0, citizen, "LANGUAGE", "id")
    tl.queue_join(answer_at - 4.0, citizen)
    tl.channel(answer_at - 3.0, operator, f"PJSIP/{operator_ext}-{linkedid}")
    tl.dial(answer_at - 3.0, citizen, operator)
    tl.answer(answer_at, operator, dialed_by=citizen)
    tl.agent_connect(answer_at, citizen, operator, f"PJSIP/{operator_ext}")
    tl.bridge(answer_at, "b-" + linkedid, operator, citizen)
    tl.record(answer_at, citizen, f"/rec/{linkedid}.wav")
    tl.hangup(answer_at + talk, citizen, 16, by_self=True)
    tl.hangup(answer_at + talk, operator, 16)
    tl.end(answer_at + talk)
    return tl


def abandoned_in_ivr(
    linkedid: str = "2000.1", t0: float = T0, after: float = 12.0, number: str = "0811111"
) -> Timeline:
    """The caller hangs up in the menu after ``after`` s."""
    tl = Timeline(linkedid, t0)
    tl.channel(0.0, linkedid, f"PJSIP/trunk-{linkedid}", number, "112")
    tl.answer(0.5, linkedid)
    tl.hangup(after, linkedid, 16, by_self=True)
    tl.end(after)
    return tl


def abandoned_in_queue(
    linkedid: str = "3000.1", t0: float = T0, after: float = 20.0, number: str = "0812222"
) -> Timeline:
    """The caller waits in queue from 5 s and hangs up at ``after`` s."""
    tl = Timeline(linkedid, t0)
    tl.channel(0.0, linkedid, f"PJSIP/trunk-{linkedid}", number, "112")
    tl.answer(0.5, linkedid)
    tl.mark(3.0, linkedid, "CATEGORY", "fire")
    tl.queue_join(5.0, linkedid)
    tl.queue_abandon(after, linkedid)
    tl.end(after)
    return tl


def queued_twice(linkedid: str = "4000.1", t0: float = T0) -> Timeline:
    """Queue 5-35 s (timeout), overflow back into the queue at 36 s, answered at 40 s."""
    tl = Timeline(linkedid, t0)
    citizen, operator = linkedid, linkedid + "1"
    tl.channel(0.0, citizen, f"PJSIP/trunk-{linkedid}", "0813333", "112")
    tl.answer(0.5, citizen)
    tl.mark(3.0, citizen, "CATEGORY", "health")
    tl.queue_join(5.0, citizen)
    tl.queue_leave(35.0, citizen)
    tl.queue_join(36.0, citizen)
    tl.channel(37.0, operator, f"PJSIP/202-{linkedid}")
    tl.answer(40.0, operator, dialed_by=citizen)
    tl.agent_connect(40.0, citizen, operator, "PJSIP/202")
    tl.bridge(40.0, "b-" + linkedid, operator, citizen)
    tl.hangup(100.0, operator, 16, by_self=True)
    tl.hangup(100.0, citizen, 16)
    tl.end(100.0)
    return tl


def failed_transfer_with_fallback(linkedid: str = "5000.1", t0: float = T0) -> Timeline:
    """Operator 201 answers at 10 s; police 301 rings 20-40 s unanswered; fallback 309 rings
    from 41 s, answers at 47 s, all three talk (conference) until 107 s."""
    tl = Timeline(linkedid, t0)
    citizen, operator, police, fallback = (linkedid, linkedid + "1", linkedid + "2", linkedid + "3")
    tl.channel(0.0, citizen, f"PJSIP/trunk-{linkedid}", "0814444", "112")
    tl.answer(0.5, citizen)
    tl.mark(3.0, citizen, "CATEGORY", "police")
    tl.queue_join(6.0, citizen)
    tl.channel(7.0, operator, f"PJSIP/201-{linkedid}")
    tl.answer(10.0, operator, dialed_by=citizen)
    tl.agent_connect(10.0, citizen, operator, "PJSIP/201")
    tl.bridge(10.0, "b-" + linkedid, operator, citizen)
    tl.channel(20.0, police, f"PJSIP/301-{linkedid}")
    tl.dial(20.0, operator, police)
    tl.no_answer(40.0, police, operator, "NOANSWER", 19)
    tl.channel(41.0, fallback, f"PJSIP/309-{linkedid}")
    tl.dial(41.0, operator, fallback)
    tl.answer(47.0, fallback, dialed_by=operator)
    tl.bridge(47.0, "b-" + linkedid, fallback)
    tl.hangup(107.0, citizen, 16, by_self=True)
    tl.hangup(107.0, fallback, 16)
    tl.hangup(107.0, operator, 16)
    tl.end(107.0)
    return tl


def ring_group(linkedid: str = "6000.1", t0: float = T0) -> Timeline:
    """Police ring group: 301 and 302 ring together from 20 s, 302 answers at 25 s."""
    tl = Timeline(linkedid, t0)
    citizen, operator, p1, p2 = linkedid, linkedid + "1", linkedid + "2", linkedid + "3"
    tl.channel(0.0, citizen, f"PJSIP/trunk-{linkedid}", "0815555", "112")
    tl.queue_join(2.0, citizen)
    tl.channel(3.0, operator, f"PJSIP/201-{linkedid}")
    tl.answer(5.0, operator, dialed_by=citizen)
    tl.agent_connect(5.0, citizen, operator, "PJSIP/201")
    tl.bridge(5.0, "b-" + linkedid, operator, citizen)
    tl.channel(20.0, p1, f"PJSIP/301-{linkedid}")
    tl.channel(20.0, p2, f"PJSIP/302-{linkedid}")
    tl.answer(25.0, p2, dialed_by=citizen)
    tl.no_answer(25.0, p1, citizen, "CANCEL", 26)
    tl.unbridge(25.0, operator)
    tl.hangup(25.0, operator, 16, by_self=True)
    tl.bridge(25.0, "b-" + linkedid, p2)
    tl.hangup(85.0, citizen, 16, by_self=True)
    tl.hangup(85.0, p2, 16)
    tl.end(85.0)
    return tl


def callback_call(linkedid: str = "7000.1", t0: float = T0, incident: int = 42) -> Timeline:
    """Operator-first callback: operator 202 rings at 0 s and answers at 3 s, the citizen's
    phone is dialled at 3 s and answers at 10 s; they talk until 70 s."""
    tl = Timeline(linkedid, t0)
    operator, citizen = linkedid, linkedid + "1"
    tl.channel(0.0, operator, f"PJSIP/202-{linkedid}", "", "s")
    tl.mark(0.1, operator, "INCIDENT", str(incident))
    tl.answer(3.0, operator)
    tl.channel(3.0, citizen, f"PJSIP/trunk-{linkedid}")
    tl.dial(3.0, operator, citizen, "trunk/08199999")
    tl.answer(10.0, citizen, dialed_by=operator)
    tl.bridge(10.0, "b-" + linkedid, operator, citizen)
    tl.hangup(70.0, citizen, 16, by_self=True)
    tl.hangup(70.0, operator, 16)
    tl.end(70.0)
    return tl


def alert_callback(linkedid: str = "9000.1", t0: float = T0, incident: int = 77) -> Timeline:
    """An alert's operator-first callback through a Local pair: the server originates
    Local/operator@siaga-alerts; its ;2 queues for an operator (202 answers at 4 s); then its
    ;1 dials the citizen, who answers at 12 s; they talk until 72 s."""
    tl = Timeline(linkedid, t0)
    one, two, operator, citizen = (linkedid, linkedid + "1", linkedid + "2", linkedid + "3")
    tl.channel(0.0, one, f"Local/operator@siaga-alerts-{linkedid};1", "", "operator")
    tl.channel(0.0, two, f"Local/operator@siaga-alerts-{linkedid};2", "", "operator")
    for uid in (one, two):
        tl.mark(0.0, uid, "INCIDENT", str(incident))
    tl._ami(
        0.1,
        "Newexten",
        two,
        Context="siaga-alerts",
        Application="Queue",
        AppData="operators,r,,,,,siaga-alerts-operator",
    )
    tl._cel(
        0.1, "STREAM_BEGIN", two, context="siaga-alerts", appname="Queue", appdata="operators,r"
    )
    tl.queue_join(0.1, two)
    tl.channel(1.0, operator, f"PJSIP/202-{linkedid}")
    tl.answer(4.0, operator, dialed_by=two)
    tl.agent_connect(4.0, two, operator, "PJSIP/202")
    tl.bridge(4.0, "q-" + linkedid, operator, two)
    tl.answer(4.0, one)
    tl.channel(4.1, citizen, f"PJSIP/trunk-{linkedid}")
    tl.dial(4.1, one, citizen, "trunk/08177777")
    tl.answer(12.0, citizen, dialed_by=one)
    tl.bridge(12.0, "c-" + linkedid, one, citizen)
    tl.hangup(72.0, citizen, 16, by_self=True)
    tl.hangup(72.0, one, 16)
    tl.hangup(72.0, two, 16)
    tl.hangup(72.0, operator, 16)
    tl.end(72.0)
    return tl
