"""The SIP guard's rules (dispatcher.guard): which events count, the sliding window, blocks and
their end, the ACL text, and the service's writes and reloads, on a task.Clock."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from twisted.internet import defer, task

from dispatcher.config.model import Security
from dispatcher.guard import FAILURE_EVENTS, GuardPolicy, SipGuardService, auth_failure
from dispatcher.guard.acl import render_acl
from dispatcher.guard.events import remote_address
from dispatcher.guard.policy import networks
from dispatcher.guard.service import RETRY_SECONDS

CAPTURE = Path(__file__).resolve().parents[2] / "data" / "guard" / "asterisk22-security.json"
STAFF = "10.20.0.0/24"


def settings(**changes: object) -> Security:
    base: dict[str, object] = {"staff_networks": networks([STAFF]), "block_after": 5,
                               "window_seconds": 60, "block_seconds": 600}
    base.update(changes)
    return Security(**base)  # type: ignore[arg-type]


def failure(address: str, event: str = "ChallengeResponseFailed") -> dict[str, str]:
    return {"Event": event, "Service": "PJSIP", "RemoteAddress": f"IPV4/UDP/{address}/5060"}


# -- which events count ---------------------------------------------------------------------
def test_given_a_real_session_when_its_events_are_read_then_only_the_scanners_failures_count(
        ) -> None:
    """The captured session (tests/data/guard/capture.py): an operator registering and a
    citizen calling 112 three times from 127.0.0.1 count nothing; svcrack's wrong passwords
    and svwar's unknown users from 127.0.0.2 count, each once."""
    events = json.loads(CAPTURE.read_text())
    counted = [auth_failure(e) for e in events]
    assert {a for a in counted if a} == {"127.0.0.2"}
    assert sum(1 for a in counted if a) == sum(
        1 for e in events if e["Event"] in ("ChallengeResponseFailed", "FailedACL"))
    staff = [e for e in events if e["RemoteAddress"].startswith("IPV4/UDP/127.0.0.1/")]
    assert {e["Event"] for e in staff} == {"ChallengeSent", "SuccessfulAuth"}


@pytest.mark.parametrize("name", sorted(FAILURE_EVENTS))
def test_given_each_failure_event_from_pjsip_when_read_then_its_source_counts(name: str) -> None:
    """Unknown user, wrong password, refused registration...: the source address counts."""
    assert auth_failure(failure("198.51.100.9", name)) == "198.51.100.9"


@pytest.mark.parametrize("fields", [
    {"Event": "ChallengeSent", "Service": "PJSIP", "RemoteAddress": "IPV4/UDP/1.2.3.4/5060"},
    {"Event": "SuccessfulAuth", "Service": "PJSIP", "RemoteAddress": "IPV4/UDP/1.2.3.4/5060"},
    {"Event": "InvalidPassword", "Service": "AMI", "RemoteAddress": "IPV4/TCP/1.2.3.4/5038"},
    {"Event": "Newchannel", "Channel": "PJSIP/anonymous-00000001"},
    {"Event": "FailedACL", "Service": "PJSIP", "RemoteAddress": "IPV4/UDP/evil\r\nX/5060"},
    {"Event": "FailedACL", "Service": "PJSIP", "RemoteAddress": ""},
])
def test_given_an_event_that_is_no_sip_auth_failure_when_read_then_nothing_counts(
        fields: dict[str, str]) -> None:
    """A challenge (every phone gets one), a success, the manager's own logins, call events
    and an address that is no IP address count nothing."""
    assert auth_failure(fields) is None


def test_given_ipv6_sources_when_parsed_then_the_address_is_normalised() -> None:
    """IPv6 sources with or without brackets give one canonical address."""
    assert remote_address("IPV6/UDP/2001:db8::0001/5060") == "2001:db8::1"
    assert remote_address("IPV6/UDP/[2001:db8::1]/5060") == "2001:db8::1"


# -- the policy ------------------------------------------------------------------------------
def test_given_failures_below_the_limit_when_one_more_comes_then_the_source_is_blocked() -> None:
    """block_after failures within the window block; one fewer does not."""
    clock = task.Clock()
    policy = GuardPolicy(settings(), clock)
    for _ in range(4):
        assert policy.failure("203.0.113.5") is None
        clock.advance(1)
    block = policy.failure("203.0.113.5")
    assert block is not None and block.failures == 5 and block.until == clock.seconds() + 600
    assert [b.address for b in policy.blocked()] == ["203.0.113.5"]


def test_given_failures_spread_wider_than_the_window_when_counted_then_no_block() -> None:
    """The window slides: one failure every 15 s (4 per minute) never reaches 5 in 60 s."""
    clock = task.Clock()
    policy = GuardPolicy(settings(), clock)
    for _ in range(40):
        assert policy.failure("203.0.113.5") is None
        clock.advance(15)
    assert policy.blocked() == []


def test_given_a_staff_network_address_when_it_fails_often_then_it_is_never_blocked() -> None:
    """A staff phone with a wrong password is the staff's problem, never a lock-out."""
    clock = task.Clock()
    policy = GuardPolicy(settings(), clock)
    for _ in range(100):
        assert policy.failure("10.20.0.17") is None
    assert policy.blocked() == [] and policy.tracked() == 0


def test_given_a_block_when_its_time_is_up_then_it_ends_and_the_count_starts_afresh() -> None:
    """A block lasts block_seconds; failures meanwhile do not lengthen it; afterwards the
    source needs block_after new failures to be blocked again."""
    clock = task.Clock()
    policy = GuardPolicy(settings(), clock)
    for _ in range(5):
        policy.failure("203.0.113.5")
    clock.advance(599)
    assert policy.failure("203.0.113.5") is None
    assert policy.expire() == [] and policy.next_expiry() == 600
    clock.advance(1)
    assert [b.address for b in policy.expire()] == ["203.0.113.5"]
    assert policy.blocked() == []
    for _ in range(4):
        assert policy.failure("203.0.113.5") is None
    assert policy.failure("203.0.113.5") is not None


def test_given_a_flood_of_spoofed_sources_when_counted_then_memory_stays_bounded() -> None:
    """Each of 50,000 addresses failing once keeps at most max_sources windows; blocks are
    capped too, the one ending first making room."""
    clock = task.Clock()
    policy = GuardPolicy(settings(block_after=2), clock, max_sources=1000, max_blocks=10)
    for i in range(50_000):
        policy.failure(f"100.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}")
    assert policy.tracked() == 1000
    for i in range(20):
        policy.failure(f"192.0.2.{i}")
        policy.failure(f"192.0.2.{i}")
        clock.advance(1)
    assert [b.address for b in policy.blocked()] == [f"192.0.2.{i}" for i in range(10, 20)]


# -- the ACL text ----------------------------------------------------------------------------
def test_given_no_block_when_rendered_then_no_acl_section() -> None:
    """An empty guard file is comments only: nothing refused."""
    text = render_acl([])
    assert "[" not in text and all(line.startswith(";") for line in text.splitlines())


def test_given_blocks_when_rendered_then_one_deny_per_address_of_one_host() -> None:
    """IPv4 /32 and IPv6 /128, in one type=acl section."""
    clock = task.Clock()
    policy = GuardPolicy(settings(block_after=2), clock)
    for address in ("2001:db8::7", "203.0.113.5"):
        policy.failure(address)
        policy.failure(address)
    text = render_acl(policy.blocked())
    assert "[siaga-guard]\ntype = acl\ndeny = 203.0.113.5/32\ndeny = 2001:db8::7/128\n" in text


# -- the service -----------------------------------------------------------------------------
class FakeReload:
    """Asterisk's reload, answered when the test says: records what the file held."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.calls: list[str] = []
        self.pending: list[defer.Deferred[object]] = []

    def __call__(self) -> defer.Deferred[object]:
        self.calls.append(self.path.read_text())
        d: defer.Deferred[object] = defer.Deferred()
        self.pending.append(d)
        return d

    def finish(self, ok: bool = True) -> None:
        d = self.pending.pop(0)
        if ok:
            d.callback("Module 'res_pjsip.so' reloaded successfully.")
        else:
            d.errback(RuntimeError("console closed"))


def service(tmp_path: Path, **changes: object) -> tuple[SipGuardService, FakeReload, task.Clock]:
    clock = task.Clock()
    path = tmp_path / "pjsip_guard.conf"
    reload = FakeReload(path)
    svc = SipGuardService(clock, GuardPolicy(settings(**changes), clock), path, reload)
    svc.reset()
    svc.startService()
    return svc, reload, clock


def test_given_a_source_reaching_the_limit_when_the_event_arrives_then_acl_written_and_reloaded(
        tmp_path: Path) -> None:
    """The block is in the file before Asterisk is asked to reload it; nothing before."""
    svc, reload, _ = service(tmp_path)
    for _ in range(4):
        svc.event_received(failure("203.0.113.5"))
    assert reload.calls == []
    svc.event_received(failure("203.0.113.5"))
    assert len(reload.calls) == 1 and "deny = 203.0.113.5/32" in reload.calls[0]


def test_given_blocks_while_a_reload_runs_when_it_ends_then_one_more_reload_has_them_all(
        tmp_path: Path) -> None:
    """A scan from many sources costs one reload at a time, never a queue of them."""
    svc, reload, _ = service(tmp_path, block_after=2)
    for n in range(1, 6):
        svc.event_received(failure(f"203.0.113.{n}"))
        svc.event_received(failure(f"203.0.113.{n}"))
    assert len(reload.calls) == 1
    reload.finish()
    assert len(reload.calls) == 2
    assert all(f"deny = 203.0.113.{n}/32" in reload.calls[1] for n in range(1, 6))
    reload.finish()
    assert reload.pending == []


def test_given_a_failed_reload_when_the_retry_time_passes_then_asterisk_is_asked_again(
        tmp_path: Path) -> None:
    """A reload Asterisk did not do is tried again, never forgotten."""
    svc, reload, clock = service(tmp_path, block_after=2)
    svc.event_received(failure("203.0.113.5"))
    svc.event_received(failure("203.0.113.5"))
    reload.finish(ok=False)
    assert len(reload.calls) == 1
    clock.advance(RETRY_SECONDS)
    assert len(reload.calls) == 2 and "203.0.113.5" in reload.calls[1]


def test_given_a_block_when_block_seconds_pass_then_the_acl_no_longer_has_it(
        tmp_path: Path) -> None:
    """The expiry timer rewrites the file without the address and reloads."""
    svc, reload, clock = service(tmp_path, block_after=2, block_seconds=30)
    svc.event_received(failure("203.0.113.5"))
    svc.event_received(failure("203.0.113.5"))
    reload.finish()
    clock.advance(29)
    assert len(reload.calls) == 1
    clock.advance(1)
    assert len(reload.calls) == 2 and "203.0.113.5" not in reload.calls[1]
    svc.stopService()
    assert clock.getDelayedCalls() == []


def test_given_an_earlier_runs_blocks_when_the_service_is_reset_then_the_file_has_none(
        tmp_path: Path) -> None:
    """A server that starts again starts with no block: none of its windows survived."""
    path = tmp_path / "pjsip_guard.conf"
    path.write_text("[siaga-guard]\ntype = acl\ndeny = 203.0.113.5/32\n")
    clock = task.Clock()
    SipGuardService(clock, GuardPolicy(settings(), clock), path, FakeReload(path)).reset()
    assert "deny" not in path.read_text()


def test_given_failures_forged_from_the_trunks_address_when_counted_then_it_is_never_blocked(
        ) -> None:
    """UDP sources can be forged: blocking the carrier's address would cut off every citizen
    who calls through it, so the trunk's address is trusted like the staff networks."""
    clock = task.Clock()
    policy = GuardPolicy(settings(), clock, trusted=["198.51.100.7", "sip.carrier.example"])
    for _ in range(50):
        assert policy.failure("198.51.100.7") is None
    assert policy.blocked() == []
