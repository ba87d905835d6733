"""Toll fraud through callbacks, as an attacker would try it: get the center to dial a number
of the caller's choosing over the city's trunk. A callback goes back only the way the
citizen came in; anything else is refused with a JSON reason and nothing reaches AMI. And the
trunk is its address only: no From user makes a caller pass for it."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from dialplans.render import AsteriskPaths, render_all
from dispatcher.config.loader import load_center
from dispatcher.config.model import Trunk
from dispatcher.credentials import ensure_credentials
from dispatcher.hotline import CallbackList, HotlineService, NoWayBack, callback_target
from dispatcher.hotline.callbacks import (
    ABANDONED,
    MissedCall,
    SqlCallbackStore,
    stored_open_callbacks,
)
from tests.harness import EXAMPLE_CONFIG
from tests.unit.alerts.alerts_support import Http, make_service
from tests.unit.hotline.test_hotline_service import FakeAmi

TRUNK = Trunk("198.51.100.7", 5060, "bitung", "from-the-carrier")
OPERATOR_TOKEN = "op-secret"


@pytest.fixture
def center(tmp_path: Path):  # noqa: ANN201
    """The example city with a trunk to the public network."""
    return replace(load_center(EXAMPLE_CONFIG, state_dir=tmp_path), trunk=TRUNK)


def sections(conf: str) -> dict[str, dict[str, list[str]]]:
    """pjsip.conf as {section name: {option: [values]}} (templates and comments dropped)."""
    out: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in conf.splitlines():
        line = raw.split(";", 1)[0].strip()
        if line.startswith("["):
            name = line[1:line.index("]")]
            if "(!" in line:
                current = None  # a template
                continue
            current = out.setdefault(name, {})
        elif "=" in line and current is not None:
            key, value = (part.strip() for part in line.split("=", 1))
            current.setdefault(key, []).append(value)
    return out


def test_given_a_trunk_when_rendered_then_it_is_identified_by_its_address_only(
        center) -> None:  # noqa: ANN001
    """The trunk endpoint and the anonymous endpoint say identify_by = ip: Asterisk's
    username identifier then refuses to match them from a From user ("trunk", "anonymous");
    the trunk's identify section matches the carrier's address."""
    paths = AsteriskPaths.for_center(center, "/mods", "/usr/share/asterisk")
    conf = sections(render_all(center, ensure_credentials(center), paths)["pjsip.conf"])
    trunk = conf["trunk"]
    assert trunk["identify_by"] == ["ip"]
    assert conf["anonymous"]["identify_by"] == ["ip"]
    assert conf["trunk-identify"]["endpoint"] == ["trunk"]
    assert conf["trunk-identify"]["match"] == [TRUNK.host]
    # The trunk's username is an auth and registration name, never an endpoint of its own.
    assert TRUNK.username not in conf
    # Neither the From nor a P-Asserted-Identity a carrier relays becomes the caller ID:
    # the endpoint has its own, and the dialplan reads and cleans the number.
    for endpoint in ("trunk", "anonymous"):
        assert conf[endpoint]["trust_id_inbound"] == ["no"]
        assert conf[endpoint]["callerid"] == ['"Citizen" <anonymous>']


def test_given_callers_when_targets_are_made_then_only_the_way_they_came_in(
        center) -> None:  # noqa: ANN001
    """Trunk callers back through the trunk; an app back at its address; a staff phone
    directly only from its own endpoint; no source, no endpoint, or a number posing as an
    operator's extension: never the trunk, never another phone."""
    assert callback_target(center, "0812345", "trunk", None) == "PJSIP/0812345@trunk"
    assert (callback_target(center, "0812345", "anonymous", "127.0.0.2:5070")
            == "PJSIP/anonymous/sip:0812345@127.0.0.2:5070")
    assert callback_target(center, "201", "201", None) == "PJSIP/201"
    # An anonymous caller whose From user is the operator's extension is rung back where it
    # came from, not on the operator's desk.
    assert (callback_target(center, "201", "anonymous", "127.0.0.2:5070")
            == "PJSIP/anonymous/sip:201@127.0.0.2:5070")
    for number, endpoint, source in (
            ("0812345", "anonymous", None),  # restored after a restart: no source
            ("0812345", "", None),  # restored with no call in the log
            ("0812345", "201", None),  # a staff phone with an outside number
            ("0812345", "some-endpoint", "127.0.0.2:5070")):
        with pytest.raises(NoWayBack):
            callback_target(center, number, endpoint, source)
    with pytest.raises(NoWayBack):
        callback_target(replace(center, trunk=None), "0812345", "trunk", None)


def restored_list(tmp_path: Path, channel: str | None) -> CallbackList:
    """A callback owed before a restart, read back from the call log as ``siaga up`` does:
    its origin call came in on ``channel`` (None: the call is not in the log)."""
    from dispatcher.calllog import db, store_journeys
    from dispatcher.calllog.journey import JourneyRecord, LegRecord

    url = f"sqlite:///{tmp_path / 'log.db'}"
    db.upgrade(url)
    factory = db.make_sessionmaker(db.make_engine(url))
    if channel is not None:
        with db.transaction(factory) as session:
            store_journeys.save_journey(session, JourneyRecord(
                linkedid="1795748400.7", started_at=1_795_748_400.0, caller_number="0899123",
                dialed="112", ended_at=1_795_748_430.0, outcome="abandoned", complete=True,
                legs=[LegRecord("queue_wait", 1_795_748_402.0, channel=channel,
                                ended_at=1_795_748_430.0)]))
    before = CallbackList(SqlCallbackStore(factory))
    before.add(MissedCall(ABANDONED, "0899123", "1795748400.7", channel or "", "anonymous",
                          "127.0.0.2:5070", "unknown", 30.0, None, True), now=1_795_748_430.0)
    after = CallbackList()
    with db.transaction(factory) as session:
        after.restore(stored_open_callbacks(session))
    return after


@pytest.mark.parametrize("channel", ["PJSIP/anonymous-00000007", None],
                         ids=["anonymous caller", "call not in the log"])
def test_given_a_restored_callback_with_no_source_when_taken_then_409_and_nothing_dialled(
        tmp_path: Path, center, channel: str | None) -> None:  # noqa: ANN001
    """An anonymous caller chose the number 0899123; the server restarted, so its source
    address is gone. With a trunk configured, POST /callbacks/{id}/call answers 409
    no_way_back with a reason, no action reaches AMI (no Originate), the entry stays
    pending with no attempt counted."""
    callbacks = restored_list(tmp_path, channel)
    [entry] = callbacks.page()
    assert entry.source is None
    ami = FakeAmi()
    hotline = HotlineService(ami, center, callbacks)
    (tmp_path / "alerts").mkdir()
    service, _, clock = make_service(tmp_path / "alerts")
    http = Http(service, clock, operator_token=OPERATOR_TOKEN, hotline=hotline)
    status, _, body = http.request(
        "POST", f"/api/v1/callbacks/{entry.id}/call", json.dumps({"operator": "201"}).encode(),
        {"Authorization": f"Bearer {OPERATOR_TOKEN}", "Content-Type": "application/json"})
    doc: dict[str, Any] = json.loads(body)
    assert (status, doc["error"]) == (409, "no_way_back"), doc
    assert "0899123" in doc["reason"]
    assert ami.sent == []
    assert (entry.state, entry.attempts) == ("pending", 0)
