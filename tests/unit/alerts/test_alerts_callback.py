"""Operator-first callbacks and buttons over a real AMI client on a StringTransport.

The AMI side is the project's AMIClient writing to a StringTransport: the tests read back the
exact actions that would reach Asterisk, and play Asterisk's answers and events as bytes.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import defer, task
from twisted.internet.testing import StringTransport

from dispatcher.alerts.callback import CallbackDialer, DialerSettings, citizen_dial_string
from dispatcher.alerts.incident import IncidentInput
from dispatcher.alerts.service import AlertService
from dispatcher.alerts.settings import AlertSettings
from dispatcher.alerts.storage import CallbackJob
from dispatcher.calllog import db
from dispatcher.calllog.models import Callback, Incident
from pbx.ami.actions import AMIActions
from pbx.ami.attribution import EventKey
from pbx.ami.connection import AMIClient, AMIProtocol
from pbx.ami.protocol import AMIParser, Message
from tests.unit.alerts.alerts_support import NOW, TOKEN, Http, counts, inline, make_service


class WireAMI(AMIActions):
    """The real AMIClient on a StringTransport, with AMIService's subscribe()."""

    def __init__(self, clock: task.Clock) -> None:
        self.client = AMIClient(clock, None, keepalive_interval=0)
        self.event_key = EventKey()  # as AMIService carries one
        self.proto = AMIProtocol(self.client)
        self.transport = StringTransport()
        self.proto.makeConnection(self.transport)

    def send_action(self, name: str, fields: Mapping[str, object] | Iterable[tuple[str, object]]
                    = (), timeout: float | None = None) -> defer.Deferred[Any]:
        return self.client.send_action(name, fields, timeout)

    def subscribe(self, name: str, callback: Any) -> Any:
        return self.client.dispatcher.subscribe(name, callback)

    def sent(self) -> list[Message]:
        """Every action written so far."""
        return [m for m in AMIParser().feed(self.transport.value()) if isinstance(m, Message)]

    def originates(self) -> list[Message]:
        """The Originate actions written so far."""
        return [m for m in self.sent() if m.get("Action") == "Originate"]

    def receive(self, text: str) -> None:
        """Bytes from Asterisk (LF line ends become CR LF)."""
        self.proto.dataReceived(text.replace("\n", "\r\n").encode())

    def accept(self, action: Message) -> None:
        """Asterisk accepts an action."""
        self.receive(f"Response: Success\nActionID: {action.action_id}\nMessage: ok\n\n")

    def answer_channels(self, uniqueids: list[str]) -> None:
        """Answer the pending CoreShowChannels with these channels."""
        [action] = [m for m in self.sent() if m.get("Action") == "CoreShowChannels"]
        text = (f"Response: Success\nActionID: {action.action_id}\nEventList: start\n"
                "Message: Channels will follow\n\n")
        for uniqueid in uniqueids:
            text += (f"Event: CoreShowChannel\nActionID: {action.action_id}\n"
                     f"Uniqueid: {uniqueid}\nChannel: Local/operator@siaga-alerts-1;1\n\n")
        text += (f"Event: CoreShowChannelsComplete\nActionID: {action.action_id}\n"
                 f"EventList: Complete\nListItems: {len(uniqueids)}\n\n")
        self.receive(text)

    def stage(self, incident: int, attempt: int, stage: str, **extra: str) -> None:
        """The dialplan's UserEvent for a stage of an attempt, signed as the dialplan signs
        it with the server's key."""
        fields = [("Incident", str(incident)), ("Attempt", str(attempt)), ("Stage", stage),
                  *extra.items()]
        event = self.event_key.sign("SiagaAlert", fields)
        self.receive("".join(f"{k}: {v}\n" for k, v in event.items()) + "\n")


def post_panic(service: AlertService, clock: task.Clock) -> int:
    """app1 posts alert a1 (a panic, no number: the device's default); the HTTP status."""
    status, _, _ = Http(service, clock).request(
        "POST", "/api/v1/alerts",
        json.dumps({"alert_id": "a1", "device_id": "app1", "type": "panic"}).encode(),
        {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"})
    return status


def variables(action: Message) -> dict[str, str]:
    """An Originate's Variable headers as a dict."""
    return dict(v.split("=", 1) for v in action.get_all("Variable"))


SETTINGS = AlertSettings(dialer=DialerSettings(
    citizen_dial="PJSIP/{number}", citizen_attempts=2, retry_interval=30,
    operator_retry_interval=5, max_active=8))


@pytest.fixture
def center(tmp_path: Path) -> Any:
    """An alert service wired to a WireAMI, started, with an HTTP face."""
    clock = task.Clock()
    ami = WireAMI(clock)
    service, sessions, clock = make_service(tmp_path, ami=ami, settings=SETTINGS, clock=clock)
    service.startService()

    class Center:
        pass

    c = Center()
    c.ami, c.service, c.sessions, c.clock = ami, service, sessions, clock
    c.http = Http(service, clock)

    def post(**fields: Any) -> tuple[int, dict[str, Any]]:
        doc = {"alert_id": "a1", "device_id": "app1", "type": "medical",
               "location": {"lat": 1.5, "lon": 125.2}, "callback_number": "081234567890"}
        doc.update(fields)
        status, _, body = c.http.request(
            "POST", "/api/v1/alerts", json.dumps(doc).encode(),
            {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"})
        return status, json.loads(body)

    def incident(incident_id: int) -> tuple[str, str | None, int]:
        with sessions() as session:
            row = session.get(Incident, incident_id)
            cb = session.query(Callback).filter_by(incident_id=incident_id).one()
            return row.state, cb.state, cb.attempts

    c.post, c.incident = post, incident
    yield c
    service.stopService()


def test_given_alert_when_committed_then_operator_first_originate_sent(center: Any) -> None:
    """One Originate: the Local channel into the queue at top priority, the citizen's dial
    string built from the validated digits, the incident and attempt as variables."""
    status, doc = center.post()
    assert status == 201
    [originate] = center.ami.originates()
    assert originate["Channel"] == "Local/operator@siaga-alerts"
    assert (originate["Context"], originate["Exten"]) == ("siaga-alerts", "citizen")
    assert originate["Async"] == "true"
    v = variables(originate)
    assert v["__SIAGA_INCIDENT"] == str(doc["incident_id"]) and v["__SIAGA_ATTEMPT"] == "1"
    assert v["SIAGA_CITIZEN_DIAL"] == "PJSIP/081234567890"
    assert v["SIAGA_QUEUE_PRIO"] == "100"
    assert center.incident(doc["incident_id"])[0] == "operator_ringing"


def test_given_operator_and_citizen_answer_then_talking_and_callback_done(center: Any) -> None:
    """operator_answered records the operator; citizen_answered → talking, callback done."""
    _, doc = center.post()
    incident = doc["incident_id"]
    center.ami.accept(center.ami.originates()[0])
    center.ami.stage(incident, 1, "operator_answered", Operator="201")
    center.ami.stage(incident, 1, "citizen_dialing")
    assert center.incident(incident)[0] == "operator_ringing"
    center.ami.stage(incident, 1, "citizen_answered")
    state, callback_state, attempts = center.incident(incident)
    assert (state, callback_state, attempts) == ("talking", "done", 1)
    _, _, body = center.http.request("GET", f"/api/v1/incidents/{incident}")
    assert json.loads(body)["operator"] == "201"


def test_given_citizen_not_answering_then_retry_after_interval_then_unreachable(
        center: Any) -> None:
    """First NOANSWER: nothing until 30 s pass on the injected clock, then attempt 2; its
    NOANSWER makes the incident unreachable, the callback failed, and nothing more is sent."""
    _, doc = center.post()
    incident = doc["incident_id"]
    center.ami.accept(center.ami.originates()[0])
    center.ami.stage(incident, 1, "operator_answered", Operator="202")
    center.ami.stage(incident, 1, "citizen_done", DialStatus="NOANSWER")
    center.clock.advance(29)
    assert len(center.ami.originates()) == 1
    center.clock.advance(1)
    second = center.ami.originates()[1]
    assert variables(second)["__SIAGA_ATTEMPT"] == "2"
    center.ami.accept(second)
    center.ami.stage(incident, 1, "citizen_answered")  # a stale event of attempt 1: ignored
    center.ami.stage(incident, 2, "operator_answered", Operator="202")
    center.ami.stage(incident, 2, "citizen_done", DialStatus="BUSY")
    state, callback_state, _ = center.incident(incident)
    assert (state, callback_state) == ("unreachable", "failed")
    center.clock.advance(600)
    assert len(center.ami.originates()) == 2


def test_given_no_operator_answers_then_originate_again_without_using_an_attempt(
        center: Any) -> None:
    """OriginateResponse Failure (queue wait over) re-originates after 5 s; the citizen's
    attempts are untouched (the next one is still attempt 1 of the citizen)."""
    _, doc = center.post()
    first = center.ami.originates()[0]
    center.ami.accept(first)
    center.ami.receive(f"Event: OriginateResponse\nActionID: {first.action_id}\n"
                       "Response: Failure\nReason: 3\nChannel: Local/operator@siaga-alerts\n\n")
    center.clock.advance(5)
    assert len(center.ami.originates()) == 2
    assert center.incident(doc["incident_id"])[0] == "operator_ringing"
    assert center.service.dialer.active[doc["incident_id"]].citizen_attempt == 1


@pytest.mark.parametrize("field", [
    {"note": "help\r\nAction: Hangup\r\nChannel: PJSIP/201"},
    {"callback_number": "0812\r\nAction: Originate"},
    {"alert_id": "x\nAction: Command"},
    {"device_id": "app1\r\nAction: Logoff"},
    {"location": {"lat": 1, "lon": 2, "fix_time": "2026-11-27T12:00:00Z\r\nX: y"}},
    {"type": "panic\r\n"},
], ids=["note", "number", "alert id", "device id", "fix time", "type"])
def test_given_crlf_in_any_field_then_refused_and_nothing_reaches_ami(
        center: Any, field: dict[str, Any]) -> None:
    """CR/LF anywhere in the alert: 4xx, nothing stored, and not one byte written to AMI."""
    status, doc = center.post(**field)
    assert 400 <= status < 500 and doc["error"]
    assert center.ami.transport.value() == b""
    assert counts(center.sessions)["alerts"] == 0


def test_given_stored_number_with_crlf_when_dialled_then_nothing_sent() -> None:
    """The dialer checks the number again: a bad one (a bug upstream) gives up, sends nothing."""
    clock = task.Clock()
    ami = WireAMI(clock)
    reports: list[tuple[int, IncidentInput]] = []
    dialer = CallbackDialer(clock, ami, DialerSettings(citizen_dial="PJSIP/{number}"),
                            lambda i, what, detail, op: reports.append((i, what)),
                            lambda cb, state: None)
    dialer.submit(CallbackJob(1, 7, "0812\r\nAction: Hangup", 0))
    assert ami.transport.value() == b""
    assert reports == [(7, IncidentInput.GIVE_UP)]
    with pytest.raises(ValueError):
        citizen_dial_string("PJSIP/{number}", "0812&PJSIP/201")


def test_given_max_active_one_then_second_callback_waits_for_the_first(tmp_path: Path) -> None:
    """At most max_active callbacks are in Asterisk; the next starts when one ends."""
    clock = task.Clock()
    ami = WireAMI(clock)
    settings = AlertSettings(dialer=DialerSettings(citizen_dial="PJSIP/{number}",
                                                   max_active=1))
    service, sessions, clock = make_service(tmp_path, ami=ami, settings=settings, clock=clock)
    service.startService()
    http = Http(service, clock)
    h = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
    for n in (1, 2):
        body = json.dumps({"alert_id": f"a{n}", "device_id": "app1", "type": "panic"})
        assert http.request("POST", "/api/v1/alerts", body.encode(), h)[0] == 201
    [first] = ami.originates()
    ami.accept(first)
    ami.stage(1, 1, "operator_answered", Operator="201")
    ami.stage(1, 1, "citizen_answered")
    assert len(ami.originates()) == 1
    ami.stage(1, 1, "citizen_done", DialStatus="ANSWER")
    assert variables(ami.originates()[1])["__SIAGA_INCIDENT"] == "2"


def test_given_callback_owed_when_service_restarts_then_originated_again(tmp_path: Path
                                                                        ) -> None:
    """A callback committed by a process that died is resumed by the next one at start."""
    clock = task.Clock()
    service, sessions, clock = make_service(tmp_path, ami=None, clock=clock)
    # This one has no AMI: the callback stays owed in the database.
    assert post_panic(service, clock) == 201
    ami = WireAMI(clock)
    run = inline(sessions)
    restarted = AlertService(clock, run, run, ami, SETTINGS)
    restarted.startService()
    assert ami.originates() == []  # it looks at Asterisk's channels first
    ami.answer_channels([])
    [originate] = ami.originates()
    assert variables(originate)["__SIAGA_INCIDENT"] == "1"
    assert variables(originate)["SIAGA_CITIZEN_DIAL"] == "PJSIP/081234567890"


def test_given_callback_still_in_asterisk_when_restarted_then_followed_not_redialled(
        tmp_path: Path) -> None:
    """The dead process's callback call is still up: the new process follows it (its
    attempt's events move the incident) and rings no operator a second time."""
    clock = task.Clock()
    service, sessions, clock = make_service(tmp_path, ami=None, clock=clock)
    assert post_panic(service, clock) == 201
    ami = WireAMI(clock)
    run = inline(sessions)
    restarted = AlertService(clock, run, run, ami, SETTINGS)
    restarted.startService()
    ami.answer_channels(["1795800000.7", "siaga-alert-1-3-0a1b2c3d"])
    assert ami.originates() == []
    ami.stage(1, 3, "operator_answered", Operator="203")
    ami.stage(1, 3, "citizen_answered")
    with sessions() as session:
        assert session.get(Incident, 1).state == "talking"


def test_given_button_call_then_incident_with_its_place_follows_the_queue(tmp_path: Path
                                                                         ) -> None:
    """Newchannel from PJSIP/901 to the panic number opens one incident for button-901 at
    its configured place; queue join → operator_ringing; AgentConnect → talking (201)."""
    clock = task.Clock()
    clock.advance(NOW)
    ami = WireAMI(clock)
    sessions_service = make_service(tmp_path, clock=task.Clock())[1]
    run = inline(sessions_service)
    service = AlertService(clock, run, run, ami, SETTINGS,
                           buttons=[("901", "Pasar Girian", 1.4756, 125.1736)],
                           panic_number="1990")
    service.startService()
    new_channel = ("Event: Newchannel\nChannel: PJSIP/901-0000002a\nCallerIDNum: 901\n"
                   "Context: buttons\nExten: 1990\nUniqueid: 1795800000.42\n"
                   "Linkedid: 1795800000.42\n\n")
    ami.receive(new_channel)
    ami.receive(new_channel)  # seen twice (e.g. replayed): still one incident
    ami.receive("Event: Newchannel\nChannel: PJSIP/201-0000002b\nContext: operators\n"
                "Exten: 1990\nUniqueid: 1795800000.43\nLinkedid: 1795800000.43\n\n")
    ami.receive("Event: QueueCallerJoin\nChannel: PJSIP/901-0000002a\n"
                "Uniqueid: 1795800000.42\nQueue: operators\nPosition: 1\n\n")
    ami.receive("Event: AgentConnect\nChannel: PJSIP/901-0000002a\nUniqueid: 1795800000.42\n"
                "Interface: PJSIP/201\nMemberName: Operator 1\n\n")
    assert counts(sessions_service)["incidents"] == 1
    with db.transaction(sessions_service) as session:
        from dispatcher.alerts.storage import incident_document

        doc = incident_document(session, 1)
    assert doc["device"]["device_id"] == "button-901" and doc["device"]["kind"] == "button"
    assert doc["location"]["lat"] == 1.4756 and doc["location"]["lon"] == 125.1736
    assert [t["to"] for t in doc["transitions"]] == ["new", "operator_ringing", "talking"]
    assert doc["operator"] == "201"
    setvars = [m for m in ami.sent() if m.get("Action") == "Setvar"]
    assert [(m["Channel"], m["Variable"], m["Value"]) for m in setvars] == [
        ("PJSIP/901-0000002a", "__SIAGA_INCIDENT", "1")]


def test_given_batch_with_retries_and_revoked_device_then_each_alert_answered_once(
        tmp_path: Path) -> None:
    """commit_alerts: new alerts created once (a retry inside the batch and one of an
    earlier batch get the same incident), a revoked device's alert refused, results in order."""
    import datetime as dt

    from dispatcher.alerts import storage
    from dispatcher.alerts.intake import AlertRequest, Location
    from dispatcher.calllog import store_incidents

    _, sessions, _ = make_service(tmp_path)
    now = dt.datetime.fromtimestamp(NOW, dt.UTC)
    with db.transaction(sessions) as session:
        app1 = storage.device_credentials(session, "app1")
        app2 = storage.device_credentials(session, "app2")
        first = storage.commit_alerts(session, [(AlertRequest(
            "old", "app1", "panic", None, None, None), app1)], now)
    with db.transaction(sessions) as session:
        store_incidents.revoke_device(session, "app2")

    def req(alert_id: str, device: str = "app1") -> AlertRequest:
        return AlertRequest(alert_id, device, "fire", Location(1.0, 2.0, 5.0, None),
                            "0811111111", "note")

    with db.transaction(sessions) as session:
        out = storage.commit_alerts(session, [
            (req("n1"), app1), (req("old"), app1), (req("n1"), app1), (req("x", "app2"), app2),
            (req("n2"), app1)], now)
    n1, old, n1_again, refused, n2 = out
    assert n1.created and n2.created and n1.incident_id != n2.incident_id
    assert (old.created, old.incident_id) == (False, first[0].incident_id)
    assert (n1_again.created, n1_again.incident_id) == (False, n1.incident_id)
    assert isinstance(refused, storage.DeviceChanged)
    assert n1.callback is not None and n1.callback.number == "0811111111"
    assert counts(sessions) == {"alerts": 3, "incidents": 3, "incident_transitions": 3,
                                "callbacks": 3}


def test_given_button_seen_only_by_newexten_then_incident_opened(tmp_path: Path) -> None:
    """Asterisk's Newchannel for an inbound PJSIP call may carry no extension yet: the first
    Newexten in context buttons at the panic number opens the incident just the same."""
    clock = task.Clock()
    clock.advance(NOW)
    ami = WireAMI(clock)
    sessions = make_service(tmp_path, clock=task.Clock())[1]
    run = inline(sessions)
    service = AlertService(clock, run, run, ami, SETTINGS,
                           buttons=[("902", "Terminal Tangkoko", 1.447, 125.1822)],
                           panic_number="1990")
    service.startService()
    ami.receive("Event: Newchannel\nChannel: PJSIP/902-00000031\nContext: buttons\nExten: s\n"
                "Uniqueid: 1795800001.1\nLinkedid: 1795800001.1\n\n")
    assert counts(sessions)["incidents"] == 0
    ami.receive("Event: Newexten\nChannel: PJSIP/902-00000031\nContext: buttons\n"
                "Extension: 1990\nPriority: 1\nApplication: Goto\n"
                "Uniqueid: 1795800001.1\nLinkedid: 1795800001.1\n\n")
    assert counts(sessions)["incidents"] == 1


def test_given_ami_refusing_at_start_then_recovery_retried_until_it_works(tmp_path: Path
                                                                         ) -> None:
    """The channel check at start-up fails (Asterisk answers an error): the owed callback is
    not forgotten; 5 s later the service looks again and originates."""
    clock = task.Clock()
    service, sessions, clock = make_service(tmp_path, ami=None, clock=clock)
    assert post_panic(service, clock) == 201
    ami = WireAMI(clock)
    run = inline(sessions)
    restarted = AlertService(clock, run, run, ami, SETTINGS)
    restarted.startService()
    [first] = [m for m in ami.sent() if m.get("Action") == "CoreShowChannels"]
    ami.receive(f"Response: Error\nActionID: {first.action_id}\nMessage: not now\n\n")
    assert ami.originates() == []
    clock.advance(5)
    pending = [m for m in ami.sent() if m.get("Action") == "CoreShowChannels"][-1]
    ami.receive(f"Response: Success\nActionID: {pending.action_id}\nEventList: start\n\n"
                f"Event: CoreShowChannelsComplete\nActionID: {pending.action_id}\n"
                "EventList: Complete\nListItems: 0\n\n")
    assert len(ami.originates()) == 1


class LoginAMI(WireAMI):
    """WireAMI with AMIService's on_connected(): ``login()`` plays a successful login."""

    def __init__(self, clock: task.Clock) -> None:
        super().__init__(clock)
        self.listeners: list[Any] = []

    def on_connected(self, listener: Any) -> None:
        self.listeners.append(listener)

    def login(self) -> None:
        """Every on-connected listener is called, as after a (re)login."""
        for listener in self.listeners:
            listener(self)

    def answer_listing(self, channels: list[dict[str, str]]) -> None:
        """Answer the last CoreShowChannels with these CoreShowChannel events."""
        action = [m for m in self.sent() if m.get("Action") == "CoreShowChannels"][-1]
        text = (f"Response: Success\nActionID: {action.action_id}\nEventList: start\n"
                "Message: Channels will follow\n\n")
        for fields in channels:
            text += f"Event: CoreShowChannel\nActionID: {action.action_id}\n"
            text += "".join(f"{k}: {v}\n" for k, v in fields.items()) + "\n"
        text += (f"Event: CoreShowChannelsComplete\nActionID: {action.action_id}\n"
                 f"EventList: Complete\nListItems: {len(channels)}\n\n")
        self.receive(text)


def _listed(channel: str, uniqueid: str, linkedid: str, context: str, exten: str,
            application: str = "", bridge: str = "") -> dict[str, str]:
    return {"Channel": channel, "Uniqueid": uniqueid, "Linkedid": linkedid,
            "Context": context, "Exten": exten, "Application": application,
            "ApplicationData": "operators,rtF(siaga-operator-after^s^1)" if application else "",
            "BridgeId": bridge}


def _buttons_service(tmp_path: Path) -> tuple[AlertService, LoginAMI, Any]:
    clock = task.Clock()
    clock.advance(NOW)
    ami = LoginAMI(clock)
    sessions = make_service(tmp_path, clock=task.Clock())[1]
    run = inline(sessions)
    service = AlertService(clock, run, run, ami, SETTINGS,
                           buttons=[("901", "Pasar Girian", 1.4756, 125.1736),
                                    ("902", "Terminal Tangkoko", 1.447, 125.1822)],
                           panic_number="1990")
    service.startService()
    return service, ami, sessions


def _transitions(sessions: Any, incident_id: int) -> list[str]:
    from dispatcher.alerts.storage import incident_document

    with db.transaction(sessions) as session:
        doc = incident_document(session, incident_id)
    return [t["to"] for t in doc["transitions"]]


def test_given_button_calls_in_progress_at_login_then_opened_where_they_stand(
        tmp_path: Path) -> None:
    """After an AMI login the server lists the channels: button 901 bridged with operator
    202 in the queue → incident ``talking`` with 202; button 902 waiting in the queue →
    ``operator_ringing``, then its live AgentConnect → ``talking``. A channel dialled to a
    button (another call's leg) and non-button channels open nothing."""
    _, ami, sessions = _buttons_service(tmp_path)
    # The connection was logged in before the service started: it lists at once.
    assert len([m for m in ami.sent() if m.get("Action") == "CoreShowChannels"]) == 1
    ami.answer_listing([
        _listed("PJSIP/901-0000000a", "1795800000.10", "1795800000.10", "hotline", "queue",
                "Queue", bridge="b-1"),
        _listed("PJSIP/202-0000000b", "1795800000.11", "1795800000.10", "operators", "s",
                "AppQueue", bridge="b-1"),
        _listed("PJSIP/902-0000000c", "1795800000.12", "1795800000.12", "hotline", "queue",
                "Queue"),
        _listed("PJSIP/901-0000000d", "1795800000.13", "1795800000.99", "staff", "s", "Dial"),
        _listed("PJSIP/203-0000000e", "1795800000.14", "1795800000.14", "operators", "s"),
    ])
    assert counts(sessions)["incidents"] == 2
    assert _transitions(sessions, 1) == ["new", "talking"]
    assert _transitions(sessions, 2) == ["new", "operator_ringing"]
    ami.receive("Event: AgentConnect\nChannel: PJSIP/902-0000000c\nUniqueid: 1795800000.12\n"
                "Interface: PJSIP/204\nMemberName: Operator 4\n\n")
    assert _transitions(sessions, 2) == ["new", "operator_ringing", "talking"]
    from dispatcher.alerts.storage import incident_document

    with db.transaction(sessions) as session:
        assert incident_document(session, 1)["operator"] == "202"
        assert incident_document(session, 2)["operator"] == "204"


def test_given_button_call_already_followed_when_ami_relogs_then_nothing_repeated(
        tmp_path: Path) -> None:
    """A call followed from its live events, then AMI reconnects while it talks: the listing
    opens no second incident and records no second transition (none refused either)."""
    from twisted.logger import LogLevel, globalLogPublisher

    errors: list[dict[str, Any]] = []

    def observe(event: dict[str, Any]) -> None:
        if event.get("log_level") in (LogLevel.error, LogLevel.critical):
            errors.append(event)

    globalLogPublisher.addObserver(observe)
    try:
        _relog_while_talking(tmp_path)
    finally:
        globalLogPublisher.removeObserver(observe)
    assert errors == []


def _relog_while_talking(tmp_path: Path) -> None:
    _, ami, sessions = _buttons_service(tmp_path)
    ami.receive("Event: Newexten\nChannel: PJSIP/901-0000002a\nContext: buttons\n"
                "Extension: 1990\nUniqueid: 1795800000.42\nLinkedid: 1795800000.42\n\n")
    ami.receive("Event: AgentConnect\nChannel: PJSIP/901-0000002a\nUniqueid: 1795800000.42\n"
                "Interface: PJSIP/201\nMemberName: Operator 1\n\n")
    connected = _listed("PJSIP/901-0000002a", "1795800000.42", "1795800000.42", "hotline",
                        "queue", "Queue", bridge="b-9")
    ami.login()  # reconnected
    assert len([m for m in ami.sent() if m.get("Action") == "CoreShowChannels"]) == 2
    ami.answer_listing([connected])
    assert counts(sessions)["incidents"] == 1
    assert _transitions(sessions, 1) == ["new", "talking"]
    # A restarted server (nothing followed in memory) finds the same call: same incident,
    # already talking, so nothing to catch up on.
    ami2 = LoginAMI(task.Clock())
    run = inline(sessions)
    restarted = AlertService(task.Clock(), run, run, ami2, SETTINGS,
                             buttons=[("901", "Pasar Girian", 1.4756, 125.1736)],
                             panic_number="1990")
    restarted.startService()
    ami2.answer_listing([connected])
    assert counts(sessions)["incidents"] == 1
    assert _transitions(sessions, 1) == ["new", "talking"]


def test_given_citizen_missed_an_attempt_when_restarted_then_counting_goes_on(
        tmp_path: Path) -> None:
    """Attempt 1 of 2 goes unanswered, then the process dies during the retry interval. The
    next process rings again for attempt 2 (not 1 of a fresh 2); when that is missed too the
    incident is unreachable and nothing more is sent."""
    clock = task.Clock()
    ami = WireAMI(clock)
    service, sessions, clock = make_service(tmp_path, ami=ami, settings=SETTINGS, clock=clock)
    service.startService()
    assert post_panic(service, clock) == 201
    ami.accept(ami.originates()[0])
    ami.stage(1, 1, "operator_answered", Operator="202")
    ami.stage(1, 1, "citizen_done", DialStatus="NOANSWER")
    with sessions() as session:
        assert session.query(Callback).one().citizen_no_answers == 1
    service.stopService()  # the process is gone before the 30 s retry

    ami2 = WireAMI(clock)
    run = inline(sessions)
    restarted = AlertService(clock, run, run, ami2, SETTINGS)
    restarted.startService()
    ami2.answer_channels([])
    [again] = ami2.originates()
    assert restarted.dialer.active[1].citizen_attempt == 2
    seq = variables(again)["__SIAGA_ATTEMPT"]
    ami2.accept(again)
    ami2.stage(1, int(seq), "operator_answered", Operator="202")
    ami2.stage(1, int(seq), "citizen_done", DialStatus="NOANSWER")
    with sessions() as session:
        assert session.get(Incident, 1).state == "unreachable"
        callback = session.query(Callback).one()
        assert (callback.state, callback.citizen_no_answers) == ("failed", 2)
    clock.advance(600)
    assert len(ami2.originates()) == 1
    restarted.stopService()


def test_given_every_attempt_missed_before_a_crash_when_restarted_then_given_up_not_redialled(
        tmp_path: Path) -> None:
    """The dead process counted the last missed attempt but never gave up: the next one
    gives up at once instead of ringing an operator again."""
    clock = task.Clock()
    service, sessions, clock = make_service(tmp_path, ami=None, clock=clock)
    assert post_panic(service, clock) == 201
    with sessions() as session, session.begin():
        session.get(Incident, 1).state = "operator_ringing"
        session.query(Callback).one().citizen_no_answers = SETTINGS.dialer.citizen_attempts
    ami = WireAMI(clock)
    run = inline(sessions)
    restarted = AlertService(clock, run, run, ami, SETTINGS)
    restarted.startService()
    ami.answer_channels([])
    assert ami.originates() == []
    with sessions() as session:
        assert session.get(Incident, 1).state == "unreachable"
        assert session.query(Callback).one().state == "failed"
    restarted.stopService()


def _callback_in_flight(tmp_path: Path) -> tuple[AlertService, LoginAMI, Any, task.Clock, str]:
    """A service whose alert's callback is in Asterisk (originate accepted); the service,
    its AMI, sessions, clock and the callback call's channel id."""
    clock = task.Clock()
    ami = LoginAMI(clock)
    sessions = make_service(tmp_path, clock=task.Clock())[1]
    run = inline(sessions)
    service = AlertService(clock, run, run, ami, SETTINGS)
    service.startService()
    ami.answer_listing([])  # recovery at start: nothing owed
    assert post_panic(service, clock) == 201
    [originate] = ami.originates()
    ami.accept(originate)
    return service, ami, sessions, clock, originate["ChannelId"]


def test_given_operator_ringing_when_ami_relogs_and_the_call_is_gone_then_rung_again(
        tmp_path: Path) -> None:
    """The callback call vanished while AMI was away (Asterisk restarted, say): after the
    login's channel list the operator is rung again; the citizen's attempts are untouched."""
    service, ami, sessions, clock, channel = _callback_in_flight(tmp_path)
    ami.login()
    ami.answer_listing([])
    clock.advance(SETTINGS.dialer.operator_retry_interval)
    assert len(ami.originates()) == 2
    assert service.dialer.active[1].citizen_attempt == 1
    service.stopService()


def test_given_citizen_being_dialled_when_ami_relogs_and_the_call_is_gone_then_attempt_missed(
        tmp_path: Path) -> None:
    """The operator answered, the citizen was being dialled, then AMI dropped and the call
    ended unseen: that attempt counts as missed and the retry follows the interval."""
    service, ami, sessions, clock, channel = _callback_in_flight(tmp_path)
    ami.stage(1, 1, "operator_answered", Operator="201")
    ami.login()
    ami.answer_listing([])
    with sessions() as session:
        assert session.query(Callback).one().citizen_no_answers == 1
    clock.advance(SETTINGS.dialer.retry_interval)
    assert len(ami.originates()) == 2
    assert service.dialer.active[1].citizen_attempt == 2
    service.stopService()


def test_given_callback_still_up_when_ami_relogs_then_left_alone(tmp_path: Path) -> None:
    """The call is listed after the login: nothing is re-sent, nothing counted."""
    service, ami, sessions, clock, channel = _callback_in_flight(tmp_path)
    ami.stage(1, 1, "operator_answered", Operator="201")
    ami.login()
    ami.answer_listing([_listed("Local/operator@siaga-alerts-00000001;1", channel, channel,
                                "siaga-alerts", "citizen", "Dial")])
    clock.advance(600)
    assert len(ami.originates()) == 1
    with sessions() as session:
        assert session.query(Callback).one().citizen_no_answers == 0
    assert service.dialer.active[1].phase == "operator"
    service.stopService()


def _button_journey(linkedid: str, answered_by: str | None) -> Any:
    """The call log's record of button 901's whole call to 1990, as CEL rebuilds it."""
    from dispatcher.calllog.journey import JourneyRecord, LegRecord

    t0 = NOW - 300
    record = JourneyRecord(linkedid=linkedid, started_at=t0, dialed="1990",
                           caller_number="901", source="cel", complete=True,
                           ended_at=t0 + 60, outcome="answered" if answered_by else
                           "abandoned_queue")
    record.legs.append(LegRecord("ivr", t0, f"PJSIP/901-{linkedid[-4:]}", linkedid))
    if answered_by:
        record.answered_at, record.answered_by = t0 + 8, answered_by
    return record


def test_given_button_calls_made_while_the_server_was_away_then_incidents_where_they_ended(
        tmp_path: Path) -> None:
    """A whole button call found in CEL: answered by 203 → ``talking`` with 203; nobody
    answered → ``unreachable``; the same call found again opens nothing more."""
    service, ami, sessions = _buttons_service(tmp_path)
    ami.answer_listing([])
    service.watcher.on_finished_call(_button_journey("1795800000.a001", "203"))
    service.watcher.on_finished_call(_button_journey("1795800000.a002", None))
    service.watcher.on_finished_call(_button_journey("1795800000.a001", "203"))
    assert counts(sessions)["incidents"] == 2
    assert _transitions(sessions, 1) == ["new", "talking"]
    assert _transitions(sessions, 2) == ["new", "unreachable"]
    from dispatcher.alerts.storage import incident_document

    with db.transaction(sessions) as session:
        assert incident_document(session, 1)["operator"] == "203"


def test_given_a_finished_call_that_is_no_button_call_then_no_incident(tmp_path: Path) -> None:
    """A hotline call, or a non-button phone calling 1990, opens nothing."""
    service, ami, sessions = _buttons_service(tmp_path)
    ami.answer_listing([])
    hotline_call = _button_journey("1795800000.b001", "201")
    hotline_call.dialed = "112"
    stranger = _button_journey("1795800000.b002", None)
    stranger.legs[0].channel = "PJSIP/339-0000b002"
    for record in (hotline_call, stranger):
        service.watcher.on_finished_call(record)
    assert counts(sessions)["incidents"] == 0
