"""What a phone heard: tone detection and silence detection over recorded audio.

The recordings are pjmedia WAV files (8 kHz, 16-bit, mono). pjmedia writes the header's sizes
only when the recorder is destroyed, so while it records the header says 0 bytes of data; the
samples are nonetheless on disk after the 44-byte header. :func:`read_wav` therefore reads the
rate from the header and takes every sample after it, whatever the sizes say.

Detection works on short frames (50 ms by default): a frame carries a tone when the power of
the DFT bin at that frequency (what a Goertzel filter computes) holds most of the frame's
energy. A call "hears" a tone when enough of its frames do: robust to the clicks,
jitter-buffer gaps and G.711 quantization of a call.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

WAV_HEADER = 44
DEFAULT_RATE = 8000
FULL_SCALE = 32768.0
# Below this level (dBFS, RMS) a frame counts as silence. G.711 idle noise sits far lower
# (about -70 dBFS); a prompt or a tone sits far higher (-30 .. -6 dBFS).
SILENCE_DBFS = -50.0
# The tones of a two-way audio check: the caller's side sends DTMF row 1, the called side
# DTMF column 1. Far apart and neither a harmonic of the other.
CALLER_TONE_HZ = 697.0
CALLEE_TONE_HZ = 1209.0


@dataclass(frozen=True)
class Audio:
    """Mono samples scaled to [-1, 1) and their sample rate."""

    samples: np.ndarray
    rate: int

    @property
    def seconds(self) -> float:
        """Duration in seconds."""
        return len(self.samples) / self.rate

    def slice(self, start: float = 0.0, end: float | None = None) -> Audio:
        """The part between ``start`` and ``end`` seconds."""
        lo = int(start * self.rate)
        hi = None if end is None else int(end * self.rate)
        return Audio(self.samples[lo:hi], self.rate)


def read_wav(path: str | Path) -> Audio:
    """Read a 16-bit PCM WAV, also one still being written (sizes in its header still 0)."""
    data = Path(path).read_bytes()
    rate = DEFAULT_RATE
    channels = 1
    offset = WAV_HEADER
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        pos = 12
        while pos + 8 <= len(data):
            chunk, size = struct.unpack_from("<4sI", data, pos)
            if chunk == b"fmt " and pos + 24 <= len(data):
                fmt, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", data, pos + 8)
                if fmt != 1 or bits != 16:
                    raise ValueError(f"{path}: 16-bit PCM WAV only, not format {fmt}/{bits} bits")
            if chunk == b"data":
                offset = pos + 8
                break
            pos += 8 + size + (size & 1)
    body = data[offset:]
    body = body[: len(body) - len(body) % (2 * channels)]
    samples = np.frombuffer(body, dtype="<i2").astype(np.float64) / FULL_SCALE
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1)
    return Audio(samples, int(rate))


def _as_audio(source: str | Path | Audio | np.ndarray, rate: int | None = None) -> Audio:
    if isinstance(source, Audio):
        return source
    if isinstance(source, np.ndarray):
        return Audio(source.astype(np.float64), rate or DEFAULT_RATE)
    return read_wav(source)


def rms_dbfs(samples: np.ndarray) -> float:
    """RMS level in dB relative to full scale (-inf dB is reported as -200)."""
    if len(samples) == 0:
        return -200.0
    rms = float(np.sqrt(np.mean(np.square(samples))))
    return 20 * np.log10(rms) if rms > 1e-10 else -200.0


def bin_power(samples: np.ndarray, freq: float, rate: int) -> float:
    """Power of ``samples`` at ``freq``: one DFT bin at any frequency (what Goertzel computes).

    Normalised as ``|X(f)|^2 / N``, so a sine of amplitude A gives about ``A^2 N / 4``.
    """
    n = len(samples)
    if n == 0:
        return 0.0
    phase = np.exp(-2j * np.pi * freq * np.arange(n) / rate)
    return float(np.abs(np.dot(samples, phase)) ** 2 / n)


def tone_ratio(samples: np.ndarray, freq: float, rate: int, tolerance_hz: float = 10.0) -> float:
    """Share of the frame's energy at ``freq`` ± ``tolerance_hz`` (~1.0 for that pure tone).

    A sine of amplitude A over N samples has bin power A²N/4 and energy A²N/2, so twice the
    bin power over the energy is the tone's share. The best of a few bins across the tolerance
    absorbs a slightly-off generator.
    """
    energy = float(np.sum(np.square(samples)))
    if energy <= 0:
        return 0.0
    probes = np.linspace(freq - tolerance_hz, freq + tolerance_hz, 5) if tolerance_hz else [freq]
    best = max(bin_power(samples, f, rate) for f in probes)
    return min(1.0, 2 * best / energy)


def frames(audio: Audio, frame_s: float = 0.05) -> list[np.ndarray]:
    """Consecutive non-overlapping frames of ``frame_s`` seconds (the tail is dropped)."""
    size = max(1, int(audio.rate * frame_s))
    count = len(audio.samples) // size
    return [audio.samples[i * size : (i + 1) * size] for i in range(count)]


def dominant_frequency(
    source: str | Path | Audio | np.ndarray, rate: int | None = None
) -> float | None:
    """The strongest frequency (Hz) over the whole audio, by FFT; None for silence."""
    audio = _as_audio(source, rate)
    x = audio.samples
    if len(x) < 16 or rms_dbfs(x) < SILENCE_DBFS:
        return None
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    spectrum[0] = 0.0  # DC offset is not a tone
    k = int(np.argmax(spectrum))
    # Parabolic interpolation between bins: sub-bin accuracy for short recordings.
    if 0 < k < len(spectrum) - 1:
        a, b, c = spectrum[k - 1], spectrum[k], spectrum[k + 1]
        denom = a - 2 * b + c
        shift = 0.5 * (a - c) / denom if denom else 0.0
    else:
        shift = 0.0
    return float((k + shift) * audio.rate / len(x))


def tone_fraction(
    source: str | Path | Audio | np.ndarray,
    freq: float,
    *,
    rate: int | None = None,
    frame_s: float = 0.05,
    min_ratio: float = 0.6,
    tolerance_hz: float = 10.0,
    silence_dbfs: float = SILENCE_DBFS,
) -> float:
    """Share of all frames that are loud and carry mostly ``freq`` (0.0 .. 1.0)."""
    audio = _as_audio(source, rate)
    chunks = frames(audio, frame_s)
    if not chunks:
        return 0.0
    hits = sum(
        1
        for chunk in chunks
        if rms_dbfs(chunk) >= silence_dbfs
        and tone_ratio(chunk, freq, audio.rate, tolerance_hz) >= min_ratio
    )
    return hits / len(chunks)


def hears_tone(
    source: str | Path | Audio | np.ndarray,
    freq: float,
    *,
    rate: int | None = None,
    skip_s: float = 0.0,
    min_fraction: float = 0.5,
    min_ratio: float = 0.6,
    tolerance_hz: float = 10.0,
    frame_s: float = 0.05,
) -> bool:
    """True if at least ``min_fraction`` of the frames (after ``skip_s``) carry ``freq``.

    ``skip_s`` drops the start of a recording (call setup, jitter buffer filling).
    """
    audio = _as_audio(source, rate).slice(skip_s)
    fraction = tone_fraction(
        audio, freq, frame_s=frame_s, min_ratio=min_ratio, tolerance_hz=tolerance_hz
    )
    return fraction >= min_fraction


def is_silence(
    source: str | Path | Audio | np.ndarray,
    *,
    rate: int | None = None,
    skip_s: float = 0.0,
    threshold_dbfs: float = SILENCE_DBFS,
    max_loud_fraction: float = 0.02,
) -> bool:
    """True if (almost) no frame rises above ``threshold_dbfs``; an empty recording is silence.

    A couple of loud frames (a click as media starts) are forgiven: up to ``max_loud_fraction``.
    """
    audio = _as_audio(source, rate).slice(skip_s)
    chunks = frames(audio, 0.02)
    if not chunks:
        return True
    loud = sum(1 for chunk in chunks if rms_dbfs(chunk) >= threshold_dbfs)
    return loud / len(chunks) <= max_loud_fraction


def first_sound_at(
    source: str | Path | Audio | np.ndarray,
    *,
    rate: int | None = None,
    threshold_dbfs: float = SILENCE_DBFS,
    frame_s: float = 0.02,
    sustain: int = 3,
) -> float | None:
    """Seconds from the start to the first of ``sustain`` consecutive loud frames, or None."""
    audio = _as_audio(source, rate)
    run = 0
    for index, chunk in enumerate(frames(audio, frame_s)):
        if rms_dbfs(chunk) >= threshold_dbfs:
            run += 1
            if run == sustain:
                return (index - sustain + 1) * frame_s
        else:
            run = 0
    return None
