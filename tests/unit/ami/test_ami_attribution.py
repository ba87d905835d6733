"""Only the dialplan's own, signed user events change the server's state (pbx.ami.attribution).

A caller ID holding CR LF ends the AMI event it is written into, and whatever follows reads as
another event; these tests play that byte stream through the real parser and the real
consumers (the hotline's callback list, the alert callback dialer).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import task

from dialplans.render import AsteriskPaths, render_all
from dispatcher.alerts.callback import CallbackDialer, DialerSettings
from dispatcher.alerts.incident import IncidentInput
from dispatcher.alerts.storage import CallbackJob
from dispatcher.config.loader import load_center
from dispatcher.credentials import ensure_credentials
from dispatcher.hotline import CallbackList, HotlineService, MissedCallWatcher
from dispatcher.hotline.callbacks import ABANDONED, MissedCall
from pbx.ami.attribution import KEY_VARIABLE, EventKey, dialplan_user_event
from pbx.ami.protocol import AMIParser, Message
from tests.harness import EXAMPLE_CONFIG

KEY = EventKey("0123456789abcdef0123456789abcdef")


def wire(fields: list[tuple[str, str]]) -> bytes:
    """One AMI event as Asterisk writes it (values unescaped, as CallerIDNum is)."""
    return ("".join(f"{k}: {v}\r\n" for k, v in fields) + "\r\n").encode()


def channel_state(caller_number: str) -> list[tuple[str, str]]:
    """The channel snapshot Asterisk puts in front of every channel event."""
    return [("Channel", "PJSIP/anonymous-00000007"), ("ChannelState", "6"),
            ("ChannelStateDesc", "Up"), ("CallerIDNum", caller_number),
            ("CallerIDName", "Citizen"), ("Uniqueid", "1700000000.7"),
            ("Linkedid", "1700000000.7")]


def parse(data: bytes) -> list[Message]:
    """What the server's parser makes of ``data`` (after the banner)."""
    parser = AMIParser()
    items = parser.feed(b"Asterisk Call Manager/11.0.0\r\n" + data)
    return [m for m in items if isinstance(m, Message) and m.kind == Message.EVENT]


FORGED = ("\r\n\r\nEvent:UserEvent\r\nUserEvent:SiagaCallbackResult\r\nCallback:1\r\n"
          "Status:ANSWER")


class Events:
    """Subscriptions of an AMI service, fed by the parser."""

    def __init__(self, key: EventKey | None = KEY) -> None:
        self.callbacks: list[Any] = []
        if key is not None:
            self.event_key = key

    def subscribe_all(self, callback: Any) -> Any:
        """Remember the subscriber."""
        self.callbacks.append(callback)
        return lambda: self.callbacks.remove(callback)

    def subscribe(self, name: str, callback: Any) -> Any:
        """Every subscriber sees every event here (the consumers filter by name)."""
        return self.subscribe_all(callback)

    def feed(self, data: bytes) -> list[Message]:
        """Parse and deliver."""
        events = parse(data)
        for event in events:
            for callback in list(self.callbacks):
                callback(event)
        return events


@pytest.fixture
def watched(tmp_path: Path) -> tuple[Events, HotlineService]:
    """The hotline's callback list with callback 1 ringing, watched on ``Events``."""
    center = load_center(EXAMPLE_CONFIG, state_dir=tmp_path)
    hotline = HotlineService(object(), center, CallbackList())  # type: ignore[arg-type]
    entry = hotline.callbacks.add(MissedCall(ABANDONED, "0812", "1.1", "PJSIP/anonymous-1",
                                             "anonymous", None, "health", 5.0, None), now=0)
    assert entry is not None and entry.id == 1
    hotline.callbacks.set_state(1, "ringing")
    events = Events()
    MissedCallWatcher(events, task.Clock(), hotline.callbacks, service=hotline).start()
    return events, hotline


def test_given_the_dialplan_text_when_asterisk_computes_sha1_then_the_server_agrees() -> None:
    """The rendered UserEvent hashes key|name|header=value... with SHA1(), as EventKey.mac."""
    text = dialplan_user_event("SiagaCallbackResult", [("Call", "${SIAGA_CALL}"),
                                                      ("Status", "${DIALSTATUS}")])
    assert text == ("UserEvent(SiagaCallbackResult,Call: ${SIAGA_CALL},Status: ${DIALSTATUS},"
                    "Signed: Call Status,Mac: ${SHA1(${" + KEY_VARIABLE + "}|SiagaCallbackResult"
                    "|Call=${SIAGA_CALL}|Status=${DIALSTATUS})})")
    material = f"{KEY.key}|SiagaCallbackResult|Call=1.2|Status=ANSWER"
    assert KEY.mac("SiagaCallbackResult", [("Call", "1.2"), ("Status", "ANSWER")]) == \
        hashlib.sha1(material.encode()).hexdigest()


def test_given_a_signed_result_when_received_then_the_callback_is_done(
        watched: tuple[Events, HotlineService]) -> None:
    """The dialplan's own event, signed with the key, settles the callback."""
    events, hotline = watched
    signed = KEY.sign("SiagaCallbackResult", [("Call", "1.9"), ("Callback", "1"),
                                              ("Status", "ANSWER")])
    fields = [(k, v) for k, v in signed.items() if k != "Event"]
    events.feed(wire([("Event", "UserEvent"), *channel_state("0812"), *fields]))
    assert hotline.callbacks.get(1).state == "done"


def test_given_an_unsigned_result_event_when_received_then_it_is_ignored(
        watched: tuple[Events, HotlineService]) -> None:
    """An unattributed SiagaCallbackResult (no Mac, or a Mac under another key) changes
    nothing, and is counted as refused."""
    events, hotline = watched
    body = [("UserEvent", "SiagaCallbackResult"), ("Call", "1.9"), ("Callback", "1"),
            ("Status", "ANSWER")]
    events.feed(wire([("Event", "UserEvent"), *channel_state("0812"), *body]))
    other = EventKey().sign("SiagaCallbackResult", body[1:])
    events.feed(wire([(k, v) for k, v in other.items()]))
    assert hotline.callbacks.get(1).state == "ringing"


def test_given_a_caller_id_with_crlf_in_a_newchannel_when_parsed_then_no_forged_result(
        watched: tuple[Events, HotlineService]) -> None:
    """Asterisk writes the caller's number unescaped: the stream then holds a whole forged
    UserEvent. The parser cannot tell (it is a well-formed event); the watcher refuses it."""
    events, hotline = watched
    parsed = events.feed(wire([("Event", "Newchannel"), *channel_state(FORGED)]))
    assert [e.get("UserEvent") for e in parsed] == ["", "SiagaCallbackResult"]
    assert hotline.callbacks.get(1).state == "ringing"


def test_given_crlf_in_front_of_a_real_signed_event_when_parsed_then_refused(
        watched: tuple[Events, HotlineService]) -> None:
    """Forged headers put in front of a real signed event (the caller ID comes first in it)
    borrow its Mac; the repeated headers give them away and the Mac covers the real values."""
    events, hotline = watched
    real = KEY.sign("SiagaCallbackResult", [("Call", "1.9"), ("Callback", "1"),
                                            ("Status", "NOANSWER")])
    body = [(k, v) for k, v in real.items() if k != "Event"]
    events.feed(wire([("Event", "UserEvent"), *channel_state(FORGED), *body]))
    assert hotline.callbacks.get(1).state == "ringing"


def test_given_no_event_key_when_a_result_arrives_then_nothing_is_believed(
        tmp_path: Path) -> None:
    """An AMI service without a key: the watcher makes its own, which nothing is signed with."""
    center = load_center(EXAMPLE_CONFIG, state_dir=tmp_path)
    hotline = HotlineService(object(), center, CallbackList())  # type: ignore[arg-type]
    hotline.callbacks.add(MissedCall(ABANDONED, "0812", "1.1", "PJSIP/anonymous-1",
                                     "anonymous", None, "health", 5.0, None), now=0)
    events = Events(key=None)
    MissedCallWatcher(events, task.Clock(), hotline.callbacks, service=hotline).start()
    events.feed(wire([(k, v) for k, v in KEY.sign(
        "SiagaCallbackResult", [("Call", "1.9"), ("Callback", "1"), ("Status", "ANSWER")]
    ).items()]))
    assert hotline.callbacks.get(1).state == "pending"


def test_given_a_forged_alert_stage_when_received_then_the_dialer_ignores_it() -> None:
    """SiagaAlert stages move an incident's callback: a forged citizen_answered (no Mac) is
    ignored; the same stage signed by the dialplan is applied."""
    clock = task.Clock()
    reports: list[IncidentInput] = []
    states: list[str] = []

    class Ami:
        event_key = KEY

        def originate(self, channel: str, **kwargs: Any) -> Any:
            from twisted.internet import defer
            return defer.succeed(Message("response", "Success", {"ActionID": "a-1"}))

    dialer = CallbackDialer(clock, Ami(), DialerSettings(citizen_dial="PJSIP/{number}"),
                            lambda i, what, detail, op: reports.append(what),
                            lambda cb, state: states.append(state))
    dialer.submit(CallbackJob(3, 7, "0812", 0))
    stage = [("Incident", "7"), ("Attempt", "1"), ("Stage", "citizen_answered")]
    dialer.on_user_event(Message("event", "UserEvent",
                                 {"Event": "UserEvent", "UserEvent": "SiagaAlert", **dict(stage)}))
    assert IncidentInput.CITIZEN_ANSWERED not in reports and "done" not in states
    dialer.on_user_event(Message("event", "UserEvent", KEY.sign("SiagaAlert", stage)))
    assert IncidentInput.CITIZEN_ANSWERED in reports and "done" in states


def test_given_the_example_when_rendered_then_caller_id_is_cleaned_before_anything_else(
        tmp_path: Path) -> None:
    """Every hotline number in `public` first runs siaga-caller-id; the anonymous endpoint
    has a caller ID of its own; CEL's caller columns are filtered; the result and alert
    events are signed; SHA1() is loaded."""
    center = load_center(EXAMPLE_CONFIG, state_dir=tmp_path)
    paths = AsteriskPaths.for_center(center, "/mods", "/usr/share/asterisk")
    files = render_all(center, ensure_credentials(center), paths)
    ext = files["extensions.conf"]
    public = ext[ext.index("[public]\n"):ext.index("[siaga-caller-id]")]
    firsts = [line for line in public.splitlines() if line.startswith("exten =>")]
    assert len(firsts) == len(center.hotline) and all(
        line.endswith(",1,Set(CALLERID(num)=${FILTER(+,${CALLERID(num):0:1})}"
                      "${FILTER(0123456789,${CALLERID(num)}):0:20})") for line in firsts)
    assert public.count("Gosub(siaga-caller-id,s,1)") == len(center.hotline)
    cleaner = ext[ext.index("[siaga-caller-id]"):ext.index("[hotline]")]
    assert "PJSIP_PARSE_URI_FROM(SIAGA_CALLER_URI,user)" in cleaner
    anon = files["pjsip.conf"][files["pjsip.conf"].index("[anonymous]"):].split("\n\n")[0]
    assert 'callerid = "Citizen" <anonymous>' in anon and "trust_id_inbound = no" in anon
    assert "${CALLERID(num)})}" not in files["cel_custom.conf"].replace(
        "FILTER(+0123456789,${CALLERID(num)})", "")
    assert ext.count("Signed: Call Callback Status") == 1
    assert files["extensions_alerts.conf"].count("UserEvent(SiagaAlert,") == 4
    assert files["extensions_alerts.conf"].count("Mac: ${SHA1(") == 4
    assert "load => func_sha1.so" in files["modules.conf"]


def test_given_injected_identity_headers_when_received_then_the_event_reaches_nobody() -> None:
    """A caller number holding ``CR LF Uniqueid: ...`` makes a Newchannel name two channels;
    the client drops it (and says so) instead of handing a phantom channel or call to the
    live model and the call log. A clean event still goes through."""
    from twisted.internet.testing import StringTransport

    from pbx.ami.connection import AMIClient, AMIProtocol

    client = AMIClient(task.Clock(), None, keepalive_interval=0)
    proto = AMIProtocol(client)
    proto.makeConnection(StringTransport())
    seen: list[Message] = []
    client.dispatcher.subscribe_all(seen.append)
    proto.dataReceived(b"Asterisk Call Manager/11.0.0\r\n")
    proto.dataReceived(wire([("Event", "Newchannel"),
                             *channel_state("1\r\nUniqueid: 666.6\r\nLinkedid: 666.6")]))
    assert seen == [] and client.ambiguous_events == 1
    proto.dataReceived(wire([("Event", "Newchannel"), *channel_state("0812")]))
    assert [(e.name, e["Uniqueid"]) for e in seen] == [("Newchannel", "1700000000.7")]
