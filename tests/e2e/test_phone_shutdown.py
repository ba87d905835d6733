"""pjsua2 shuts down cleanly however a run ends: a test failing mid-call, a script that forgets.

pjsua2 aborts the whole process (SIGABRT, an ``Assertion ... failed`` line) when it is torn
down with calls still bound, and that would take pytest with it. Each scenario here runs in
a child process so that such a crash would be seen as one, not suffered.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

FAILING_TESTS = '''
import pytest

from pbx.phone.events import CallState


def connect(phones):
    a, b = phones.direct("a"), phones.direct("b")
    out = a.call(b.uri)
    inc = b.wait_incoming()
    inc.answer()
    out.wait_confirmed()
    inc.wait_confirmed()
    return out, inc


def test_fails_with_a_call_up_and_audio_flowing(phones, tmp_path):
    out, inc = connect(phones)
    out.play_tone(697)
    inc.start_recording(tmp_path / "x.wav")
    assert False, "failing halfway on purpose"


def test_fails_while_a_call_still_rings(phones):
    a, b = phones.direct("a"), phones.direct("b")
    a.call(b.uri)
    b.wait_incoming()
    raise RuntimeError("failing while ringing")


def test_next_test_still_gets_working_phones(phones):
    out, inc = connect(phones)
    assert out.state == inc.state == CallState.CONFIRMED
'''

FORGETFUL_SCRIPT = '''
from pbx.phone.phone import Phone
from pbx.phone.stack import SipStack

stack = SipStack()
a, b = Phone(stack, "a"), Phone(stack, "b")
out = a.call(b.uri)
inc = b.wait_incoming()
inc.answer()
out.wait_confirmed()
out.play_tone(697)
print("exiting with the call up")
'''


def run(argv: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run a Python child in the repository with ``tmp_path`` as its working files."""
    return subprocess.run(
        [sys.executable, *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_no_crash(done: subprocess.CompletedProcess[str]) -> None:
    """No signal death, no pjlib assertion, no 'unknown thread' complaint."""
    output = done.stdout + done.stderr
    assert done.returncode >= 0, f"killed by signal {-done.returncode}:\n{output[-3000:]}"
    assert not re.search(r"Assertion .* failed", output), output[-3000:]
    assert "unknown/external thread" not in output, output[-3000:]


def test_given_tests_failing_mid_call_when_the_session_ends_then_pytest_reports_not_crashes(
    tmp_path: Path,
) -> None:
    """Two tests fail with calls up; the next one still works; pytest exits 1, not SIGABRT."""
    test_file = tmp_path / "test_half_way.py"
    test_file.write_text(textwrap.dedent(FAILING_TESTS))
    done = run(
        ["-m", "pytest", "-q", "-p", "tests.phones", "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path), str(test_file)],
        tmp_path,
    )
    assert_no_crash(done)
    assert done.returncode == 1, done.stdout[-3000:]
    assert "2 failed, 1 passed" in done.stdout


def test_given_a_script_that_never_closes_when_it_exits_then_the_stack_closes_itself(
    tmp_path: Path,
) -> None:
    """A script exiting with a call up and a tone playing ends with status 0."""
    script = tmp_path / "forgetful.py"
    script.write_text(textwrap.dedent(FORGETFUL_SCRIPT))
    done = run([str(script)], tmp_path)
    assert_no_crash(done)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "exiting with the call up" in done.stdout
