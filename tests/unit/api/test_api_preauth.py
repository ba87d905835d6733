"""The alert API as a guesser meets it: no database work before credentials, then 429."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dispatcher.alerts.service import AlertService
from tests.unit.alerts.alerts_support import TOKEN, Http, make_service


class StoreSpy:
    """Wraps the read runner and records each database read the service asks for."""

    def __init__(self, service: AlertService) -> None:
        self.reads: list[str] = []
        inner = service.read

        def read(fn: Any, *args: Any) -> Any:
            self.reads.append(fn.__name__)
            return inner(fn, *args)

        service.read = read


def post(http: Http, headers: dict[str, str], device: str = "app1", alert_id: str = "a-1"
         ) -> tuple[int, dict, dict]:
    body = json.dumps({"alert_id": alert_id, "device_id": device, "type": "panic",
                       "callback_number": "081234567890"}).encode()
    status, got, out = http.request("POST", "/api/v1/alerts", body,
                                    {"Content-Type": "application/json", **headers})
    return status, got, json.loads(out)


def test_given_no_or_malformed_credentials_when_posting_then_401_without_a_database_read(
        tmp_path: Path) -> None:
    """Missing, malformed and stale credentials are refused before the device is looked up."""
    service, _, clock = make_service(tmp_path)
    spy = StoreSpy(service)
    http = Http(service, clock, peer="198.51.100.7")
    for headers in ({}, {"Authorization": "Basic YWxhZGRpbjpvcGVuc2VzYW1l"},
                    {"Authorization": "Bearer short"},
                    {"X-Siaga-Timestamp": "1", "X-Siaga-Signature": "sha256=" + "0" * 64},
                    {"X-Siaga-Signature": "sha256=" + "0" * 64}):
        status, _, doc = post(http, headers, device=f"unknown-{len(headers)}")
        assert status == 401, doc
    assert spy.reads == []


def test_given_wrong_tokens_from_one_address_when_guessing_then_429_before_any_read(
        tmp_path: Path) -> None:
    """Well-formed wrong tokens cost one read each until the address's failure budget is
    spent; after that the address gets 429 and no read, while another address is served,
    and so is a device that proved itself before (a NAT shared with the attacker)."""
    service, _, clock = make_service(tmp_path)
    spy = StoreSpy(service)
    attacker = Http(service, clock, peer="198.51.100.7")
    burst = int(service.settings.failure_burst)
    for i in range(burst):
        status, _, _ = post(attacker, {"Authorization": f"Bearer wrong-token-{i:012d}"},
                            device=f"guess-{i}")
        assert status == 401
    reads_before = len(spy.reads)
    assert reads_before == burst
    for i in range(50):
        status, headers, doc = post(attacker, {"Authorization": f"Bearer wrong-token-x{i:011d}"},
                                    device=f"more-{i}")
        assert status == 429 and doc["error"] == "rate_limited" and headers["retry-after"]
    assert len(spy.reads) == reads_before
    # A device never seen waits too (no read); another address is served.
    assert post(attacker, {"Authorization": f"Bearer {TOKEN}"})[0] == 429
    assert len(spy.reads) == reads_before
    status, _, doc = post(Http(service, clock, peer="203.0.113.9"),
                          {"Authorization": f"Bearer {TOKEN}"})
    assert status == 201, doc
    # A device that proved itself is served from the failing address (a shared NAT),
    # checked against the credentials it proved itself with: no read, and a wrong token
    # for it is still refused.
    reads_before = len(spy.reads)
    assert post(attacker, {"Authorization": f"Bearer {TOKEN}"}, alert_id="a-2")[0] == 201
    assert post(attacker, {"Authorization": "Bearer wrong-token-for-app1"},
                alert_id="a-3")[0] == 401
    assert len(spy.reads) == reads_before


def test_given_valid_alerts_from_one_address_when_many_then_not_counted_as_failures(
        tmp_path: Path) -> None:
    """Only failures count against an address: many devices behind one NAT are served."""
    service, _, clock = make_service(tmp_path)
    http = Http(service, clock, peer="198.51.100.8")
    for i in range(int(service.settings.failure_burst) + 5):
        body = json.dumps({"alert_id": f"ok-{i}", "device_id": "app1", "type": "panic",
                           "callback_number": "081234567890"}).encode()
        status, _, out = http.request("POST", "/api/v1/alerts", body, {
            "Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"})
        assert status == 201, out
        clock.advance(5)  # within the device's own rate limit
