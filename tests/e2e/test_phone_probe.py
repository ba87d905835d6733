"""The hotline probe and the ``siaga phone``/``siaga probe`` commands against the real center."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, TYPE_CHECKING

import pytest

from pbx.phone import tones
from pbx.phone.probe import ProbeConfig, run_probe
from tests.harness import wait_for

if TYPE_CHECKING:
    from pbx.phone.stack import SipStack
    from tests.phones import Directory, PhoneFactory

pytestmark = pytest.mark.asterisk

REPO = Path(__file__).resolve().parents[2]


class OutputLines:
    """A child's standard output read as it comes (threads drain both pipes)."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self._lines: list[str] = []
        self._errors: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(proc.stdout, self._lines), daemon=True),
            threading.Thread(target=self._read, args=(proc.stderr, self._errors), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(pipe: IO[str] | None, into: list[str]) -> None:
        assert pipe is not None
        for line in pipe:
            into.append(line)

    def text(self) -> str:
        """Everything printed so far."""
        return "".join(list(self._lines))

    def exited(self) -> bool:
        """False while the child runs; raises with what it printed once it has exited."""
        if self.proc.poll() is None:
            return False
        raise AssertionError(f"the command exited {self.proc.returncode}: "
                             f"{self.text()}{''.join(self._errors)}")

    def saw(self, needle: str) -> bool:
        """Whether the output holds ``needle``; raises if the child already exited."""
        if needle in self.text():
            return True
        if self.proc.poll() is not None:
            raise AssertionError(f"the command exited {self.proc.returncode}: {self.text()}")
        return False

    def finish(self, timeout: float) -> str:
        """Wait for the child to exit; its standard error."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for reader in self._readers:
            reader.join(timeout)
        return "".join(self._errors)


def siaga(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the ``siaga`` command in its own process (it has its own pjsua2 stack)."""
    return subprocess.run(
        [sys.executable, "-m", "dispatcher.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_given_the_center_when_probed_with_an_operator_then_every_stage_passes(
    sip_stack: SipStack, phone_directory: Directory, tmp_path: Path
) -> None:
    """Answer, audible greeting, IVR keys, operator rung and two-way audio, timed in order."""
    operator = phone_directory.operator(3)
    result = run_probe(
        ProbeConfig(
            server=phone_directory.server,
            hotline=phone_directory.hotline,
            ivr_digits="1",
            digit_delay=0.3,
            operator_user=operator.user,
            operator_password=operator.password,
            record_dir=tmp_path,
        ),
        sip_stack,
    )
    assert result.ok, result
    assert result.stage == "done"
    assert result.status_code == 200
    assert result.greeting_silent is False
    assert result.greeting_dbfs is not None and result.greeting_dbfs > tones.SILENCE_DBFS
    assert result.operator_two_way_audio is True
    assert result.time_to_answer is not None
    assert result.time_to_first_audio is not None
    assert result.time_to_ivr_done is not None
    assert result.time_to_operator_ring is not None and result.total is not None
    assert 0 < result.time_to_answer <= result.time_to_first_audio < result.time_to_ivr_done
    # The example city has no IVR yet: the queue may ring the operator before the keys.
    assert result.time_to_answer < result.time_to_operator_ring < result.total
    assert all(Path(p).exists() for p in result.recordings)
    assert sip_stack.phones == []  # the probe closed its phones


def test_given_a_number_the_center_does_not_serve_when_probed_then_the_result_says_so(
    sip_stack: SipStack, phone_directory: Directory
) -> None:
    """An anonymous caller may dial the hotline only: another number fails at the call stage."""
    result = run_probe(ProbeConfig(server=phone_directory.server, hotline="301"), sip_stack)
    assert not result.ok
    assert result.stage == "call"
    assert result.status_code is not None and result.status_code >= 400
    assert "refused" in (result.error or "")
    assert result.time_to_answer is None


def test_given_the_probe_command_when_run_then_it_prints_one_json_result(
    phone_directory: Directory, tmp_path: Path
) -> None:
    """``siaga probe`` in its own process prints a passing JSON result and exits 0."""
    done = siaga(
        "probe",
        "--server", phone_directory.server,
        "--hotline", phone_directory.hotline,
        "--digits", "0",
        "--digit-delay", "0.2",
        "--record-dir", str(tmp_path),
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["ok"] is True
    assert result["stage"] == "done"
    assert result["time_to_answer"] <= result["time_to_first_audio"]
    assert result["operator_two_way_audio"] is None  # no operator was asked for


def test_given_the_phone_command_when_it_calls_an_agency_then_the_agency_hears_it(
    phones: PhoneFactory, phone_directory: Directory, tmp_path: Path
) -> None:
    """``siaga phone`` registers as an operator, calls police, presses 5, sends 697 Hz."""
    police = phones.agency("police", 2)
    operator = phone_directory.operator(4)
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "dispatcher.cli", "phone",
            "--server", phone_directory.server,
            "--user", operator.user,
            # One argument: a generated password may start with "-", which argparse would
            # take for an option ("expected one argument", exit 2) if it stood alone.
            f"--password={operator.password}",
            "--call", police.user,
            "--tone", "697",
            "--dtmf", "5",
            "--hangup-after", "3",
        ],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    lines = OutputLines(proc)
    try:
        try:
            wait_for(lambda: police.incoming_waiting or lines.exited(), 15, "police to ring")
        except TimeoutError as exc:
            raise AssertionError(f"{exc}; siaga phone said: {lines.text()!r}") from exc
        call = police.wait_incoming(1)
        assert operator.user in call.remote_uri
        call.answer()
        call.wait_confirmed()
        call.start_recording(tmp_path / "police-hears.wav")
        assert call.wait_dtmf("5") == "5"
        call.wait_heard(1.0)
        call.wait_disconnected(10)  # the command hangs up by itself
    finally:
        err = lines.finish(timeout=15)
    assert proc.returncode == 0, err
    out = lines.text()
    assert tones.hears_tone(call.recording, 697.0, skip_s=0.3)
    assert "registration 200" in out
    assert "state CONFIRMED" in out
    assert "dtmf-sent 5" in out
    assert "state DISCONNECTED" in out


def test_given_the_phone_command_answering_when_called_then_the_caller_hears_its_tone(
    phones: PhoneFactory, phone_directory: Directory, tmp_path: Path
) -> None:
    """``siaga phone --answer`` registers as a police phone, answers and sends 1209 Hz."""
    police = phone_directory.agency("police", 3)
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "dispatcher.cli", "phone",
            "--server", phone_directory.server,
            "--user", police.user,
            f"--password={police.password}",  # one argument (see above)
            "--answer",
            "--tone", "1209",
            "--duration", "30",
        ],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    lines = OutputLines(proc)
    try:
        operator = phones.operator(2)
        # The command registers in its own time (a loaded machine may take seconds to even
        # import it): call once it says Asterisk took its registration.
        wait_for(lambda: lines.saw("registration 200"), 60,
                 f"siaga phone to register (it printed {lines.text()!r})")
        call = operator.call(police.user)
        call.wait_confirmed(10)
        call.start_recording(tmp_path / "operator-hears.wav")
        heard = call.wait_heard(1.3)
        assert tones.hears_tone(heard, 1209.0, skip_s=0.3)
        call.hangup()
    finally:
        proc.terminate()  # SIGTERM: the command closes its stack and exits 0
        err = lines.finish(timeout=15)
    assert proc.returncode == 0, err
    out = lines.text()
    assert "incoming" in out and "state CONFIRMED" in out
