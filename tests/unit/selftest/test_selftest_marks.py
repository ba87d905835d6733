"""Where the self-test touches the rest of the center: its config section (errors name file,
line and key), the dialplan that alone marks a call as a test, the call log and reports that
keep test calls out, the missed-call rules, the wallboard's banner and /metrics."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from twisted.internet import task

from dialplans.render import AsteriskPaths, render_all
from dispatcher.calllog import db, journey, report_figures, report_period, store_journeys
from dispatcher.config.loader import load_center
from dispatcher.credentials import ensure_credentials
from dispatcher.hotline.callbacks import MissedCallDetector, missed_from_journey
from dispatcher.metrics.collector import CenterCollector, Sources
from dispatcher.selftest.runner import ProbeReport
from dispatcher.selftest.service import SelfTestService
from dispatcher.selftest.settings import DESK_PENALTY, PROBE_ENDPOINT, SelfTest
from dispatcher.web.wallboard import wallboard_document
from dispatcher.yamlnodes import ConfigError
from pbx.ami.model import LiveModel
from tests.harness import EXAMPLE_CONFIG
from tests.unit.app.test_metrics import parse
from tests.unit.calllog import calllog_scenarios as sc


def config_with(tmp_path: Path, section: str) -> Path:
    """The example config with its ``selftest`` section (the last) replaced by ``section``."""
    text = EXAMPLE_CONFIG.read_text()
    path = tmp_path / "siaga.example.yaml"
    path.write_text(text[: text.index("\nselftest:\n") + 1] + section)
    return path


def line_of(path: Path, needle: str) -> int:
    for i, line in enumerate(path.read_text().splitlines(), start=1):
        if needle in line:
            return i
    raise AssertionError(needle)


def test_given_no_selftest_section_when_loaded_then_every_five_minutes_without_desk(
        tmp_path: Path) -> None:
    """The default: a test call every 5 minutes, key 0 through the menu, no desk, no alarm
    command or webhook."""
    center = load_center(EXAMPLE_CONFIG, state_dir=tmp_path)
    assert center.selftest == SelfTest()
    assert center.selftest.interval == 300 and center.selftest.digits == "0"


def test_given_a_full_selftest_section_when_loaded_then_every_value_is_kept(
        tmp_path: Path) -> None:
    """Every key read as written."""
    path = config_with(tmp_path, """selftest:
  every_minutes: 2
  digits: "1"
  desk: "204"
  ring_seconds: 12
  timeout_seconds: 60
  alarm:
    command: ["/usr/local/bin/page", "--noc"]
    webhook: https://noc.example/alarms
    webhook_timeout_seconds: 4
""")
    s = load_center(path, state_dir=tmp_path).selftest
    assert (s.interval, s.digits, s.desk, s.ring_seconds, s.timeout_seconds) == (
        120, "1", "204", 12, 60)
    assert s.command == ("/usr/local/bin/page", "--noc")
    assert s.webhook == "https://noc.example/alarms" and s.webhook_timeout_seconds == 4


@pytest.mark.parametrize(("section", "needle", "key", "reason"), [
    ("selftest:\n  every_minutes: 0\n", "every_minutes", "selftest.every_minutes", "between"),
    ("selftest:\n  desk: \"299\"\n", "desk", "selftest.desk", "operators' extensions"),
    ("selftest:\n  digits: \"1;Dial\"\n", "digits", "selftest.digits", "DTMF"),
    ("selftest:\n  every_minutes: 1\n  timeout_seconds: 90\n", "timeout_seconds",
     "selftest.timeout_seconds", "interval"),
    ("selftest:\n  alarm:\n    command: \"/bin/sh -c 'curl x'\"\n", "command",
     "selftest.alarm.command", "without a shell"),
    ("selftest:\n  alarm:\n    command: [\"page-oncall\"]\n", "command",
     "selftest.alarm.command", "absolute path"),
    ("selftest:\n  alarm:\n    webhook: file:///etc/passwd\n", "webhook",
     "selftest.alarm.webhook", "http"),
    ("selftest:\n  every_minute: 5\n", "every_minute", "selftest.every_minute", "unknown key"),
])
def test_given_a_bad_selftest_value_when_loaded_then_error_names_file_line_key(
        tmp_path: Path, section: str, needle: str, key: str, reason: str) -> None:
    """Each mistake is refused with the file, the line of the value and the key."""
    path = config_with(tmp_path, section)
    with pytest.raises(ConfigError) as err:
        load_center(path, state_dir=tmp_path)
    line = max(i for i, text in enumerate(path.read_text().splitlines(), start=1)
               if needle in text)
    assert err.value.file == path.name and err.value.line == line
    assert err.value.path == key and reason in err.value.reason


def rendered(tmp_path: Path, section: str = "") -> dict[str, str]:
    center = load_center(config_with(tmp_path, section), state_dir=tmp_path)
    paths = AsteriskPaths.for_center(center, "/mods", "/usr/share/asterisk")
    return render_all(center, ensure_credentials(center), paths)


def context(text: str, name: str, template: str = "") -> str:
    """The lines of one section (``[name]`` or ``[name](template)``)."""
    header = re.escape(f"[{name}]" + (f"({template})" if template else ""))
    match = re.search(rf"^{header}\n(.*?)(?=^\[|\Z)", text, re.M | re.S)
    assert match is not None, name
    return match.group(1)


def test_given_the_self_test_when_rendered_then_only_its_authenticated_endpoint_marks_a_test(
        tmp_path: Path) -> None:
    """SIAGA_TEST is set in one context only, reached by one endpoint only, which is
    challenged with its own generated password; the citizens' contexts never set it."""
    files = rendered(tmp_path)
    ext, pjsip = files["extensions.conf"], files["pjsip.conf"]
    setters = [line for line in ext.splitlines() if "SIAGA_TEST=" in line]
    assert setters and all("Set(__SIAGA_TEST=1)" in line for line in setters)
    assert "SIAGA_TEST=" in context(ext, "selftest")
    for citizen in ("public", "hotline", "ivr-id", "ivr-en", "buttons"):
        assert "SIAGA_TEST=" not in context(ext, citizen)
    contexts = re.findall(r"^context = selftest$", pjsip, re.M)
    assert len(contexts) == 1
    endpoint = context(pjsip, PROBE_ENDPOINT, "media")
    assert "identify_by = username" in endpoint and f"auth = {PROBE_ENDPOINT}" in endpoint
    creds = ensure_credentials(load_center(EXAMPLE_CONFIG, state_dir=tmp_path))
    assert len(creds.selftest_password) >= 20
    assert f"password = {creds.selftest_password}" in pjsip


def test_given_a_desk_when_rendered_then_test_calls_ring_it_and_citizens_never_do(
        tmp_path: Path) -> None:
    """The desk is a queue member with its own penalty; test calls ask for that penalty and
    up, citizens' calls for below it."""
    files = rendered(tmp_path, 'selftest:\n  desk: "204"\n')
    assert re.search(rf"^member => PJSIP/204,{DESK_PENALTY},", files["queues.conf"], re.M)
    assert re.search(r"^member => PJSIP/201,0,", files["queues.conf"], re.M)
    hotline = context(files["extensions.conf"], "hotline")
    assert (f'ExecIf($["${{SIAGA_TEST}}" = "1"]?Set(QUEUE_MIN_PENALTY={DESK_PENALTY}):'
            f"Set(QUEUE_MAX_PENALTY={DESK_PENALTY - 1}))") in hotline
    assert hotline.index("QUEUE_MIN_PENALTY") < hotline.index("Queue(${SIAGA_QUEUE}")


def test_given_no_desk_when_rendered_then_a_test_call_rings_no_operator(tmp_path: Path) -> None:
    """Without a desk no member has the desk's penalty: a test call that reaches the queue
    rings nobody (no phantom ring at an operator's desk every few minutes)."""
    files = rendered(tmp_path)
    assert f",{DESK_PENALTY}," not in files["queues.conf"]
    assert f"Set(QUEUE_MIN_PENALTY={DESK_PENALTY})" in context(files["extensions.conf"],
                                                               "hotline")


def test_given_the_self_test_disabled_when_rendered_then_no_endpoint_and_no_context(
        tmp_path: Path) -> None:
    """enabled: false leaves no door open: no endpoint, no selftest context."""
    files = rendered(tmp_path, "selftest:\n  enabled: false\n")
    assert PROBE_ENDPOINT not in files["pjsip.conf"]
    assert "[selftest]" not in files["extensions.conf"]


def selftest_call(linkedid: str = "t1", t0: float = sc.T0) -> sc.Timeline:
    """The self-test's call: marked by the dialplan, answered by the desk, 5 s of talk."""
    tl = sc.answered_call(linkedid, t0, number=PROBE_ENDPOINT, answer_at=4, talk=5,
                          operator_ext="202")
    tl.mark(0.1, linkedid, "TEST", "1")
    tl.events.sort(key=lambda e: float(e["Timestamp"]))
    tl.rows.sort(key=lambda r: r.eventtime)
    return tl


def test_given_a_test_call_when_logged_live_or_from_cel_then_it_is_marked_as_a_test() -> None:
    """The SIAGA_TEST mark reaches the journey from AMI and from CEL alike."""
    from dispatcher.calllog.cel import build_journey

    live = journey.run(selftest_call().ami(), sc.DIRECTORY)[0]
    assert live.test and live.outcome == "answered"
    rebuilt = build_journey(selftest_call().rows, sc.DIRECTORY)
    assert rebuilt is not None and rebuilt.test
    assert not journey.run(sc.answered_call().ami(), sc.DIRECTORY)[0].test


def test_given_test_calls_among_citizens_when_reported_then_only_citizens_count() -> None:
    """Two test calls and one citizen's in the day: the report (and the live summary the
    metrics read) counts one call, the citizen's."""
    engine = db.make_engine("sqlite://")
    db.upgrade(engine)
    sessions = db.make_sessionmaker(engine)
    records = [journey.run(tl.ami(), sc.DIRECTORY)[0] for tl in (
        selftest_call("t1"), selftest_call("t2", sc.T0 + 600), sc.answered_call("c1", sc.T0 + 900))]
    with db.transaction(sessions) as s:
        for record in records:
            store_journeys.save_journey(s, record)
    day = report_period.ReportOptions(dt.date(2026, 11, 27), dt.date(2026, 11, 27))
    with sessions() as s:
        assert sorted((c.linkedid, c.test) for c in store_journeys.calls_between(
            s, dt.datetime(2026, 11, 26), dt.datetime(2026, 11, 28))) == [
            ("c1", False), ("t1", True), ("t2", True)]
        full = report_figures.build_report(s, day)
        assert (full["summary"]["offered"], full["summary"]["answered"]) == (1, 1)
        assert full["repeat_callers"]["numbers"] == 0
        assert report_figures.summary(s, day)["offered"] == 1
    engine.dispose()


def test_given_a_test_call_abandoned_when_it_ends_then_no_callback_is_owed() -> None:
    """A self-test call that hangs up in the queue (a failed test) is not a citizen who
    gave up: the live detector and the CEL rule both let it go."""
    detector = MissedCallDetector()
    uid = "1700000000.1"
    base = {"Uniqueid": uid, "Channel": f"PJSIP/{PROBE_ENDPOINT}-0001", "Linkedid": uid,
            "CallerIDNum": PROBE_ENDPOINT}
    detector.feed("VarSet", {**base, "Variable": "__SIAGA_TEST", "Value": "1"}, 0.0)
    detector.feed("VarSet", {**base, "Variable": "SIAGA_CITIZEN", "Value": "yes"}, 0.1)
    detector.feed("QueueCallerJoin", base, 2.0)
    assert detector.feed("Hangup", base, 30.0) == []
    assert detector.tracked == 0
    # The same without the mark is owed a callback (the rule is still there for citizens).
    citizen = {**base, "Uniqueid": "2", "Linkedid": "2", "CallerIDNum": "0812"}
    detector.feed("VarSet", {**citizen, "Variable": "SIAGA_CITIZEN", "Value": "yes"}, 0.1)
    detector.feed("QueueCallerJoin", citizen, 2.0)
    assert [m.number for m in detector.feed("Hangup", citizen, 30.0)] == ["0812"]

    tl = sc.abandoned_in_queue("t9", number=PROBE_ENDPOINT)
    tl.mark(0.1, "t9", "TEST", "1")
    tl.events.sort(key=lambda e: float(e["Timestamp"]))
    record = journey.run(tl.ami(), sc.DIRECTORY)[0]
    record.dialed = "112"
    assert record.test
    assert missed_from_journey(record, ["112"], record.ended_at + 1) is None


def alarmed_service() -> SelfTestService:
    """A service whose two test calls failed at the greeting (alarm up)."""
    clock = task.Clock()
    clock.advance(1_800_000_000)
    outcomes = iter([False, False])

    def run():  # noqa: ANN202
        from twisted.internet import defer
        ok = next(outcomes)
        now = clock.seconds()
        return defer.succeed(ProbeReport(ok, "answer", "the greeting is <b>silence</b>",
                                         now - 3, now))

    svc = SelfTestService(clock, SelfTest(every_minutes=1), run)
    svc.startService()
    clock.advance(60)
    clock.advance(60)
    clock.advance(7)
    return svc


def test_given_the_alarm_when_the_wallboard_and_metrics_read_then_they_show_it(
        tmp_path: Path) -> None:
    """The wallboard's document carries the alarm with its stage and error (as data: the
    page puts it in as text); /metrics says alarm 1, last result 0, its age."""
    svc = alarmed_service()
    center = load_center(EXAMPLE_CONFIG, state_dir=tmp_path)
    model = LiveModel(svc.clock.seconds)
    board = wallboard_document(model, center, svc.clock.seconds(), selftest=svc.status())
    assert board["selftest"] == {"alarm": True, "since_s": 7, "stage": "answer",
                                 "error": "the greeting is <b>silence</b>", "last_ok": False}
    samples = parse(CenterCollector(Sources(model, center, svc.clock.seconds, selftest=svc),
                                    None))
    assert samples["siaga_selftest_alarm"] == [({}, 1.0)]
    assert samples["siaga_selftest_ok"] == [({}, 0.0)]
    assert samples["siaga_selftest_age_seconds"] == [({}, 7.0)]
    assert samples["siaga_selftest_failures_in_row"] == [({}, 2.0)]


def test_given_no_test_finished_yet_when_metrics_read_then_no_made_up_result_or_age(
        tmp_path: Path) -> None:
    """Before the first result there is no ok or age sample (no invented number)."""
    center = load_center(EXAMPLE_CONFIG, state_dir=tmp_path)
    clock = task.Clock()
    svc = SelfTestService(clock, SelfTest(), lambda: None)  # type: ignore[arg-type,return-value]
    samples = parse(CenterCollector(Sources(LiveModel(clock.seconds), center, clock.seconds,
                                            selftest=svc), None))
    assert samples["siaga_selftest_alarm"] == [({}, 0.0)]
    assert "siaga_selftest_ok" not in samples and "siaga_selftest_age_seconds" not in samples
