"""The Twisted AMI client and service, driven with StringTransport and task.Clock."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import defer, error, task
from twisted.internet.testing import StringTransport, StringTransportWithDisconnection
from twisted.logger import Logger
from twisted.python.failure import Failure

from pbx.ami import connection, events, service
from pbx.ami.actions import ListResult
from pbx.ami.connection import AMIClient, AMIProtocol, Credentials
from pbx.ami.errors import (
    AMIActionError,
    AMIAuthenticationError,
    AMIConnectionLost,
    AMIMessageTooLarge,
    AMINotConnected,
    AMITimeout,
)
from pbx.ami.events import EventDispatcher
from pbx.ami.protocol import AMIInjectionError, AMIParser, Message
from pbx.ami.service import AMIService, default_retry_policy

SESSION = (Path(__file__).resolve().parents[2] / "data" / "ami" / "asterisk22-session.raw"
           ).read_bytes()
CREDS = Credentials("siaga", "s3cret")


@pytest.fixture
def logged(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Log events of the AMI client's modules, captured instead of going to the global
    publisher."""
    captured: list[dict[str, Any]] = []
    logger = Logger(namespace="pbx.ami", observer=captured.append)
    for module in (connection, events, service):
        monkeypatch.setattr(module, "log", logger)
    return captured


def connect(clock: task.Clock | None = None, credentials: Credentials | None = None,
            **options: Any) -> tuple[AMIProtocol, StringTransport, task.Clock]:
    """A protocol+client on a StringTransport; no login unless credentials are given."""
    clock = clock or task.Clock()
    options.setdefault("keepalive_interval", 0)
    proto = AMIProtocol(AMIClient(clock, credentials, EventDispatcher(), **options))
    transport = StringTransport()
    proto.makeConnection(transport)
    return proto, transport, clock


def sent(transport: StringTransport) -> list[Message]:
    """The actions written so far, parsed back (each has 'Action' and 'ActionID')."""
    return [m for m in AMIParser().feed(transport.value()) if isinstance(m, Message)]


def answer(proto: AMIProtocol, text: str) -> None:
    """Deliver ``text`` (CR LF line ends added) from Asterisk."""
    proto.dataReceived(text.replace("\n", "\r\n").encode())


def results(d: defer.Deferred[Any]) -> list[Any]:
    """Collect a Deferred's outcome (result or Failure) without leaving it unhandled."""
    out: list[Any] = []
    d.addBoth(out.append)
    return out


def test_given_credentials_when_connected_then_login_uses_md5_challenge() -> None:
    """Challenge first, then Login with AuthType md5 and Key = md5(challenge + secret);
    the secret itself never goes on the wire."""
    proto, transport, _ = connect(credentials=CREDS)
    ready = results(proto.client.ready)
    [challenge] = sent(transport)
    assert challenge["Action"] == "Challenge" and challenge["AuthType"] == "md5"
    answer(proto, f"Asterisk Call Manager/11.0.0\nResponse: Success\n"
                  f"ActionID: {challenge.action_id}\nChallenge: 840612345\n\n")
    login = sent(transport)[1]
    assert login["Action"] == "Login" and login["AuthType"] == "md5"
    assert login["Key"] == hashlib.md5(b"840612345s3cret").hexdigest()
    assert b"s3cret" not in transport.value()
    answer(proto, f"Response: Success\nActionID: {login.action_id}\n"
                  "Message: Authentication accepted\n\n")
    assert ready == [proto.client] and proto.client.logged_in
    assert proto.client.version == "11.0.0"


def test_given_challenge_refused_and_no_plaintext_allowed_then_login_fails_closed() -> None:
    """Without permission for plaintext, a refused challenge ends the login; no secret sent."""
    proto, transport, _ = connect(credentials=CREDS)
    ready = results(proto.client.ready)
    [challenge] = sent(transport)
    answer(proto, f"Response: Error\nActionID: {challenge.action_id}\nMessage: nope\n\n")
    assert isinstance(ready[0], Failure) and ready[0].check(AMIAuthenticationError)
    assert b"s3cret" not in transport.value() and transport.disconnecting


def test_given_challenge_refused_and_plaintext_allowed_then_secret_login() -> None:
    """Only when told may the client fall back to a plaintext Secret."""
    proto, transport, _ = connect(credentials=Credentials("siaga", "s3cret", True))
    ready = results(proto.client.ready)
    [challenge] = sent(transport)
    answer(proto, f"Response: Error\nActionID: {challenge.action_id}\nMessage: nope\n\n")
    login = sent(transport)[1]
    assert login["Secret"] == "s3cret" and "Key" not in login
    answer(proto, f"Response: Success\nActionID: {login.action_id}\n\n")
    assert ready == [proto.client]


def test_given_wrong_secret_then_authentication_error_and_disconnect() -> None:
    """Asterisk's 'Authentication failed' surfaces as AMIAuthenticationError."""
    proto, transport, _ = connect(credentials=CREDS)
    ready = results(proto.client.ready)
    answer(proto, f"Response: Success\nActionID: {sent(transport)[0].action_id}\n"
                  "Challenge: 1\n\n")
    answer(proto, f"Response: Error\nActionID: {sent(transport)[1].action_id}\n"
                  "Message: Authentication failed\n\n")
    assert ready[0].check(AMIAuthenticationError)
    assert "Authentication failed" in ready[0].getErrorMessage()
    assert transport.disconnecting


def test_given_two_actions_when_answered_out_of_order_then_each_gets_its_own() -> None:
    """One Deferred per ActionID: answers are matched by id, not by order."""
    proto, transport, _ = connect()
    first = results(proto.client.getvar("A", "PJSIP/201-1"))
    second = results(proto.client.getvar("B", "PJSIP/201-1"))
    a, b = sent(transport)
    assert a.action_id != b.action_id
    answer(proto, f"Response: Success\nActionID: {b.action_id}\nVariable: B\nValue: two\n\n")
    answer(proto, f"Response: Success\nActionID: {a.action_id}\nVariable: A\nValue: one\n\n")
    assert (first, second) == (["one"], ["two"])
    assert proto.client.pending_count == 0


def test_given_error_response_then_action_fails_with_its_message() -> None:
    """``Response: Error`` errbacks with AMIActionError carrying Asterisk's message."""
    proto, transport, _ = connect()
    out = results(proto.client.hangup("PJSIP/999-00000001"))
    answer(proto, f"Response: Error\nActionID: {sent(transport)[0].action_id}\n"
                  "Message: No such channel\n\n")
    assert out[0].check(AMIActionError)
    assert out[0].value.response.get("Message") == "No such channel"


def test_given_no_answer_when_timeout_passes_then_action_fails_and_late_answer_is_logged(
    logged: list[dict[str, Any]],
) -> None:
    """An unanswered action fails after its timeout; an answer arriving later is logged
    and harms nothing."""
    proto, transport, clock = connect(action_timeout=5)
    out = results(proto.client.ping())
    clock.advance(4.9)
    assert out == []
    clock.advance(0.2)
    assert out[0].check(AMITimeout)
    assert proto.client.pending_count == 0
    answer(proto, f"Response: Success\nActionID: {sent(transport)[0].action_id}\nPing: Pong\n\n")
    assert any("no pending action" in e["log_format"] for e in logged)
    assert not transport.disconnecting


def test_given_per_action_timeout_then_it_overrides_the_default() -> None:
    """A long list action can be given more time than the default."""
    proto, _, clock = connect(action_timeout=5)
    out = results(proto.client.coreshowchannels(timeout=30))
    clock.advance(29)
    assert out == []
    clock.advance(1.5)
    assert out[0].check(AMITimeout)


def test_given_event_list_then_items_are_collected_until_complete() -> None:
    """An EventList action fires once its Complete event arrives, with every item; other
    events arriving meanwhile go to subscribers, not into the list."""
    proto, transport, _ = connect()
    seen: list[str] = []
    proto.client.dispatcher.subscribe_all(lambda e: seen.append(e.name))
    out = results(proto.client.coreshowchannels())
    aid = sent(transport)[0].action_id
    answer(proto, f"Response: Success\nActionID: {aid}\nEventList: start\n"
                  "Message: Channels will follow\n\n"
                  f"Event: CoreShowChannel\nActionID: {aid}\nChannel: PJSIP/201-1\n"
                  "Uniqueid: 1.1\n\n"
                  "Event: Newstate\nChannel: PJSIP/202-2\nUniqueid: 1.2\n\n"
                  f"Event: CoreShowChannel\nActionID: {aid}\nChannel: PJSIP/202-2\n"
                  "Uniqueid: 1.2\n\n")
    assert out == []
    answer(proto, f"Event: CoreShowChannelsComplete\nActionID: {aid}\n"
                  "EventList: Complete\nListItems: 2\n\n")
    [result] = out
    assert isinstance(result, ListResult)
    assert [e.get("Uniqueid") for e in result.events] == ["1.1", "1.2"]
    assert result.complete is not None and result.complete.get("ListItems") == "2"
    assert seen == ["Newstate"]


def test_given_disconnect_mid_event_list_then_every_pending_action_fails() -> None:
    """A drop halfway through a list fails it and every other pending action with
    AMIConnectionLost; nothing is left hanging and nothing is resent."""
    proto, transport, clock = connect()
    listing = results(proto.client.queuestatus())
    other = results(proto.client.ping())
    aid = sent(transport)[0].action_id
    answer(proto, f"Response: Success\nActionID: {aid}\nEventList: start\n\n"
                  f"Event: QueueParams\nActionID: {aid}\nQueue: operators\n\n")
    before = transport.value()
    proto.connectionLost(Failure(error.ConnectionLost("reset")))
    assert listing[0].check(AMIConnectionLost) and other[0].check(AMIConnectionLost)
    assert proto.client.pending_count == 0
    assert clock.getDelayedCalls() == []  # timeout timers cancelled
    assert transport.value() == before
    assert results(proto.client.ping())[0].check(AMINotConnected)


def test_given_subscriber_raises_then_error_is_logged_and_others_still_get_events(
    logged: list[dict[str, Any]],
) -> None:
    """A faulty subscriber is logged with its traceback; other subscribers and the
    connection carry on."""
    proto, transport, _ = connect()
    got: list[str] = []

    def broken(event: Message) -> None:
        raise RuntimeError("bug in a listener")

    proto.client.dispatcher.subscribe("Hangup", broken)
    proto.client.dispatcher.subscribe("Hangup", lambda e: got.append(e.get("Uniqueid")))
    answer(proto, "Event: Hangup\nUniqueid: 1.1\n\nEvent: Hangup\nUniqueid: 1.2\n\n")
    assert got == ["1.1", "1.2"]
    failures = [e for e in logged if "log_failure" in e]
    assert len(failures) == 2
    assert failures[0]["log_failure"].check(RuntimeError)
    assert not transport.disconnecting


def test_given_unsubscribed_callback_then_it_gets_nothing_more() -> None:
    """The function subscribe() returns removes the subscription."""
    proto, _, _ = connect()
    got: list[str] = []
    stop = proto.client.dispatcher.subscribe("Newchannel", lambda e: got.append(e.name))
    answer(proto, "Event: Newchannel\n\n")
    stop()
    answer(proto, "Event: Newchannel\n\n")
    assert got == ["Newchannel"]


def test_given_keepalive_when_ping_unanswered_then_connection_is_closed() -> None:
    """Pings go out every interval; one left unanswered past its timeout closes the
    connection (so the service reconnects)."""
    proto, transport, clock = connect(keepalive_interval=20, keepalive_timeout=5)
    clock.advance(20)
    [ping] = sent(transport)
    assert ping["Action"] == "Ping"
    answer(proto, f"Response: Success\nActionID: {ping.action_id}\nPing: Pong\n\n")
    clock.advance(20)
    assert [m["Action"] for m in sent(transport)] == ["Ping", "Ping"]
    assert not transport.disconnecting
    clock.advance(5)
    assert transport.disconnecting


def test_given_caller_text_with_crlf_when_originating_then_refused_and_nothing_written(
) -> None:
    """A caller ID smuggling an extra action is refused; not one byte reaches Asterisk."""
    proto, transport, _ = connect()
    evil = "Budi\r\n\r\nAction: Command\r\nCommand: core stop now"
    out = results(proto.client.originate("Local/201@operators", context="x", exten="s",
                                         priority=1, caller_id=evil))
    assert out[0].check(AMIInjectionError)
    out = results(proto.client.setvar("NOTE", "line1\nline2", "PJSIP/201-1"))
    assert out[0].check(AMIInjectionError)
    out = results(proto.client.originate("Local/1@x", application="Wait", data="1",
                                         variables={"A\nB": "1"}))
    assert out[0].check(AMIInjectionError)
    out = results(proto.client.originate("Local/1@x", application="Wait", data="1",
                                         variables={"A=B": "1"}))
    assert out[0].check(AMIInjectionError)
    assert transport.value() == b"" and proto.client.pending_count == 0


def test_originate_is_async_and_carries_variables() -> None:
    """Originate goes out with Async true and one Variable header per variable."""
    proto, transport, _ = connect()
    results(proto.client.originate("Local/112@public", context="hotline", exten="s",
                                   priority=1, caller_id="Warga <0812>",
                                   variables={"SIAGA_INCIDENT": 7, "LANG": "id"}))
    [action] = sent(transport)
    assert action["Async"] == "true" and action["CallerID"] == "Warga <0812>"
    assert action.get_all("Variable") == ["SIAGA_INCIDENT=7", "LANG=id"]
    assert "Application" not in action


def test_command_fires_with_output_lines() -> None:
    """command() returns the CLI output lines of Asterisk 22's Output: headers."""
    proto, transport, _ = connect()
    out = results(proto.client.command("core show uptime"))
    answer(proto, f"Response: Success\nActionID: {sent(transport)[0].action_id}\n"
                  "Message: Command output follows\nOutput: System uptime: 5 seconds\n"
                  "Output: Last reload: 5 seconds\n\n")
    assert out == [["System uptime: 5 seconds", "Last reload: 5 seconds"]]


def test_given_oversized_answer_then_its_action_fails_and_stream_goes_on(
    logged: list[dict[str, Any]],
) -> None:
    """An answer over the size limit fails its action with AMIMessageTooLarge (logged);
    the next messages are handled normally."""

    class Small(AMIProtocol):
        MAX_LINE_LENGTH = 100
        MAX_MESSAGE_SIZE = 1000

    clock = task.Clock()
    proto = Small(AMIClient(clock, None, keepalive_interval=0))
    transport = StringTransport()
    proto.makeConnection(transport)
    big = results(proto.client.command("core show channels"))
    small = results(proto.client.ping())
    big_id, small_id = (m.action_id for m in sent(transport))
    answer(proto, f"Response: Success\nActionID: {big_id}\n" + "Output: x\n" * 300 + "\n"
                  f"Response: Success\nActionID: {small_id}\nPing: Pong\n\n")
    assert big[0].check(AMIMessageTooLarge)
    assert small[0].get("Ping") == "Pong"
    assert any(e["log_level"].name == "error" for e in logged)


def test_given_non_utf8_caller_name_then_subscriber_gets_replacement_characters() -> None:
    """A caller name with invalid UTF-8 reaches subscribers, decoded with U+FFFD."""
    proto, _, _ = connect()
    names: list[str] = []
    proto.client.dispatcher.subscribe("NewCallerid", lambda e: names.append(e["CallerIDName"]))
    proto.dataReceived(b"Event: NewCallerid\r\nCallerIDName: Ra\xe9d\r\n\r\n")
    assert names == ["Ra\ufffdd"]


def test_given_recorded_session_split_anywhere_then_subscribers_see_the_same_events() -> None:
    """Through the Twisted protocol too, any two-way split of the recorded traffic delivers
    the same events in the same order."""
    head = SESSION[: SESSION.index(b"\r\n\r\n", 6000) + 4]

    def events_for(*chunks: bytes) -> list[Message]:
        proto, _, _ = connect()
        got: list[Message] = []
        proto.client.dispatcher.subscribe_all(got.append)
        for chunk in chunks:
            proto.dataReceived(chunk)
        return got

    whole = events_for(head)
    assert len(whole) > 15
    for cut in range(len(head) + 1):
        assert events_for(head[:cut], head[cut:]) == whole, f"split at byte {cut}"


# -- the service: ClientService, reconnection, readiness ------------------------------------


class FakeEndpoint:
    """An IStreamClientEndpoint handing out StringTransports; can refuse connections."""

    def __init__(self) -> None:
        self.connections: list[tuple[Any, StringTransportWithDisconnection]] = []
        self.refuse = 0
        self.attempts = 0

    def connect(self, factory: Any) -> defer.Deferred[Any]:
        self.attempts += 1
        if self.refuse:
            self.refuse -= 1
            return defer.fail(error.ConnectionRefusedError())
        proto = factory.buildProtocol(None)
        transport = StringTransportWithDisconnection()
        transport.protocol = proto
        proto.makeConnection(transport)
        self.connections.append((proto, transport))
        return defer.succeed(proto)


def log_in(proto: Any, transport: StringTransport) -> None:
    """Play Asterisk's side of a successful MD5 login on this connection."""
    actions = sent(transport)
    answer(proto, f"Asterisk Call Manager/11.0.0\nResponse: Success\n"
                  f"ActionID: {actions[0].action_id}\nChallenge: 42\n\n")
    answer(proto, f"Response: Success\nActionID: {sent(transport)[1].action_id}\n"
                  "Message: Authentication accepted\n\n"
                  "Event: FullyBooted\nStatus: Fully Booted\n\n")


def make_service(endpoint: FakeEndpoint, clock: task.Clock) -> AMIService:
    """A service with a deterministic backoff (0.5, 1, 2, 4, 4... s) and no keepalive."""
    return AMIService(clock, endpoint, CREDS, keepalive_interval=0,
                      retry_policy=lambda attempt: min(0.5 * 2 ** (attempt - 1), 4.0))


def test_given_service_when_logged_in_then_ready_and_listeners_are_told() -> None:
    """when_ready() fires only after login; on_connected listeners get the client."""
    clock, endpoint = task.Clock(), FakeEndpoint()
    service = make_service(endpoint, clock)
    told: list[AMIClient] = []
    service.on_connected(told.append)
    service.startService()
    ready = results(service.when_ready())
    assert ready == [] and told == [] and service.client is None
    log_in(*endpoint.connections[0])
    assert ready == [service.client] == told
    assert results(service.ping()) == []  # goes out on the connection
    assert sent(endpoint.connections[0][1])[-1]["Action"] == "Ping"


def test_given_connection_drops_then_service_reconnects_resubscribes_and_never_resends() -> None:
    """After a drop: pending actions fail, the service reconnects after its backoff, logs
    in again, tells listeners again, keeps subscriptions, and resends nothing."""
    clock, endpoint = task.Clock(), FakeEndpoint()
    service = make_service(endpoint, clock)
    told: list[AMIClient] = []
    hangups: list[str] = []
    service.on_connected(told.append)
    service.subscribe("Hangup", lambda e: hangups.append(e["Uniqueid"]))
    service.startService()
    log_in(*endpoint.connections[0])
    pending = results(service.originate("Local/201@operators", application="Wait", data="1"))
    endpoint.connections[0][1].loseConnection()
    assert pending[0].check(AMIConnectionLost)
    assert service.client is None
    assert results(service.ping())[0].check(AMINotConnected)
    clock.advance(0.5)
    assert len(endpoint.connections) == 2
    proto, transport = endpoint.connections[1]
    log_in(proto, transport)
    assert len(told) == 2 and told[1] is service.client is proto.client
    # After the login only the dialplan's event key is set again (pbx.ami.attribution).
    assert [m["Action"] for m in sent(transport)][:2] == ["Challenge", "Login"]
    assert {(m["Action"], m.get("Variable")) for m in sent(transport)[2:]} == {
        ("Setvar", "SIAGA_EVENT_KEY")}
    answer(proto, "Event: Hangup\nUniqueid: 9.9\n\n")
    assert hangups == ["9.9"]
    assert [name for name, _ in service.sent_actions].count("Originate") == 1


def test_given_asterisk_down_then_backoff_grows_and_stays_capped() -> None:
    """Refused connections are retried with growing delays, never more than the cap."""
    clock, endpoint = task.Clock(), FakeEndpoint()
    endpoint.refuse = 8
    service = make_service(endpoint, clock)
    service.startService()
    delays = []
    while endpoint.attempts <= 8:
        [call] = clock.getDelayedCalls()
        delays.append(call.getTime() - clock.seconds())
        clock.advance(delays[-1])
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0]
    assert len(endpoint.connections) == 1


def test_default_retry_policy_is_capped_at_a_few_seconds() -> None:
    """The production backoff starts under a second and never exceeds 4.5 s."""
    policy = default_retry_policy()
    delays = [policy(attempt) for attempt in range(1, 60)]
    assert delays[0] < 1.0
    assert max(delays) <= 4.5
    assert min(delays[5:]) >= 4.0


def test_given_login_refused_then_service_closes_and_retries() -> None:
    """A refused login is not 'connected': the service drops it and tries again later."""
    clock, endpoint = task.Clock(), FakeEndpoint()
    service = make_service(endpoint, clock)
    service.startService()
    proto, transport = endpoint.connections[0]
    answer(proto, f"Response: Success\nActionID: {sent(transport)[0].action_id}\n"
                  "Challenge: 1\n\n")
    answer(proto, f"Response: Error\nActionID: {sent(transport)[1].action_id}\n"
                  "Message: Authentication failed\n\n")
    assert not transport.connected and service.client is None
    clock.advance(5)
    assert len(endpoint.connections) == 2


def test_given_stop_service_then_connection_closes_and_no_reconnect() -> None:
    """stopService closes the connection, fires its Deferred, and nothing reconnects."""
    clock, endpoint = task.Clock(), FakeEndpoint()
    service = make_service(endpoint, clock)
    service.startService()
    log_in(*endpoint.connections[0])
    stopped = results(service.stopService())
    assert stopped == [None]
    assert not endpoint.connections[0][1].connected
    clock.advance(60)
    assert len(endpoint.connections) == 1


def test_given_listener_raises_then_it_is_logged_and_service_stays_connected(
    logged: list[dict[str, Any]],
) -> None:
    """A failing on-connected listener does not undo the login."""
    clock, endpoint = task.Clock(), FakeEndpoint()
    service = make_service(endpoint, clock)
    service.on_connected(lambda c: 1 / 0)
    service.startService()
    log_in(*endpoint.connections[0])
    assert service.client is not None and endpoint.connections[0][1].connected
    assert any(e.get("log_failure") and e["log_failure"].check(ZeroDivisionError)
               for e in logged)
