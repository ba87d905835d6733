"""The sound a held citizen hears (``ivr/hold.py``), read back as audio: a 425 Hz tone at the
start of every 3 s, quiet in between, never silence throughout; and the music-on-hold class
plays that file."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from dialplans.render import AsteriskPaths, render_all
from dispatcher.config.loader import load_center
from dispatcher.credentials import ensure_credentials
from ivr.hold import HOLD_TONE_HZ, write_hold_sound
from pbx.phone import tones

REPO = Path(__file__).resolve().parents[3]


def _read(path: Path) -> tones.Audio:
    raw = np.frombuffer(path.read_bytes(), dtype="<i2").astype(np.float64) / 32768
    return tones.Audio(raw, 8000)


def test_given_the_hold_sound_then_a_425_hz_beep_then_quiet_every_three_seconds(
        tmp_path: Path) -> None:
    audio = _read(write_hold_sound(tmp_path / "sounds"))
    assert audio.seconds == 3.0
    beep, quiet = audio.slice(0.0, 0.4), audio.slice(0.45, 3.0)
    assert abs(tones.dominant_frequency(beep.samples, beep.rate) - HOLD_TONE_HZ) < 2
    assert tones.hears_tone(beep, HOLD_TONE_HZ, min_fraction=0.9)
    assert -20 < tones.rms_dbfs(beep.slice(0.05, 0.35).samples) < -12
    assert tones.is_silence(quiet)
    assert not tones.is_silence(audio)
    # Looped, the citizen hears the beep in every 3 s: about 13 % of the time.
    assert 0.1 < tones.tone_fraction(audio, HOLD_TONE_HZ) < 0.2


def test_given_the_sound_written_when_written_again_then_the_file_is_left_alone(
        tmp_path: Path) -> None:
    path = write_hold_sound(tmp_path)
    os.utime(path, (1_000_000, 1_000_000))
    assert write_hold_sound(tmp_path) == path
    assert path.stat().st_mtime == 1_000_000
    path.write_bytes(b"\0\0" * 10)  # damaged: made again
    write_hold_sound(tmp_path)
    assert _read(path).seconds == 3.0


def test_given_a_center_then_its_music_on_hold_class_plays_the_hold_sound(
        tmp_path: Path) -> None:
    center = load_center(REPO / "config" / "siaga.example.yaml", state_dir=str(tmp_path))
    paths = AsteriskPaths.for_center(center, "/usr/lib/asterisk/modules", "/usr/share/asterisk")
    files = render_all(center, ensure_credentials(center), paths)
    moh = files["musiconhold.conf"]
    assert "[default]" in moh
    assert f"entry = {paths.sounds}/siaga-hold" in moh
    assert "silence" not in moh.split("[default]")[1]
