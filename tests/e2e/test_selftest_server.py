"""The continuous self-test of a running center (`siaga up`, a short interval): a broken
queue raises the alarm (wallboard banner in a real Chromium, /metrics, the command, the
webhook) within two intervals, and it clears once the queue is fixed; a passing test call is
kept in the call log and stays out of the supervisors' report; nobody but the server can
make a call count as a test."""

from __future__ import annotations

import datetime as dt
import http.client
import io
import json
import os
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from dialplans.contract import QUEUE_NAME
from dispatcher.calllog import db
from dispatcher.calllog.models import Call, Leg, SelfTestRun
from dispatcher.calllog.report_figures import build_report
from dispatcher.calllog.report_period import ReportOptions
from dispatcher.credentials import ensure_credentials
from dispatcher.selftest.settings import PROBE_ENDPOINT
from pbx.phone.events import CallState
from pbx.phone.phone import Phone
from tests.browser import chromium, settled
from tests.harness import SiagaProcess, wait_for, write_test_config

pytestmark = pytest.mark.asterisk

REPO = Path(__file__).resolve().parents[2]
INTERVAL = 20.0  # seconds between test calls (every_minutes below)
DESK = "204"  # the operator extension kept as the self-test's desk
SUPERVISOR = "290"
# The alarm command: a script that appends what it was told (its environment) to a file.
COMMAND_SCRIPT = """\
import json, os, sys
with open(sys.argv[1], "a") as out:
    out.write(json.dumps({"alarm": os.environ.get("SIAGA_ALARM"),
                          "stage": os.environ.get("SIAGA_ALARM_STAGE"),
                          "document": json.loads(os.environ["SIAGA_ALARM_JSON"])}) + "\\n")
"""


class _Hook(BaseHTTPRequestHandler):
    received: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        type(self).received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict]]]:
    """A webhook receiver on loopback: its URL and the JSON bodies it was POSTed."""
    handler = type("Hook", (_Hook,), {"received": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/alarm", handler.received
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def selftest_server(tmp_path_factory: pytest.TempPathFactory,
                    webhook: tuple[str, list[dict]]) -> Iterator[SiagaProcess]:
    """The example city run by `siaga up`, testing itself every INTERVAL seconds with desk
    204, an alarm command and a webhook."""
    tmp = tmp_path_factory.mktemp("selftest-server")
    script = tmp / "alarm.py"
    script.write_text(COMMAND_SCRIPT)
    config = write_test_config(tmp / "center.yaml")
    doc = yaml.safe_load(config.read_text())
    doc["selftest"] = {
        "every_minutes": INTERVAL / 60, "desk": DESK, "digits": "0",
        "answer_seconds": 8, "ring_seconds": 8, "timeout_seconds": INTERVAL,
        "alarm": {"command": [sys.executable, str(script), str(tmp / "alarm.log")],
                  "webhook": webhook[0], "webhook_timeout_seconds": 5},
    }
    config.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    proc = SiagaProcess(Path(config), tmp / "state")
    proc.alarm_log = tmp / "alarm.log"  # type: ignore[attr-defined]
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


def get(server: SiagaProcess, path: str) -> str:
    """The body of a GET on the center's site (200 expected)."""
    http_ep = server.center.http
    conn = http.client.HTTPConnection(http_ep.host, http_ep.port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read().decode("utf-8")
        assert response.status == 200, body
        return body
    finally:
        conn.close()


def metric(server: SiagaProcess, name: str) -> float | None:
    """One unlabelled sample of /metrics, parsed by prometheus_client (None: absent)."""
    for family in text_string_to_metric_families(get(server, "/metrics")):
        for sample in family.samples:
            if sample.name == name:
                return sample.value
    return None


def alarm_log(server: SiagaProcess) -> list[dict]:
    """What the alarm command was told, one entry per run."""
    path: Path = server.alarm_log  # type: ignore[attr-defined]
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def runs(server: SiagaProcess) -> list[SelfTestRun]:
    """The self-test results in the call log, oldest first."""
    engine = db.make_engine(server.center.database_url)
    try:
        with db.make_sessionmaker(engine)() as session:
            return list(session.scalars(select(SelfTestRun).order_by(SelfTestRun.id)))
    finally:
        engine.dispose()


def pause_all(server: SiagaProcess, paused: bool) -> None:
    """Pause (or unpause) every operator desk of the queue over AMI, as a supervisor would."""
    ami = server.ami()
    try:
        for op in server.center.operators:
            response = ami.action("QueuePause", Queue=QUEUE_NAME,
                                  Interface=f"PJSIP/{op.extension}",
                                  Paused="true" if paused else "false", Reason="selftest-e2e")
            assert response is not None and response.status == "Success", response
    finally:
        ami.close()


def test_given_the_queue_members_paused_when_the_self_test_runs_then_the_alarm_is_raised_shown_and_cleared(  # noqa: E501
        selftest_server: SiagaProcess, webhook: tuple[str, list[dict]]) -> None:
    """A passing test call first; then every desk paused: two failed test calls in a row
    raise the alarm within two intervals (banner on the wallboard in Chromium, /metrics,
    the command, the webhook); unpaused, the next pass clears it everywhere."""
    from selenium.webdriver.common.by import By

    server = selftest_server
    _url, posted = webhook
    # A healthy center passes (first test after at most one interval).
    wait_for(lambda: any(r.ok for r in runs(server)), INTERVAL * 2 + 10,
             "a passing self-test call")
    assert metric(server, "siaga_selftest_ok") == 1
    assert metric(server, "siaga_selftest_alarm") == 0

    pause_all(server, True)
    broken_at = len(runs(server))
    wait_for(lambda: metric(server, "siaga_selftest_alarm") == 1, INTERVAL * 2 + 10,
             "the alarm within two intervals of the queue's members stopping")
    failed = [r for r in runs(server)[broken_at:] if not r.ok]
    assert len(failed) >= 2
    assert failed[-1].stage == "ivr"  # the greeting and the menu worked; no desk rang
    assert metric(server, "siaga_selftest_ok") == 0
    wait_for(lambda: [e["alarm"] for e in alarm_log(server)] == ["raised"], 10,
             "the alarm command")
    wait_for(lambda: [p["alarm"] for p in posted] == ["raised"], 10, "the alarm webhook")
    assert "SELF-TEST ALARM" in server.output()

    creds = ensure_credentials(server.center)
    base = f"http://{server.center.http.host}:{server.center.http.port}"
    with chromium() as driver:
        driver.get(base + "/wallboard")
        wait_for(lambda: "/login" in driver.current_url, 10, "the login page")
        driver.find_element(By.ID, "extension").send_keys(SUPERVISOR)
        driver.find_element(By.ID, "password").send_keys(creds.console_passwords[SUPERVISOR])
        driver.find_element(By.ID, "login").click()
        wait_for(settled(lambda: driver.find_element(By.ID, "selftest-alarm").is_displayed()),
                 20, "the alarm banner on the wallboard")
        text = wait_for(settled(lambda: driver.find_element(By.ID, "selftest-alarm").text), 10,
                        "the alarm banner's text")
        assert "ALARM" in text and "ivr" in text, text
        # The README's picture is rewritten only when asked (the tree stays clean).
        shots = REPO / "docs" / "screenshots"
        if os.environ.get("SIAGA_UPDATE_SCREENSHOTS") != "1":
            shots = server.state_dir.parent
        driver.save_screenshot(str(shots / "alarm-banner.png"))

        pause_all(server, False)
        wait_for(lambda: metric(server, "siaga_selftest_alarm") == 0, INTERVAL * 2 + 10,
                 "the alarm to clear after the fix")
        wait_for(settled(lambda: not driver.find_element(By.ID, "selftest-alarm").is_displayed()),
                 10, "the banner to go")
    assert metric(server, "siaga_selftest_ok") == 1
    wait_for(lambda: [e["alarm"] for e in alarm_log(server)] == ["raised", "cleared"], 10,
             "the command told of the clearing")
    wait_for(lambda: [p["alarm"] for p in posted] == ["raised", "cleared"], 10,
             "the webhook told of the clearing")


def break_greeting(server: SiagaProcess, how: str) -> dict[Path, tuple[bytes, os.stat_result]]:
    """Break what the hotline plays first, in its default language: ``silent`` replaces the
    greeting, language and menu prompts with 4 s of silence each; ``deleted`` deletes the
    greeting file. Returns the originals (bytes and owner/mode) to put back."""
    import wave

    sounds = server.center.run_dir / "sounds" / server.center.ivr.default_language
    keys = ("welcome", "language", "menu") if how == "silent" else ("welcome",)
    originals = {}
    for key in keys:
        (path,) = sounds.glob(f"*{key}.wav")
        originals[path] = (path.read_bytes(), path.stat())
        if how == "deleted":
            path.unlink()
            continue
        with wave.open(str(path), "rb") as original:
            params = original.getparams()
        buffer = io.BytesIO()
        with wave.open(buffer, "wb") as silent:
            silent.setparams(params)
            silent.writeframes(b"\0" * params.sampwidth * params.nchannels
                               * params.framerate * 4)
        # Written in place: the file keeps the owner and mode that let Asterisk (its own
        # user) read it, so the hotline plays it, silence and all.
        path.write_bytes(buffer.getvalue())
    return originals


def restore(originals: dict[Path, tuple[bytes, os.stat_result]]) -> None:
    """Put the prompts back as they were, owner and mode included."""
    for path, (data, st) in originals.items():
        path.write_bytes(data)
        os.chown(path, st.st_uid, st.st_gid)
        path.chmod(st.st_mode & 0o7777)


@pytest.mark.parametrize(("how", "why"), [
    ("silent", "no audio"),  # the prompts play, but say nothing
    ("deleted", "ringing tone"),  # no greeting file: the menu is skipped, the queue rings
])
def test_given_a_broken_greeting_when_the_self_test_runs_then_the_alarm_names_it_and_clears_when_restored(  # noqa: E501
        selftest_server: SiagaProcess, how: str, why: str) -> None:
    """The IVR's greeting broken while the hotline still answers: two test calls in a row
    fail at the greeting, the alarm says why; the prompts back, it clears."""
    server = selftest_server
    wait_for(lambda: any(r.ok for r in runs(server)), INTERVAL * 2 + 10,
             "a passing self-test call")
    originals = break_greeting(server, how)
    broken_at = len(runs(server))
    try:
        wait_for(lambda: metric(server, "siaga_selftest_alarm") == 1, INTERVAL * 2 + 10,
                 "the alarm within two intervals of the greeting breaking")
        failed = [r for r in runs(server)[broken_at:] if not r.ok]
        assert len(failed) >= 2
        assert all(r.stage == "answer" and why in (r.error or "") for r in failed[-2:]), [
            (r.stage, r.error) for r in failed]
    finally:
        restore(originals)
    wait_for(lambda: metric(server, "siaga_selftest_alarm") == 0, INTERVAL * 2 + 10,
             "the alarm to clear once the prompts are back")
    # The alarm clears when the call ends; its row reaches the call log through the writer
    # thread a moment later.
    wait_for(lambda: runs(server)[-1].ok, 10, "the passing test call in the call log",
             interval=0.2)
    wait_for(lambda: [e["alarm"] for e in alarm_log(server)] == ["raised", "cleared"], 10,
             "the command told of both")


def test_given_a_passing_self_test_when_the_report_is_built_then_the_call_is_kept_as_a_test_and_not_counted(  # noqa: E501
        selftest_server: SiagaProcess) -> None:
    """The test call is in the call log, marked as a test (attributable to the self-test's
    endpoint), with its result; the day's report counts no call at all."""
    server = selftest_server
    wait_for(lambda: any(r.ok for r in runs(server)), INTERVAL * 2 + 10,
             "a passing self-test call")
    engine = db.make_engine(server.center.database_url)
    try:
        sessions = db.make_sessionmaker(engine)

        def test_calls() -> list[Call]:
            with sessions() as session:
                return list(session.scalars(select(Call).where(Call.outcome != "in_progress")))

        calls = wait_for(test_calls, 10, "the test call in the call log")
        assert all(c.test for c in calls), [(c.linkedid, c.caller_number) for c in calls]
        # The caller number is cleaned to digits at the dialplan's edge like anyone's; the
        # call is the self-test's by the endpoint its first leg came in on.
        with sessions() as session:
            first_legs = {c.id: session.scalars(select(Leg.channel).where(Leg.call_id == c.id)
                                                .order_by(Leg.seq).limit(1)).first()
                          for c in calls}
        assert any(first_legs[c.id].startswith(f"PJSIP/{PROBE_ENDPOINT}-")
                   and c.outcome == "answered" for c in calls), first_legs
        today = dt.datetime.now(dt.UTC).date()
        with sessions() as session:
            report = build_report(session, ReportOptions(start=today - dt.timedelta(days=1),
                                                         end=today + dt.timedelta(days=1)))
        assert report["summary"]["offered"] == 0
        assert report["summary"]["answered"] == 0
    finally:
        engine.dispose()


def test_given_a_citizen_claiming_the_self_test_endpoint_when_calling_then_refused_and_never_a_test(  # noqa: E501
        selftest_server: SiagaProcess, sip_stack) -> None:  # noqa: ANN001
    """An attacker who puts the self-test's name in From, without its password, is
    challenged and refused: no call of theirs can be hidden from the reports as a test."""
    server = selftest_server
    impostor = Phone(sip_stack, PROBE_ENDPOINT, server=f"127.0.0.1:{server.center.sip.port}",
                     name="impostor")
    try:
        call = impostor.call(server.center.hotline[0])
        sip_stack.wait_until(lambda: call.state == CallState.DISCONNECTED, 10,
                             "the impostor's call to end")
        assert call.status_code in (401, 403, 407), call.status_code
        assert call.confirmed_at is None
    finally:
        impostor.close()
