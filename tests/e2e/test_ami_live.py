"""Our AMI client, service and live model against a real Asterisk 22 (the example city).

Each check of what the model holds is repeated through ``asterisk-ami`` (the harness's AMI
client, written by nobody here), so the model is compared with Asterisk itself, not only
with our own reading of it. The Twisted reactor is pytest-twisted's.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, task, threads
from twisted.internet.endpoints import TCP4ClientEndpoint

from pbx.ami.connection import Credentials
from pbx.ami.model import LiveModel
from pbx.ami.service import AMIService
from pbx.ami.sync import ModelSync
from pbx.provision import AsteriskInstall
from tests.harness import PATIENCE, RunningAsterisk, start_asterisk

pytestmark = pytest.mark.asterisk

# What a fresh connection may send by itself: login, then the resync's lists.
# Setvar: the dialplan's event key, handed over after every login (pbx.ami.attribution).
LOGIN_AND_RESYNC = {"Challenge", "Login", "CoreShowChannels", "BridgeList", "BridgeInfo",
                    "QueueStatus", "PJSIPShowEndpoints", "DeviceStateList", "Ping", "Setvar"}
_callers = itertools.count(1)


@pytest.fixture
def reactor() -> Any:
    """The reactor pytest-twisted runs (this test module is its entry point)."""
    from twisted.internet import reactor as running

    return running


@pytest.fixture(scope="module")
def own_asterisk(tmp_path_factory: pytest.TempPathFactory,
                 asterisk_install: AsteriskInstall) -> Iterator[RunningAsterisk]:
    """An Asterisk of this module's own: its calls and restarts disturb no other test."""
    running = start_asterisk(tmp_path_factory.mktemp("ami-live"), asterisk_install)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def restartable_asterisk(tmp_path_factory: pytest.TempPathFactory,
                         asterisk_install: AsteriskInstall) -> Iterator[RunningAsterisk]:
    """A fresh Asterisk for a test that restarts it."""
    running = start_asterisk(tmp_path_factory.mktemp("ami-restart"), asterisk_install)
    try:
        yield running
    finally:
        running.stop()


class Live:
    """Our service + model + sync on one Asterisk, plus an asterisk-ami watch on it."""

    def __init__(self, reactor: Any, asterisk: RunningAsterisk) -> None:
        creds = asterisk.prepared.creds
        endpoint = TCP4ClientEndpoint(reactor, asterisk.center.ami.host,
                                      asterisk.center.ami.port)
        self.reactor = reactor
        self.asterisk = asterisk
        self.service = AMIService(reactor, endpoint,
                                  Credentials(creds.ami_username, creds.ami_secret))
        self.model = LiveModel(reactor.seconds)
        self.sync = ModelSync(self.service, self.model)

    @defer.inlineCallbacks
    def start(self) -> Any:
        """Connect, log in, and wait for the first resync."""
        self.service.startService()
        yield self.service.when_ready()
        yield self.until(lambda: self.sync.resyncs >= 1 and not self.sync.resyncing, 30,
                         "the first resync")

    def until(self, predicate: Callable[[], object], timeout: float, what: str
              ) -> defer.Deferred[None]:
        """Poll ``predicate`` on the reactor until true; fail after ``timeout`` seconds
        (times the harness's PATIENCE)."""
        timeout *= PATIENCE
        deadline = self.reactor.seconds() + timeout

        @defer.inlineCallbacks
        def poll() -> Any:
            while not predicate():
                if self.reactor.seconds() > deadline:
                    raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
                yield task.deferLater(self.reactor, 0.05, lambda: None)

        return poll()

    def asterisk_channels(self) -> defer.Deferred[set[str]]:
        """Channel names as Asterisk lists them, read through asterisk-ami (in a thread:
        that client blocks)."""

        def read() -> set[str]:
            watch = self.asterisk.ami()
            try:
                output = watch.command("core show channels concise")
            finally:
                watch.close()
            return {line.split("!", 1)[0] for line in output.splitlines() if "!" in line}

        return threads.deferToThread(read)

    def asterisk_queue_callers(self, queue: str) -> defer.Deferred[dict[str, int]]:
        """Callers waiting in ``queue`` (uniqueid -> position), from QueueStatus through
        asterisk-ami."""

        def read() -> dict[str, int]:
            watch = self.asterisk.ami()
            try:
                response = watch.action("QueueStatus", Queue=queue)
                action_id = response.keys["ActionID"]
                watch.wait_event("QueueStatusComplete", 10, ActionID=action_id)
                return {e["Uniqueid"]: int(e["Position"])
                        for e in watch.matching("QueueEntry", ActionID=action_id)}
            finally:
                watch.close()

        return threads.deferToThread(read)

    def channel_names(self) -> set[str]:
        """Channel names as our model holds them."""
        return {c.name for c in self.model.channels.values()}

    @defer.inlineCallbacks
    def rebuilt(self) -> Any:
        """A second model, built only from Asterisk's lists fetched now."""
        client = yield self.service.when_ready()
        other = LiveModel(self.reactor.seconds)
        channels = yield client.coreshowchannels()
        bridges = yield client.bridgelist()
        members = {}
        for item in bridges.events:
            info = yield client.bridgeinfo(item["BridgeUniqueid"])
            members[item["BridgeUniqueid"]] = info.events
        queues = yield client.queuestatus()
        devices = yield client.devicestatelist()
        other.resync(channels.events, bridges.events, members, queues.events, (),
                     devices.events)
        return other

    def stop(self) -> defer.Deferred[None]:
        """Stop the service (closes the connection)."""
        return self.service.stopService()


@defer.inlineCallbacks
def originate_caller(live: Live, seconds: int = 120) -> Any:
    """A Local channel pair whose ;2 half joins the operators' queue (no operator is
    registered, so it waits there) and whose ;1 half waits ``seconds``."""
    number = next(_callers)
    caller_id = f"Warga Uji {number} <0812000{number:04d}>"
    client = yield live.service.when_ready()
    yield client.originate("Local/queue@hotline", application="Wait", data=str(seconds),
                           caller_id=caller_id)
    return f"0812000{number:04d}"


@pytest_twisted.inlineCallbacks
def test_given_local_channel_originated_then_model_shows_it_and_forgets_it_after_hangup(
    reactor: Any, own_asterisk: RunningAsterisk,
) -> Any:
    """An originated Local channel pair appears in the model (caller ID, linkedid, the ;2
    half waiting in the queue) exactly as Asterisk lists it, and disappears after a hangup."""
    live = Live(reactor, own_asterisk)
    try:
        yield live.start()
        number = yield originate_caller(live)
        yield live.until(lambda: len([c for c in live.model.channels.values()
                                      if c.caller_num == number]) == 2, 20,
                         "both halves of the Local channel in the model")
        halves = sorted((c for c in live.model.channels.values() if c.caller_num == number),
                        key=lambda c: c.name)
        assert halves[0].name.endswith(";1") and halves[1].name.endswith(";2")
        assert halves[0].linkedid == halves[1].linkedid == halves[0].uniqueid
        yield live.until(
            lambda: halves[1].uniqueid in live.model.queues["operators"].callers, 20,
            "the ;2 half waiting in the operators' queue")
        seen_by_asterisk = yield live.asterisk_channels()
        assert {h.name for h in halves} <= seen_by_asterisk
        assert live.channel_names() == seen_by_asterisk

        client = yield live.service.when_ready()
        yield client.hangup(halves[0].name)
        yield live.until(lambda: not any(c.caller_num == number
                                         for c in live.model.channels.values()), 20,
                         "the Local channel gone from the model")
        assert halves[1].uniqueid not in live.model.queues["operators"].callers
        seen_by_asterisk = yield live.asterisk_channels()
        assert live.channel_names() == seen_by_asterisk
        assert not {h.name for h in halves} & seen_by_asterisk
    finally:
        yield live.stop()


@pytest_twisted.inlineCallbacks
def test_given_calls_queued_and_bridged_when_rebuilt_from_lists_then_equal_to_live_model(
    reactor: Any, own_asterisk: RunningAsterisk,
) -> Any:
    """Channels, a bridge and queue callers built from live events equal the model rebuilt
    from CoreShowChannels, BridgeList/BridgeInfo, QueueStatus and DeviceStateList, and the
    channels equal what asterisk-ami lists."""
    live = Live(reactor, own_asterisk)
    try:
        yield live.start()
        numbers = []
        for _ in range(3):
            numbers.append((yield originate_caller(live)))
        queue = live.model.queues

        def queued() -> int:
            mine = {c.uniqueid for c in live.model.channels.values()
                    if c.caller_num in numbers and c.name.endswith(";2")}
            return len(mine & set(queue["operators"].callers))

        yield live.until(lambda: queued() == 3, 30, "three callers waiting in the queue")
        firsts = sorted(c.name for c in live.model.channels.values()
                        if c.caller_num in numbers[:2] and c.name.endswith(";1"))
        client = yield live.service.when_ready()
        yield client.bridge(firsts[0], firsts[1])
        yield live.until(lambda: any(len(b.members) == 2 for b in live.model.bridges.values()),
                         20, "the two ;1 halves bridged")
        positions = sorted(c.position for c in queue["operators"].callers.values())
        assert positions == list(range(1, len(positions) + 1))

        # The calls are at rest now (waiting, bridged). The model built from events must
        # equal one built from Asterisk's lists; the comparison is retried briefly in case
        # an event was still on its way when the lists were taken.
        attempts: list[tuple[dict[str, Any], dict[str, Any]]] = []

        @defer.inlineCallbacks
        def compare() -> Any:
            for _ in range(20):
                rebuilt = yield live.rebuilt()
                attempts.append((live.model.snapshot(), rebuilt.snapshot()))
                if attempts[-1][0] == attempts[-1][1]:
                    return True
                yield task.deferLater(reactor, 0.25, lambda: None)
            return False

        equal = yield compare()
        live_snap, rebuilt_snap = attempts[-1]
        assert equal, (live_snap, rebuilt_snap)
        assert len(live_snap["channels"]) >= 6 and live_snap["bridges"]
        assert len(live_snap["queues"]["operators"]["callers"]) >= 3
        seen_by_asterisk = yield live.asterisk_channels()
        assert live.channel_names() == seen_by_asterisk
        waiting = yield live.asterisk_queue_callers("operators")
        assert {u: c.position for u, c in queue["operators"].callers.items()} == waiting

        for name in firsts + [c.name for c in live.model.channels.values()
                              if c.caller_num == numbers[2] and c.name.endswith(";1")]:
            yield client.hangup(name)
        yield live.until(lambda: not any(c.caller_num in numbers
                                         for c in live.model.channels.values()), 20,
                         "every test call gone")
        assert not live.model.bridges
    finally:
        yield live.stop()


@pytest_twisted.inlineCallbacks
def test_given_asterisk_restarted_then_client_reconnects_resyncs_and_resends_nothing(
    reactor: Any, restartable_asterisk: RunningAsterisk,
) -> Any:
    """``core restart now``: the connection drops, the service reconnects with its backoff,
    logs in, resyncs (the call that died with Asterisk leaves the model), and no action is
    sent twice: the new connection carries only the login and the resync's lists."""
    live = Live(reactor, restartable_asterisk)
    try:
        yield live.start()
        first = live.service.client
        number = yield originate_caller(live)
        yield live.until(lambda: any(c.caller_num == number
                                     for c in live.model.channels.values()), 20,
                         "the call in the model")
        # Through the control socket: the server's AMI user may not run CLI commands.
        yield threads.deferToThread(restartable_asterisk.cli, "core restart now")
        yield live.until(lambda: live.service.connections >= 2 and live.sync.resyncs >= 2
                         and not live.sync.resyncing, 90, "reconnect, login and resync")
        second = live.service.client
        assert second is not None and second is not first
        yield threads.deferToThread(restartable_asterisk.wait_booted)
        yield live.until(lambda: not live.sync.resyncing, 30, "any resync to finish")

        assert not any(c.caller_num == number for c in live.model.channels.values())
        seen_by_asterisk = yield live.asterisk_channels()
        assert live.channel_names() == seen_by_asterisk
        assert live.model.queues["operators"].members  # rebuilt from QueueStatus

        sent = live.service.sent_actions
        names = [name for name, _ in sent]
        assert names.count("Originate") == 1
        prefix = second.action_id_prefix
        on_second = {name for name, action_id in sent if action_id.startswith(prefix)}
        assert on_second <= LOGIN_AND_RESYNC, on_second
        assert len({action_id for _, action_id in sent}) == len(sent)
    finally:
        yield live.stop()
