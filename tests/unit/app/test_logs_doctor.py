"""JSON log lines (dispatcher.logs) and the verdicts of `siaga doctor` (dispatcher.doctor)
that need no running center."""

from __future__ import annotations

import io
import json
import time

from twisted.logger import Logger, LogLevel, LogPublisher

from dispatcher import doctor
from dispatcher.logs import event_record, json_lines_observer


def publish(*calls: tuple[str, dict]) -> list[dict]:
    """Log through a Twisted Logger into the JSON observer; the parsed lines."""
    out = io.StringIO()
    publisher = LogPublisher(json_lines_observer(out))
    log = Logger(namespace="dispatcher.hotline", observer=publisher)
    for message, fields in calls:
        log.info(message, **fields)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_given_call_and_incident_events_when_logged_as_json_then_each_line_names_its_ids(
        ) -> None:
    """linkedid/call_id become call_id, incident/incident_id become incident_id; one JSON
    object a line with time, level, namespace and the formatted message."""
    lines = publish(
        ("Missed hotline call {linkedid} from {number}", {"linkedid": "1700.12",
                                                          "number": "0812"}),
        ("incident {incident}: callback refused", {"incident": 42}),
        ("AMI logged in", {}),
        ('caller said "{text}"\n', {"text": 'a"b\nc', "call_id": "1700.13"}),
    )
    assert [r.get("call_id") for r in lines] == ["1700.12", None, None, "1700.13"]
    assert [r.get("incident_id") for r in lines] == [None, "42", None, None]
    assert lines[0]["message"] == "Missed hotline call 1700.12 from 0812"
    assert lines[3]["message"] == 'caller said "a"b\nc"\n'  # one line still, escaped
    assert all(r["level"] == "info" and r["namespace"] == "dispatcher.hotline"
               and r["time"].endswith("+00:00") for r in lines)


def test_given_failure_event_when_logged_as_json_then_traceback_is_in_error() -> None:
    """A log.failure carries its traceback in the record's error field."""
    out = io.StringIO()
    log = Logger(namespace="x", observer=LogPublisher(json_lines_observer(out)))
    try:
        raise ValueError("boom")
    except ValueError:
        log.failure("writer failed on {call_id}", call_id="1.2")
    record = json.loads(out.getvalue())
    assert record["level"] == "critical" and record["call_id"] == "1.2"
    assert "ValueError: boom" in record["error"]


def test_given_event_without_time_when_recorded_then_time_is_null() -> None:
    """An event built by hand (no log_time) still makes a record."""
    record = event_record({"log_format": "x", "log_level": LogLevel.warn})
    assert record == {"time": None, "level": "warn", "namespace": "-", "message": "x"}


def test_given_clock_before_2024_when_checked_then_doctor_fails_it() -> None:
    """A clock in 1970 (no battery, no NTP) is a failure with the fix."""
    [check] = doctor.check_clock(now=86400.0, run=lambda argv: "yes\n")
    assert check.status == doctor.FAIL and "1970-01-02" in check.detail
    assert "set-ntp" in check.fix


def test_given_timedatectl_answers_when_clock_checked_then_ntp_state_is_reported() -> None:
    """NTP synchronized: ok; not synchronized: a failure; no answer: a warning, unknown."""
    now = time.time()
    assert doctor.check_clock(now, lambda argv: "yes\n")[0].status == doctor.OK
    assert doctor.check_clock(now, lambda argv: "no\n")[0].status == doctor.FAIL
    unknown = doctor.check_clock(now, lambda argv: None)[0]
    assert unknown.status == doctor.WARN and "unknown" in unknown.detail
    assert doctor.exit_code([unknown]) == 0
    assert doctor.exit_code([unknown, doctor.Check("ami", doctor.FAIL, "x")]) == 1


def test_given_no_config_when_diagnosed_then_one_failure_says_how_to_give_one() -> None:
    """Nothing else can be checked without a config: one line, with the fix."""
    [check] = doctor.diagnose(None)
    assert check.part == "config" and check.status == doctor.FAIL
    assert "siaga install" in check.fix


def test_given_broken_config_when_diagnosed_then_the_line_and_key_are_named(tmp_path) -> None:  # noqa: ANN001
    """A config error is reported with file:line and key, and stops the other checks."""
    from tests.harness import EXAMPLE_CONFIG

    text = EXAMPLE_CONFIG.read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("  port: 5060", "  port: seventy", 1))
    line = text.splitlines().index("  port: 5060") + 1
    [check] = doctor.diagnose(bad)
    assert check.status == doctor.FAIL and f"bad.yaml:{line} sip.port" in check.detail


def test_given_systemd_environment_when_center_starts_then_ready_and_pings_are_sent() -> None:
    """$NOTIFY_SOCKET and $WATCHDOG_USEC: pings every half period from the reactor's clock,
    READY=1 with a status, STOPPING=1 ends the pings."""
    from twisted.internet import task

    from dispatcher.sdnotify import Notifier, notify_address

    sent: list[bytes] = []
    clock = task.Clock()
    notifier = Notifier(clock, sent.append, watchdog_usec=10_000_000)
    notifier.start_watchdog()
    clock.advance(5)
    clock.advance(5)
    assert sent == [b"WATCHDOG=1"] * 3
    notifier.ready("up")
    assert sent[-1] == b"READY=1\nSTATUS=up"
    notifier.stopping()
    clock.advance(30)
    assert sent[-1] == b"STOPPING=1" and sent.count(b"WATCHDOG=1") == 3
    assert notify_address({"NOTIFY_SOCKET": "@abc"}) == b"\0abc"
    assert notify_address({}) is None


def test_given_no_systemd_or_another_pid_when_notifier_built_then_nothing_is_sent() -> None:
    """Outside systemd nothing is sent; a watchdog meant for another pid is not served."""
    from twisted.internet import task

    from dispatcher.sdnotify import Notifier

    quiet = Notifier.from_environ(task.Clock(), {})
    assert quiet.send is None
    other = Notifier.from_environ(task.Clock(), {"NOTIFY_SOCKET": "/run/x",
                                                 "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"})
    assert other.watchdog_usec is None
