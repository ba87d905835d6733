"""The hotline probe: a synthetic citizen who calls the hotline and reports what happened.

A command center must know its hotline answers before a citizen finds out it does not. The
probe places a real call as an anonymous caller, checks that the greeting is audio and not
silence, walks the IVR with DTMF, and optionally waits until a test operator account rings
(answering it to prove two-way audio). Every stage is timed from the INVITE.

:func:`run_probe` never raises for a failing center: the :class:`ProbeResult` says which
stage failed and why. It raises only for a bad configuration.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pbx.phone import tones
from pbx.phone.call import Call
from pbx.phone.dialing import check_dtmf, split_hostport
from pbx.phone.errors import PhoneError
from pbx.phone.events import CallState
from pbx.phone.phone import Phone
from pbx.phone.stack import SipStack

STAGES = ("start", "call", "answer", "audio", "ivr", "operator", "done")
# Ringing tones (ITU-T E.180: 425 Hz in most of the world, Indonesia included; 440+480 Hz in
# North America). A hotline whose greeting file is missing skips the menu and queues the
# caller at once: what the caller hears first is then the queue's ringing, not a greeting.
RINGBACK_HZ = (425.0, 440.0, 480.0)


@dataclass(frozen=True)
class ProbeConfig:
    """What the probe calls and what it expects.

    ``server`` is the center's SIP address (host:port). With ``caller_password`` the caller
    authenticates as the endpoint ``caller`` (the center's own self-test endpoint) instead of
    calling anonymously; it never registers. ``ivr_digits`` are pressed one by one
    after ``digit_delay`` seconds of greeting. With ``operator_user``/``operator_password``
    the probe registers that test operator and waits for it to ring; ``operator_answer``
    then answers and checks two-way audio.
    """

    server: str
    hotline: str = "112"
    caller: str = "siaga-probe"
    caller_password: str | None = field(default=None, repr=False)
    ivr_digits: str = ""
    digit_delay: float = 1.0
    greeting_seconds: float = 1.5
    answer_timeout: float = 10.0
    audio_timeout: float = 5.0
    operator_user: str | None = None
    operator_password: str | None = field(default=None, repr=False)
    operator_timeout: float = 30.0
    operator_answer: bool = True
    record_dir: Path | None = None

    def __post_init__(self) -> None:
        split_hostport(self.server)
        if not self.hotline or any(not c.isalnum() and c not in "*#+" for c in self.hotline):
            raise ValueError(f"bad hotline number {self.hotline!r}")
        if self.ivr_digits:
            check_dtmf(self.ivr_digits)
        if bool(self.operator_user) != bool(self.operator_password):
            raise ValueError("a test operator needs both a user and a password")


@dataclass
class ProbeResult:
    """What the probe saw. Times are seconds from sending the INVITE; None if not reached."""

    ok: bool = False
    stage: str = "start"  # the last stage passed (see STAGES)
    error: str | None = None
    hotline: str = ""
    status_code: int | None = None
    time_to_answer: float | None = None
    time_to_first_audio: float | None = None
    greeting_dbfs: float | None = None
    greeting_silent: bool | None = None
    ivr_digits: str = ""
    time_to_ivr_done: float | None = None
    time_to_operator_ring: float | None = None
    operator_two_way_audio: bool | None = None
    operator_registered_in: float | None = None
    total: float | None = None
    recordings: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        """The result as one JSON object (times rounded to milliseconds)."""
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, float):
                data[key] = round(value, 3)
        return json.dumps(data, sort_keys=True)


def run_probe(config: ProbeConfig, stack: SipStack | None = None) -> ProbeResult:
    """Call the hotline as ``config`` says and report; uses (or makes and closes) a stack."""
    if stack is None:
        with SipStack() as own:
            return run_probe(config, own)
    result = ProbeResult(hotline=config.hotline, ivr_digits=config.ivr_digits)
    record_dir = config.record_dir or Path(tempfile.mkdtemp(prefix="siaga-probe-"))
    record_dir.mkdir(parents=True, exist_ok=True)
    phones: list[Phone] = []
    started = time.monotonic()
    try:
        operator = None
        if config.operator_user:
            operator = Phone(
                stack,
                config.operator_user,
                server=config.server,
                password=config.operator_password,
                name="probe-operator",
            )
            phones.append(operator)
            operator.wait_registered(config.answer_timeout)
            result.operator_registered_in = time.monotonic() - started
        citizen = Phone(stack, config.caller, server=config.server,
                        password=config.caller_password, register=False, name="probe")
        phones.append(citizen)
        _walk(config, result, citizen, operator, record_dir)
        result.ok = True
        result.stage = "done"
    except PhoneError as exc:
        result.error = str(exc)
    finally:
        problems = []
        for phone in phones:
            try:
                phone.close()
            except PhoneError as exc:
                problems.append(str(exc))
        if problems and result.error is None:
            result.ok = False
            result.error = f"cleanup: {problems[0]}"
        result.total = time.monotonic() - started
    return result


def _walk(
    config: ProbeConfig,
    result: ProbeResult,
    citizen: Phone,
    operator: Phone | None,
    record_dir: Path,
) -> None:
    call = citizen.call(config.hotline)
    t0 = call.created_at
    result.stage = "call"

    # Early media (a 183 with a greeting) counts as an answer of the line as much as a 200.
    def answered() -> bool:
        if call.state == CallState.DISCONNECTED:
            result.status_code = call.status_code
            raise PhoneError(f"the hotline refused the call: {call.status_code} {call.reason}")
        return call.media_active

    call.stack.wait_until(answered, config.answer_timeout, "the hotline to answer")
    result.status_code = call.status_code
    answered_at = call.confirmed_at or call.media_at or time.monotonic()
    result.time_to_answer = answered_at - t0
    result.stage = "answer"

    greeting = call.start_recording(record_dir / "greeting.wav")
    result.recordings.append(str(greeting))
    recording_from = call.recording_started_at or time.monotonic()
    first = _wait_first_sound(call, config.audio_timeout)
    if first is None:
        result.greeting_silent = True
        raise PhoneError(f"no audio from the hotline within {config.audio_timeout:g}s")
    result.time_to_first_audio = recording_from + first - t0
    call.wait_heard(first + config.greeting_seconds, config.audio_timeout + config.greeting_seconds)
    heard = tones.read_wav(greeting).slice(first, first + config.greeting_seconds)
    result.greeting_dbfs = tones.rms_dbfs(heard.samples)
    result.greeting_silent = tones.is_silence(heard)
    if result.greeting_silent:
        raise PhoneError("the greeting is silence")
    if is_ringback(heard):
        raise PhoneError("the hotline plays a ringing tone where its greeting should be")
    result.stage = "audio"

    if config.ivr_digits:
        # Let the greeting play a little, as a caller would, then press the keys.
        wait_until = recording_from + first + config.digit_delay
        call.stack.run_for(max(0.0, wait_until - time.monotonic()))
        call.send_dtmf(config.ivr_digits)
        result.time_to_ivr_done = time.monotonic() - t0
    result.stage = "ivr"

    if operator is not None:
        ringing = _wait_ring(call, operator, config.operator_timeout)
        # When the INVITE reached the operator (it may have rung while we listened or keyed).
        result.time_to_operator_ring = ringing.created_at - t0
        if config.operator_answer:
            result.operator_two_way_audio = _two_way(call, ringing, record_dir, result)
            if not result.operator_two_way_audio:
                raise PhoneError("the operator and the caller do not hear each other")
        result.stage = "operator"
    call.hangup()


def is_ringback(heard: tones.Audio) -> bool:
    """Whether ``heard`` is mostly a ringing tone rather than speech (a voice's energy is
    spread over its harmonics; a ringing tone's sits at one or two frequencies)."""
    return any(tones.hears_tone(heard, hz, min_ratio=0.4) for hz in RINGBACK_HZ)


def _wait_first_sound(call: Call, timeout: float) -> float | None:
    """Seconds into the recording where sound starts, pumping until it does or time is up."""
    found: list[float] = []

    def sound() -> bool:
        if call.state == CallState.DISCONNECTED:
            raise PhoneError(f"the hotline hung up: {call.status_code} {call.reason}")
        if call.recording is None or not call.recording.exists():
            return False
        at = tones.first_sound_at(call.recording)
        if at is not None:
            found.append(at)
        return at is not None

    try:
        call.stack.wait_until(sound, timeout, "audio from the hotline")
    except PhoneError as exc:
        if "timed out" not in str(exc):
            raise
        return None
    return found[0]


def _wait_ring(call: Call, operator: Phone, timeout: float) -> Call:
    def rung() -> bool:
        if call.state == CallState.DISCONNECTED:
            raise PhoneError(f"the hotline hung up before an operator rang: {call.status_code}")
        return operator.incoming_waiting > 0

    call.stack.wait_until(rung, timeout, f"operator {operator.user} to ring")
    return operator.wait_incoming(0)


def _two_way(call: Call, ringing: Call, record_dir: Path, result: ProbeResult) -> bool:
    ringing.answer()
    ringing.wait_confirmed()
    call.stop_recording()
    call.play_tone(tones.CALLER_TONE_HZ)
    ringing.play_tone(tones.CALLEE_TONE_HZ)
    caller_hears = call.start_recording(record_dir / "caller-hears.wav")
    operator_hears = ringing.start_recording(record_dir / "operator-hears.wav")
    result.recordings += [str(caller_hears), str(operator_hears)]
    call.wait_heard(1.3)
    ringing.wait_heard(1.3)
    ok = tones.hears_tone(caller_hears, tones.CALLEE_TONE_HZ, skip_s=0.3) and tones.hears_tone(
        operator_hears, tones.CALLER_TONE_HZ, skip_s=0.3
    )
    call.stop_recording()
    ringing.stop_recording()
    ringing.hangup()
    return ok
