"""``/metrics``: its config section, who may scrape it, and what a scrape reports from the
live model (prometheus_client's own parser reads the output)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from dialplans.contract import QUEUE_NAME
from dispatcher.alerts.outcomes import AlertCounts
from dispatcher.config.loader import load_center
from dispatcher.config.model import MetricsAccess
from dispatcher.metrics.access import refusal
from dispatcher.metrics.collector import CenterCollector, Sources
from dispatcher.yamlnodes import ConfigError
from pbx.ami.model import LiveModel
from tests.harness import EXAMPLE_CONFIG

TOKEN = "t" * 30


def config_with(tmp_path: Path, section: str) -> Path:
    """The example config with a section appended."""
    path = tmp_path / "center.yaml"
    path.write_text(EXAMPLE_CONFIG.read_text() + "\n" + section)
    return path


def test_given_no_metrics_section_when_loaded_then_loopback_only_and_no_token(
        tmp_path: Path) -> None:
    """The default serves loopback clients only."""
    access = load_center(EXAMPLE_CONFIG, state_dir=tmp_path).metrics
    assert access.enabled and access.token is None
    assert refusal(access, "127.0.0.1", None) is None
    assert refusal(access, "::1", None) is None
    assert refusal(access, "10.0.0.7", None) is not None


@pytest.mark.parametrize(("section", "key", "words"), [
    ("metrics:\n  allow: [not-an-address]\n", "metrics.allow[0]", "CIDR"),
    ("metrics:\n  token: short\n", "metrics.token", "24 characters"),
    ("metrics:\n  allow: 127.0.0.1\n", "metrics.allow", "list"),
    ("metrics:\n  port: 9100\n", "metrics.port", ""),
    ("retention:\n  recordings:\n    max_age_days: -1\n", "retention.recordings.max_age_days",
     "between"),
    ("retention:\n  cel:\n    rotate_mb: big\n", "retention.cel.rotate_mb", "whole number"),
])
def test_given_a_bad_metrics_or_retention_value_when_loaded_then_error_names_file_line_key(
        tmp_path: Path, section: str, key: str, words: str) -> None:
    """Each mistake names the file, the line of the bad key and the key."""
    path = config_with(tmp_path, section)
    with pytest.raises(ConfigError) as caught:
        load_center(path, state_dir=tmp_path)
    text = str(caught.value)
    last = len(path.read_text().splitlines())  # the bad key is on the file's last line
    assert text.startswith(f"{path.name}:{last} {key}:"), text
    assert words in text


def test_given_an_allow_list_and_token_when_clients_scrape_then_address_or_token_admits(
        ) -> None:
    """An allowed address needs no token; any other needs the exact bearer token."""
    access = MetricsAccess(True, (ipaddress.ip_network("10.1.0.0/16"),), TOKEN)
    assert refusal(access, "10.1.2.3", None) is None
    assert refusal(access, "::ffff:10.1.2.3", None) is None  # IPv4 on a dual-stack socket
    assert refusal(access, "127.0.0.1", None) is not None
    assert refusal(access, "127.0.0.1", f"Bearer {TOKEN}".encode()) is None
    assert refusal(access, "127.0.0.1", f"bearer {TOKEN}".encode()) is None
    assert refusal(access, "127.0.0.1", f"Bearer {TOKEN}x".encode()) is not None
    assert refusal(access, "127.0.0.1", TOKEN.encode()) is not None
    assert refusal(access, None, b"Bearer ") is not None


def test_given_no_token_configured_when_a_bearer_is_sent_then_it_is_not_a_key() -> None:
    """Without a configured token no header opens the page from outside the list."""
    access = MetricsAccess(True, (ipaddress.ip_network("127.0.0.0/8"),), None)
    assert refusal(access, "192.0.2.1", b"Bearer ") is not None
    assert refusal(access, "192.0.2.1", b"Bearer None") is not None


def parse(collector: CenterCollector) -> dict[str, list[tuple[dict[str, str], float]]]:
    """The collector's output as prometheus_client's parser reads it."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


class _Alerts:
    def __init__(self) -> None:
        self.counts = AlertCounts(received=5, committed=3, duplicates=1,
                                  refused={"invalid_credentials": 1})
        self.dialer = None


def test_given_two_callers_queued_when_collected_then_waiting_and_longest_wait_are_live(
        tmp_path: Path) -> None:
    """Two callers joined at t=100 and t=130; at t=160 the scrape says 2 waiting, longest
    60 s; operator desks are counted by state, every state present."""
    center = load_center(EXAMPLE_CONFIG, state_dir=tmp_path)
    now = [100.0]
    model = LiveModel(lambda: now[0])
    for uid, linkedid, t in (("1.1", "1.1", 100.0), ("2.1", "2.1", 130.0)):
        now[0] = t
        model.handle({"Event": "Newchannel", "Uniqueid": uid, "Linkedid": linkedid,
                      "Channel": f"PJSIP/anon-{uid}", "ChannelStateDesc": "Up"})
        model.handle({"Event": "QueueCallerJoin", "Queue": QUEUE_NAME, "Uniqueid": uid,
                      "Channel": f"PJSIP/anon-{uid}", "Position": "1"})
    op = center.operators[0].extension
    model.handle({"Event": "QueueMemberStatus", "Queue": QUEUE_NAME,
                  "Interface": f"PJSIP/{op}", "Status": "1", "Paused": "0"})
    now[0] = 160.0
    today = {"offered": 4, "answered": 3, "abandoned": 1,
             "service_levels": [{"seconds": 15, "answered_within": 2},
                                {"seconds": 20, "answered_within": 3}]}
    samples = parse(CenterCollector(Sources(model, center, lambda: now[0],
                                            alerts=_Alerts()), today))
    assert samples["siaga_queue_callers_waiting"] == [({}, 2.0)]
    assert samples["siaga_queue_longest_wait_seconds"] == [({}, 60.0)]
    assert samples["siaga_calls_up"] == [({}, 2.0)]
    states = {lab["state"]: v for lab, v in samples["siaga_operators"]}
    assert states["available"] == 1
    assert states["logged_out"] == len(center.operators) - 1
    assert set(states) == {"available", "ringing", "on_call", "paused", "offline",
                           "logged_out"}
    within = {lab["seconds"]: v for lab, v in samples["siaga_calls_answered_within_today"]}
    assert within == {"15": 2.0, "20": 3.0}
    assert samples["siaga_alerts_received_total"] == [({}, 5.0)]
    assert samples["siaga_alerts_refused_total"] == [({"code": "invalid_credentials"}, 1.0)]


def test_given_the_database_unreadable_when_collected_then_day_figures_are_left_out(
        tmp_path: Path) -> None:
    """No invented zeros: without today's summary the day's series are absent, and
    siaga_calllog_readable says 0."""
    center = load_center(EXAMPLE_CONFIG, state_dir=tmp_path)
    samples = parse(CenterCollector(Sources(LiveModel(lambda: 0.0), center, lambda: 0.0),
                                    None))
    assert samples["siaga_calllog_readable"] == [({}, 0.0)]
    assert "siaga_calls_answered_within_today" not in samples
    assert "siaga_calls_offered_today" not in samples


def test_given_alert_outcomes_when_counted_then_new_retries_and_refusals_are_apart() -> None:
    """An alert created is new, one not created a retry of one stored, a failure a refusal
    by code."""
    from twisted.python.failure import Failure

    from dispatcher.alerts.errors import RateLimited
    from dispatcher.alerts.outcomes import AlertAccepted

    counts = AlertCounts()
    counts.count(AlertAccepted("a1", 1, "new", created=True))
    counts.count(AlertAccepted("a1", 1, "new", created=False))
    refused = Failure(RateLimited("rate_limited", "slow down", retry_after=1))
    assert counts.count(refused) is refused  # passed on: the API still answers 429
    counts.count(Failure(RuntimeError("boom")))
    assert (counts.committed, counts.duplicates) == (1, 1)
    assert counts.refused == {"rate_limited": 1, "error": 1}
