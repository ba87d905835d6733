"""Tone and silence detection on synthesized audio: clean, noisy, G.711-quantized, half-written."""

from __future__ import annotations

import struct
import wave
from pathlib import Path

import numpy as np
import pytest

from pbx.phone import tones

RATE = 8000


def sine(freq: float, seconds: float = 1.0, amplitude: float = 0.3, rate: int = RATE) -> np.ndarray:
    """A sine of ``freq`` Hz."""
    t = np.arange(int(seconds * rate)) / rate
    return amplitude * np.sin(2 * np.pi * freq * t)


def noise(seconds: float, level: float, seed: int = 1) -> np.ndarray:
    """White noise with RMS ``level``."""
    return np.random.default_rng(seed).normal(0.0, level, int(seconds * RATE))


def mulaw(x: np.ndarray) -> np.ndarray:
    """Compand to 8-bit mu-law and back, as a G.711 PCMU call leg does."""
    mu = 255.0
    clipped = np.clip(x, -1.0, 1.0)
    code = np.sign(clipped) * np.log1p(mu * np.abs(clipped)) / np.log1p(mu)
    quantized = np.round((code + 1) / 2 * 255) / 255 * 2 - 1  # 8 bits
    return np.sign(quantized) * np.expm1(np.abs(quantized) * np.log1p(mu)) / mu


def write_wav(path: Path, samples: np.ndarray, rate: int = RATE) -> Path:
    """Write 16-bit mono PCM with a proper header."""
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(samples, -1, 1 - 1 / 32768) * 32768).astype("<i2").tobytes())
    return path


def write_open_wav(path: Path, samples: np.ndarray, rate: int = RATE) -> Path:
    """Write what pjmedia leaves on disk while recording: a header whose sizes are still 0."""
    header = b"RIFF" + struct.pack("<I", 0) + b"WAVE"
    header += b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
    header += b"data" + struct.pack("<I", 0)
    assert len(header) == tones.WAV_HEADER
    body = (np.clip(samples, -1, 1 - 1 / 32768) * 32768).astype("<i2").tobytes()
    path.write_bytes(header + body)
    return path


@pytest.mark.parametrize("freq", [350.0, 440.0, 697.0, 941.0, 1209.0, 1633.0, 3000.0])
def test_given_a_pure_tone_when_analysed_then_its_frequency_is_found(freq: float) -> None:
    """The FFT peak, interpolated, lands within 2 Hz of the tone."""
    assert tones.dominant_frequency(sine(freq)) == pytest.approx(freq, abs=2)
    assert tones.hears_tone(sine(freq), freq)


def test_given_one_tone_when_asked_for_another_then_it_is_not_heard() -> None:
    """697 Hz is not mistaken for 770 Hz (the next DTMF row) nor for 1209 Hz."""
    audio = sine(697.0)
    assert not tones.hears_tone(audio, 770.0)
    assert not tones.hears_tone(audio, 1209.0)


def test_given_a_tone_in_noise_when_analysed_then_it_is_still_heard() -> None:
    """A tone 10 dB above white noise is heard; the noise alone is not a tone."""
    tone = sine(1209.0, amplitude=0.2)  # RMS 0.141
    hiss = noise(1.0, 0.045)  # RMS 0.045: 10 dB below
    assert tones.hears_tone(tone + hiss, 1209.0, min_ratio=0.5)
    assert tones.dominant_frequency(tone + hiss) == pytest.approx(1209.0, abs=3)
    assert not tones.hears_tone(hiss, 1209.0, min_ratio=0.5)


def test_given_g711_quantization_when_analysed_then_the_tone_survives() -> None:
    """Mu-law companding (what a PCMU leg does to the audio) keeps the tone detectable."""
    companded = mulaw(sine(697.0, amplitude=0.1))
    assert np.max(np.abs(companded - sine(697.0, amplitude=0.1))) > 0  # it did change
    assert tones.hears_tone(companded, 697.0)
    assert tones.dominant_frequency(companded) == pytest.approx(697.0, abs=2)


def test_given_a_tone_with_gaps_when_enough_frames_carry_it_then_it_is_heard() -> None:
    """Packet loss/jitter gaps: a tone present 70% of the time is heard at min_fraction 0.5."""
    audio = sine(697.0, seconds=2.0)
    audio[: int(0.6 * RATE)] = 0.0  # the first 0.6 s of 2 s silent
    assert tones.tone_fraction(audio, 697.0) == pytest.approx(0.7, abs=0.03)
    assert tones.hears_tone(audio, 697.0)
    assert not tones.hears_tone(audio, 697.0, min_fraction=0.9)
    assert tones.hears_tone(audio, 697.0, skip_s=0.6, min_fraction=0.95)


def test_given_two_tones_mixed_when_each_is_asked_then_neither_dominates_a_frame() -> None:
    """A DTMF-like mix of two equal tones holds about half the energy at each frequency."""
    mixed = sine(697.0) + sine(1209.0)
    frame = mixed[:400]
    assert tones.tone_ratio(frame, 697.0, RATE) == pytest.approx(0.5, abs=0.1)
    assert not tones.hears_tone(mixed, 697.0)  # default min_ratio 0.6: not "the" tone
    assert tones.hears_tone(mixed, 697.0, min_ratio=0.4)


def test_given_digital_silence_or_faint_noise_when_checked_then_it_is_silence() -> None:
    """Zeros and -70 dBFS noise are silence and have no dominant frequency."""
    assert tones.is_silence(np.zeros(RATE))
    faint = noise(1.0, 10 ** (-70 / 20))
    assert tones.is_silence(faint)
    assert tones.dominant_frequency(faint) is None


def test_given_speech_like_audio_when_checked_then_it_is_not_silence() -> None:
    """A -25 dBFS noise burst (a prompt) is not silence, even after a silent lead-in."""
    audio = np.concatenate([np.zeros(RATE // 2), noise(0.5, 10 ** (-25 / 20))])
    assert not tones.is_silence(audio)
    assert tones.is_silence(audio[: RATE // 2])
    assert tones.first_sound_at(audio) == pytest.approx(0.5, abs=0.02)


def test_given_a_single_click_when_checked_then_it_is_still_silence() -> None:
    """One 20 ms click in 2 s is forgiven; three clicks of every 20 frames are not."""
    audio = np.zeros(2 * RATE)
    audio[1000:1160] = 0.5
    assert tones.is_silence(audio)
    busy = np.zeros(2 * RATE)
    for start in range(0, len(busy), 160 * 20):
        busy[start : start + 480] = 0.5
    assert not tones.is_silence(busy)


def test_given_no_sound_when_looking_for_the_first_sound_then_none() -> None:
    """first_sound_at is None for silence and ignores a lone loud frame."""
    assert tones.first_sound_at(np.zeros(RATE)) is None
    audio = np.zeros(RATE)
    audio[800:960] = 0.5  # one 20 ms frame: not sustained
    assert tones.first_sound_at(audio) is None


def test_given_a_finished_wav_when_read_then_rate_and_samples_match(tmp_path: Path) -> None:
    """A normal WAV file reads back at its rate with its samples."""
    samples = sine(1209.0, seconds=0.5)
    audio = tones.read_wav(write_wav(tmp_path / "done.wav", samples))
    assert audio.rate == RATE
    assert len(audio.samples) == len(samples)
    assert np.max(np.abs(audio.samples - samples)) < 1e-4
    assert tones.hears_tone(tmp_path / "done.wav", 1209.0)


def test_given_a_wav_still_being_recorded_when_read_then_all_samples_after_the_header_count(
    tmp_path: Path,
) -> None:
    """Header sizes of 0 (pjmedia before the recorder closes) do not hide the samples."""
    samples = sine(697.0, seconds=0.75)
    path = write_open_wav(tmp_path / "open.wav", samples)
    with path.open("ab") as f:
        f.write(b"\x01")  # half a sample, as a flush can leave it
    audio = tones.read_wav(path)
    assert len(audio.samples) == len(samples)
    assert tones.hears_tone(path, 697.0)


def test_given_an_empty_recording_when_analysed_then_it_is_silence(tmp_path: Path) -> None:
    """A recording with a header only is silence, has no tone and no frequency."""
    path = write_open_wav(tmp_path / "empty.wav", np.zeros(0))
    assert tones.is_silence(path)
    assert not tones.hears_tone(path, 697.0)
    assert tones.dominant_frequency(path) is None


def test_given_a_16khz_wav_when_analysed_then_its_own_rate_is_used(tmp_path: Path) -> None:
    """The rate comes from the header: a 16 kHz file's 3 kHz tone is found at 3 kHz."""
    path = write_wav(tmp_path / "wide.wav", sine(3000.0, rate=16000), rate=16000)
    assert tones.read_wav(path).rate == 16000
    assert tones.dominant_frequency(path) == pytest.approx(3000.0, abs=2)


def test_given_a_non_pcm_wav_when_read_then_it_is_refused(tmp_path: Path) -> None:
    """An 8-bit WAV is refused with a clear error rather than misread."""
    path = tmp_path / "u8.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(1)
        w.setframerate(RATE)
        w.writeframes(bytes(100))
    with pytest.raises(ValueError, match="16-bit PCM"):
        tones.read_wav(path)
