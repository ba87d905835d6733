"""What a citizen hears while an operator holds the call: a comfort tone, never silence.

A caller who hears nothing for ten seconds in an emergency call concludes the line dropped,
hangs up and dials again, behind everyone else in the queue. So the center's music-on-hold
class (``musiconhold.conf``) plays this sound in a loop: a 425 Hz tone (the frequency of
Indonesia's call-progress tones, which a caller knows as "the line is alive") for 0.4 s,
then 2.6 s of quiet, like a call-waiting beep every 3 s. It is written here, sample by
sample, as signed-linear 8 kHz audio (Asterisk's own format, played without transcoding),
so it needs neither sox nor a sound package, and is rewritten only when it differs.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

from dialplans.contract import HOLD_SOUND

__all__ = ["HOLD_SOUND", "HOLD_TONE_HZ", "hold_samples", "write_hold_sound"]

HOLD_TONE_HZ = 425.0
RATE = 8000
TONE_S = 0.4
CYCLE_S = 3.0
LEVEL_DBFS = -16.0  # well heard, below the prompts' loudness
RAMP_S = 0.01  # fade in and out: no click at the tone's edges


def hold_samples() -> list[int]:
    """One cycle of the hold sound: 16-bit samples at 8 kHz."""
    peak = 32767 * 10 ** (LEVEL_DBFS / 20) * math.sqrt(2)  # the sine's RMS at LEVEL_DBFS
    tone, ramp = round(TONE_S * RATE), round(RAMP_S * RATE)
    out = []
    for n in range(round(CYCLE_S * RATE)):
        if n >= tone:
            out.append(0)
            continue
        gain = min(1.0, n / ramp, (tone - 1 - n) / ramp)
        out.append(round(peak * gain * math.sin(2 * math.pi * HOLD_TONE_HZ * n / RATE)))
    return out


def write_hold_sound(sounds: Path) -> Path:
    """Write ``sounds/siaga-hold.sln`` (unless it already holds the same); return its path."""
    path = sounds / f"{HOLD_SOUND}.sln"
    data = struct.pack(f"<{round(CYCLE_S * RATE)}h", *hold_samples())
    if not path.exists() or path.read_bytes() != data:
        sounds.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".sln.partial")
        partial.write_bytes(data)
        partial.replace(path)
    return path
