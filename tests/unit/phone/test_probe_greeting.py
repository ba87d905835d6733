"""The probe's greeting check: a ringing tone where the greeting should be is a failure (a
missing greeting file sends the caller straight to the queue's ringing), speech is not."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from dispatcher.config.loader import load_center
from ivr.prompts import build_prompts
from pbx.phone import tones
from pbx.phone.probe import is_ringback
from tests.harness import EXAMPLE_CONFIG

RATE = 8000


def tone(*hz: float, on: float = 1.5) -> tones.Audio:
    """1.5 s: ``hz`` (summed) for ``on`` seconds, then silence."""
    t = np.arange(int(1.5 * RATE)) / RATE
    wave = sum(0.3 / len(hz) * np.sin(2 * np.pi * f * t) for f in hz)
    return tones.Audio(np.where(t < on, wave, 0.0), RATE)


@pytest.mark.parametrize("ring", [tone(425.0, on=1.0), tone(440.0, 480.0)],
                         ids=["425Hz-1s-on", "440+480Hz"])
def test_given_a_ringing_tone_when_checked_then_it_is_no_greeting(ring: tones.Audio) -> None:
    """Indonesia's (and most countries') ringing, and North America's, are caught."""
    assert is_ringback(ring)


@pytest.mark.skipif(shutil.which("espeak-ng") is None or shutil.which("sox") is None,
                    reason="espeak-ng and sox make the spoken prompts")
def test_given_the_spoken_prompts_when_checked_then_none_is_taken_for_ringing(
        tmp_path: Path) -> None:
    """Every prompt the IVR speaks (both languages), from its first sound on, is a voice."""
    center = load_center(EXAMPLE_CONFIG, state_dir=tmp_path)
    built = build_prompts(center, tmp_path / "sounds", strict=True)
    assert built.files
    for path in built.files.values():
        audio = tones.read_wav(path)
        first = tones.first_sound_at(audio)
        assert first is not None, path
        assert not is_ringback(audio.slice(first, first + 1.5)), path
