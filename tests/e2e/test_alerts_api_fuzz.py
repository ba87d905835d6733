"""Schemathesis against the real API server (a child process, real SQLite): no input it
generates from the OpenAPI document makes the server answer 5xx.

Authenticated requests reach past the credentials check into validation and storage: the
test sends an enrolled device's token and, when the generated body is an object, that
device's id (the rest of the body stays as generated). Rate limits (per device, and of failed
attempts per address) are raised so the fuzzing is not all 429s.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from tests.harness import wait_for, write_test_config

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def api_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The API alone (no Asterisk: callbacks stay owed) on a free port, and a device token."""
    workdir = tmp_path_factory.mktemp("fuzz")
    config = write_test_config(workdir / "siaga.yaml")
    db_url = f"sqlite:///{workdir / 'siaga.db'}"
    siaga = Path(sys.executable).parent / "siaga"
    enrolled = subprocess.run([str(siaga), "device", "add", "--db", db_url, "fuzz-app",
                               "--callback-number", "081234567890", "--json"],
                              check=True, capture_output=True, text=True, cwd=REPO)
    token = json.loads(enrolled.stdout)["token"]
    log_path = workdir / "server.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dispatcher.api.standalone", "--config", str(config),
             "--state-dir", str(workdir / "state"), "--db", db_url, "--port", "0",
             "--rate-burst", "100000", "--rate-per-second", "10000",
             "--failure-burst", "100000", "--failure-per-second", "10000"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO)

    def listening() -> int | None:
        if proc.poll() is not None:
            raise RuntimeError(f"the API server exited:\n{log_path.read_text()}")
        match = re.search(r"LISTENING (\d+)", log_path.read_text(errors="replace"))
        return int(match.group(1)) if match else None

    try:
        port = wait_for(listening, 60, "the API server to listen")
        yield {"port": port, "token": token, "log": log_path}
    finally:
        proc.terminate()
        proc.wait(15)


@pytest.fixture(scope="module")
def api_schema(api_server: dict[str, Any]) -> Any:
    """The OpenAPI document as the server serves it."""
    base = f"http://127.0.0.1:{api_server['port']}/api/v1"
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    schema.config.update(base_url=base)
    return schema


def test_given_generated_requests_then_no_server_error(api_schema: Any,
                                                      api_server: dict[str, Any]) -> None:
    """Every generated request of every operation (valid and invalid, with and without the
    device's token) gets an answer below 500.

    Schemathesis's pytest plugin does not run under this pytest, so each operation's
    strategy is driven by Hypothesis directly.
    """
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/alerts", "/incidents/{incident_id}"}
    calls: list[int] = []
    for operation in operations:
        strategy = operation.as_strategy()

        @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck),
                  database=None)
        @given(case=strategy)
        def run(case: Any) -> None:
            if case.operation.path == "/alerts" and isinstance(case.body, dict):
                case.body["device_id"] = "fuzz-app"
            query = case.query if isinstance(case.query, dict) else None
            if case.operation.path == "/incidents/feed" and query and "wait" in query:
                # A long poll may hold 30 s; a second tells as much about 5xx, in less time.
                query["wait"] = 1 if str(query["wait"]).isdigit() else query["wait"]
            headers = dict(case.headers or {})
            if case.operation.path == "/alerts" and "Authorization" not in headers:
                headers["Authorization"] = f"Bearer {api_server['token']}"
            response = case.call_and_validate(headers=headers, checks=[not_a_server_error],
                                              timeout=20)
            calls.append(response.status_code)

        run()
    # The fuzzing reached storage, not only the front door's refusals.
    assert 201 in calls or 200 in calls, sorted(set(calls))
