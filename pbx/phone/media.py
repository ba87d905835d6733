"""A call's audio: its conference port, what we send into it, what we record from it.

pjmedia joins audio on a conference bridge: a call has one port (slot) there while its media
runs, a tone generator or WAV player is a port that transmits into it, a recorder a port it
transmits into. The call's slot can change on every re-INVITE, so :class:`CallAudio` keeps the
source and the recorder and re-wires them to whatever slot the call has now.

pjsua2 objects are created and destroyed on the stack's thread only: the caller
(:class:`pbx.phone.call.Call`) checks the thread before it calls in here.
"""

from __future__ import annotations

import time
import weakref
from pathlib import Path

import pjsua2 as pj

from pbx.phone.errors import PhoneError
from pbx.phone.limits import CLOCK_RATE

# pjmedia's WAV files: a 44-byte header, then 16-bit mono samples, flushed in 4 KiB blocks.
WAV_HEADER = 44
BYTES_PER_SECOND = 2 * CLOCK_RATE
FLUSH_BLOCK = 4096


def tone_generator(freq_hz: float, volume: int = 0) -> pj.ToneGenerator:
    """A port that sends a continuous sine tone of ``freq_hz``; raises ValueError above Nyquist."""
    if not 0 < freq_hz < CLOCK_RATE / 2:
        raise ValueError(f"tone frequency must be below {CLOCK_RATE // 2} Hz: {freq_hz}")
    gen = pj.ToneGenerator()
    gen.createToneGenerator(CLOCK_RATE, 1)
    desc = pj.ToneDesc()
    # Two equal frequencies make one pure sine (pjmedia's tone generator is dual-tone).
    desc.freq1 = int(freq_hz)
    desc.freq2 = int(freq_hz)
    desc.on_msec = 1000
    desc.off_msec = 0
    desc.volume = volume
    tones = pj.ToneDescVector()
    tones.append(desc)
    gen.play(tones, True)
    return gen


def wav_player(path: str | Path, loop: bool = True) -> pj.AudioMediaPlayer:
    """A port that plays a WAV file (8 kHz 16-bit mono is best); raises PhoneError."""
    player = pj.AudioMediaPlayer()
    try:
        player.createPlayer(str(path), 0 if loop else pj.PJMEDIA_FILE_NO_LOOP)
    except pj.Error as exc:
        raise PhoneError(f"cannot play {path}: {exc.info()}") from exc
    return player


class CallAudio:
    """The audio ports of one call. ``recording`` is the WAV being written, if any.

    ``owner`` (held weakly) only names the call in error messages.
    """

    def __init__(self, owner: object) -> None:
        self._owner = weakref.ref(owner)
        self._port: pj.AudioMedia | None = None  # the call's conference slot, while it has one
        self._source: pj.AudioMedia | None = None  # tone generator or player
        self._recorder: pj.AudioMediaRecorder | None = None
        self.recording: Path | None = None
        self.recording_started_at: float | None = None

    def _name(self) -> str:
        return repr(self._owner()) if self._owner() is not None else "a call"

    def connect(self, port: pj.AudioMedia | None) -> None:
        """The call's slot is now ``port`` (None: it has none); wire the source and recorder."""
        self._port = port
        self._wire()

    def _wire(self) -> None:
        if self._port is None:
            return
        if self._source is not None:
            self._source.startTransmit(self._port)
        if self._recorder is not None:
            self._port.startTransmit(self._recorder)

    def send(self, source: pj.AudioMedia | None) -> None:
        """Send ``source`` into the call instead of what it had (None: silence)."""
        old, self._source = self._source, source
        if old is not None and self._port is not None:
            try:
                old.stopTransmit(self._port)
            except pj.Error as exc:
                raise PhoneError(f"cannot stop audio on {self._name()}: {exc.info()}") from exc
        del old  # destroyed here, on the owner thread
        self._wire()

    def start_recording(self, path: str | Path) -> Path:
        """Record what the call hears into ``path`` (a new recording replaces the last)."""
        self.stop_recording()
        path = Path(path)
        recorder = pj.AudioMediaRecorder()
        try:
            recorder.createRecorder(str(path))
        except pj.Error as exc:
            raise PhoneError(f"cannot record to {path}: {exc.info()}") from exc
        self._recorder = recorder
        self.recording = path
        self.recording_started_at = time.monotonic()
        self._wire()
        return path

    def stop_recording(self) -> Path | None:
        """Stop recording and finish the WAV header; return the file, if one was recorded."""
        recorder, self._recorder = self._recorder, None
        if recorder is not None and self._port is not None:
            try:
                self._port.stopTransmit(recorder)
            except pj.Error as exc:
                raise PhoneError(f"cannot stop recording {self._name()}: {exc.info()}") from exc
        del recorder  # pjmedia writes the header sizes when the recorder is destroyed
        return self.recording

    def heard_seconds(self) -> float:
        """Seconds of audio recorded so far (0 without a recording)."""
        if self.recording is None or not self.recording.exists():
            return 0.0
        return max(0, self.recording.stat().st_size - WAV_HEADER) / BYTES_PER_SECOND

    def release(self) -> None:
        """Drop every pjsua2 object of the call's audio (owner thread)."""
        self.send(None)
        self.stop_recording()
        self._port = None
