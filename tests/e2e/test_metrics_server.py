"""``/metrics`` of a running center (`siaga up`), scraped and parsed with prometheus_client's
own text parser while a real citizen waits in the queue; and who may scrape it."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pbx.phone.events import CallState
from pbx.phone.phone import Phone
from tests.harness import SiagaProcess, running_center, wait_for

pytestmark = pytest.mark.asterisk

TOKEN = "scrape-token-0123456789abcdef"
ALLOWED_SOURCE = "127.0.0.2"  # the only address allowed without the token


@pytest.fixture
def metrics_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SiagaProcess]:
    """The example city run by `siaga up`, /metrics open to 127.0.0.2 and to the token."""
    with running_center(tmp_path_factory.mktemp("metrics-server"),
                        metrics={"allow": [f"{ALLOWED_SOURCE}/32"], "token": TOKEN}) as proc:
        yield proc


def get(server: SiagaProcess, path: str = "/metrics", source: str = "127.0.0.1",
        headers: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Status, content type and body of a GET from ``source``."""
    http_ep = server.center.http
    conn = http.client.HTTPConnection(http_ep.host, http_ep.port, timeout=10,
                                      source_address=(source, 0))
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return (response.status, response.getheader("Content-Type") or "",
                response.read().decode("utf-8"))
    finally:
        conn.close()


def scrape(server: SiagaProcess) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Every sample of /metrics, parsed by prometheus_client: name -> [(labels, value)]."""
    status, content_type, body = get(server, headers={"Authorization": f"Bearer {TOKEN}"})
    assert status == 200, body
    assert content_type.startswith("text/plain; version=0.0.4")
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def value(samples: dict[str, list[tuple[dict[str, str], float]]], name: str,
          **labels: str) -> float:
    """The one sample named ``name`` with these labels."""
    found = [v for lab, v in samples.get(name, []) if all(lab.get(k) == x
                                                           for k, x in labels.items())]
    assert len(found) == 1, (name, labels, samples.get(name))
    return found[0]


def test_given_a_citizen_waiting_in_the_queue_when_scraped_then_metrics_show_the_call(
        metrics_server: SiagaProcess, phones) -> None:  # noqa: ANN001
    """A citizen calls 112 and presses 0; no operator phone is registered, so the citizen
    waits: the scrape says one caller waiting and a call up; after hang-up, none."""
    center = metrics_server.center
    idle = scrape(metrics_server)
    assert value(idle, "siaga_queue_callers_waiting") == 0
    assert value(idle, "siaga_ami_connected") == 1
    assert value(idle, "siaga_asterisk_up") == 1
    assert value(idle, "siaga_asterisk_restarts_total") == 0
    assert value(idle, "siaga_calllog_readable") == 1
    assert value(idle, "siaga_calls_answered_within_today", seconds="15") == 0
    assert sum(v for _lab, v in idle["siaga_operators"]) == len(center.operators)
    assert value(idle, "siaga_alerts_received_total") == 0

    citizen = phones._keep(Phone(phones.stack, "081234599001",
                                 server=f"{center.sip.host}:{center.sip.port}"))
    call = citizen.call(center.hotline[0])
    call.wait_state(CallState.CONFIRMED, 15)
    call.send_dtmf("0")  # an operator, please: into the queue

    def waiting() -> dict | None:
        samples = scrape(metrics_server)
        return samples if value(samples, "siaga_queue_callers_waiting") == 1 else None

    during = wait_for(waiting, 20, "the citizen to be waiting in /metrics")
    assert value(during, "siaga_calls_up") >= 1  # type: ignore[arg-type]
    assert value(during, "siaga_queue_longest_wait_seconds") >= 0  # type: ignore[arg-type]

    call.hangup()
    call.wait_state(CallState.DISCONNECTED, 10)

    def gone() -> dict | None:
        samples = scrape(metrics_server)
        quiet = (value(samples, "siaga_queue_callers_waiting") == 0
                 and value(samples, "siaga_calls_up") == 0)
        return samples if quiet else None

    after = wait_for(gone, 20, "the call to be gone from /metrics")
    assert value(after, "siaga_queue_longest_wait_seconds") == 0  # type: ignore[arg-type]
    # The abandoned caller is owed a callback (the hotline's list), counted live.
    wait_for(lambda: value(scrape(metrics_server), "siaga_callbacks_owed",
                           reason="missed_call") == 1, 20, "the owed callback in /metrics")


def test_given_metrics_limited_when_another_address_scrapes_without_the_token_then_403(
        metrics_server: SiagaProcess) -> None:
    """From 127.0.0.1 (not allowed) without a token, or with a wrong one: a JSON 403 and no
    figure; from the allowed 127.0.0.2, or with the token: the metrics."""
    for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789abcdef"},
                    {"Authorization": TOKEN}, {"X-Forwarded-For": ALLOWED_SOURCE}):
        status, content_type, body = get(metrics_server, headers=headers)
        assert status == 403, (headers, body)
        assert content_type.startswith("application/json")
        document = json.loads(body)
        assert document["error"] == "forbidden" and document["reason"]
        assert "siaga_" not in body
    status, _type, body = get(metrics_server, source=ALLOWED_SOURCE)
    assert status == 200 and "siaga_queue_callers_waiting" in body
    assert scrape(metrics_server)["siaga_ami_connected"]
