"""Building the IVR prompts: espeak-ng + sox, cached by hash, stock sounds without them."""

from __future__ import annotations

import os
import shutil
import wave
from collections.abc import Sequence
from pathlib import Path

import pytest

from dispatcher.config.loader import load_center
from dispatcher.config.model import IVR_PROMPTS
from ivr import prompts
from ivr.prompts import (
    ENGINE_ESPEAK,
    ENGINE_STOCK,
    MANIFEST,
    PromptError,
    build_prompts,
    prompt_specs,
    stock_sound_dirs,
)
from pbx.phone import tones
from tests.harness import EXAMPLE_CONFIG

EXISTING = shutil.which("true") or "/bin/true"  # any executable: the runner is faked


class FakeTools:
    """Stands in for espeak-ng and sox: records argv and stdin, writes a tiny WAV."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], bytes | None]] = []

    def __call__(self, argv: Sequence[str], stdin: bytes | None) -> None:
        argv = list(argv)
        self.calls.append((argv, stdin))
        out = argv[argv.index("-w") + 1] if "-w" in argv else argv[argv.index("gain") - 1]
        with wave.open(out, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(8000)
            w.writeframes(b"\x01\x00" * 80 + (stdin or b"").ljust(16, b"\0"))

    @property
    def spoken(self) -> list[str]:
        """Texts given to espeak, in order."""
        return [stdin.decode() for _argv, stdin in self.calls if stdin is not None]


def center_at(tmp_path: Path, config: Path = EXAMPLE_CONFIG):  # noqa: ANN201
    """The example center with its state in tmp_path."""
    return load_center(config, state_dir=tmp_path)


def test_given_the_example_when_built_then_every_prompt_of_every_language_is_made(
        tmp_path: Path) -> None:
    """7 prompts x 2 languages, deterministic names, plus the default language's copies."""
    tools = FakeTools()
    sounds = tmp_path / "sounds"
    result = build_prompts(center_at(tmp_path), sounds, espeak=EXISTING, sox=EXISTING,
                           run=tools)
    assert result.engine == ENGINE_ESPEAK and not result.fallback
    assert len(result.built) == 2 * len(IVR_PROMPTS) and not result.unchanged
    for lang in ("id", "en"):
        for key in IVR_PROMPTS:
            assert result.files[(lang, key)] == sounds / lang / f"siaga-{key}.wav"
            assert result.files[(lang, key)].exists()
    for key in IVR_PROMPTS:
        neutral = sounds / f"siaga-{key}.wav"
        assert neutral.read_bytes() == (sounds / "id" / f"siaga-{key}.wav").read_bytes()
    # The config's own texts were spoken (whitespace folded), through stdin, never argv.
    assert "Layanan darurat Kota Bitung." in tools.spoken
    assert all("Layanan" not in " ".join(argv) for argv, _ in tools.calls)
    voices = {argv[argv.index("-v") + 1] for argv, stdin in tools.calls if stdin}
    assert voices == {"id", "en"}


def test_given_built_prompts_when_built_again_then_nothing_is_rebuilt(tmp_path: Path) -> None:
    """Unchanged texts: no tool runs at all the second time."""
    center = center_at(tmp_path)
    sounds = tmp_path / "sounds"
    build_prompts(center, sounds, espeak=EXISTING, sox=EXISTING, run=FakeTools())
    again = FakeTools()
    result = build_prompts(center, sounds, espeak=EXISTING, sox=EXISTING, run=again)
    assert again.calls == [] and result.built == []
    assert len(result.unchanged) == 2 * len(IVR_PROMPTS)


def test_given_one_text_changed_when_built_again_then_only_that_prompt_is_rebuilt(
        tmp_path: Path) -> None:
    """The hash covers the text: one changed welcome, one rebuilt file."""
    sounds = tmp_path / "sounds"
    build_prompts(center_at(tmp_path), sounds, espeak=EXISTING, sox=EXISTING, run=FakeTools())
    config = tmp_path / "changed.yaml"
    text = EXAMPLE_CONFIG.read_text()
    assert 'welcome: "Bitung City emergency service."' in text
    config.write_text(text.replace('welcome: "Bitung City emergency service."',
                                   'welcome: "Bitung emergency line."'))
    tools = FakeTools()
    result = build_prompts(center_at(tmp_path, config), sounds, espeak=EXISTING,
                           sox=EXISTING, run=tools)
    assert result.built == [sounds / "en" / "siaga-welcome.wav"]
    assert tools.spoken == ["Bitung emergency line."]


def test_given_a_deleted_prompt_when_built_again_then_it_is_made_again(tmp_path: Path) -> None:
    """A hash in the manifest is not enough: the file must be there too."""
    sounds = tmp_path / "sounds"
    center = center_at(tmp_path)
    build_prompts(center, sounds, espeak=EXISTING, sox=EXISTING, run=FakeTools())
    (sounds / "id" / "siaga-menu.wav").unlink()
    result = build_prompts(center, sounds, espeak=EXISTING, sox=EXISTING, run=FakeTools())
    assert result.built == [sounds / "id" / "siaga-menu.wav"]


def test_given_a_tool_that_fails_when_building_then_prompt_error_says_which(
        tmp_path: Path) -> None:
    """A failing espeak-ng is an error, not a silent empty prompt."""
    def failing(argv: Sequence[str], stdin: bytes | None) -> None:
        prompts._run(["sh", "-c", "echo no voice >&2; exit 3"], None)

    with pytest.raises(PromptError, match="no voice"):
        build_prompts(center_at(tmp_path), tmp_path / "sounds", espeak=EXISTING,
                      sox=EXISTING, run=failing, strict=True)


def _stock_dir(tmp_path: Path) -> Path:
    stock = tmp_path / "stock"
    (stock / "silence").mkdir(parents=True)
    for name in set(prompts.STOCK_SOUNDS.values()):
        (stock / f"{name}.gsm").write_bytes(f"gsm:{name}".encode())
    return stock


def test_given_no_espeak_when_building_then_stock_sounds_stand_in_and_it_says_so(
        tmp_path: Path) -> None:
    """Without espeak-ng: the same names with stock sounds, and a warning in the result."""
    sounds = tmp_path / "sounds"
    result = build_prompts(center_at(tmp_path), sounds, stock_dirs=[_stock_dir(tmp_path)],
                           espeak="/nonexistent/espeak-ng", sox=EXISTING, run=FakeTools())
    assert result.engine == ENGINE_STOCK and result.fallback
    assert result.warning and "espeak-ng" in result.warning
    assert (sounds / "id" / "siaga-wait.gsm").read_bytes() == b"gsm:queue-periodic-announce"
    assert (sounds / "siaga-wait.gsm").exists()
    # When espeak-ng comes back, the spoken prompts replace the stock ones (no .gsm left).
    build_prompts(center_at(tmp_path), sounds, espeak=EXISTING, sox=EXISTING, run=FakeTools())
    assert not (sounds / "id" / "siaga-wait.gsm").exists()
    assert not (sounds / "siaga-wait.gsm").exists()
    assert (sounds / "id" / "siaga-wait.wav").exists()


def test_given_no_espeak_and_no_stock_sounds_when_building_then_error(tmp_path: Path) -> None:
    """Nothing to play at all is an error that names where it looked (strict)."""
    with pytest.raises(PromptError, match="stock sound"):
        build_prompts(center_at(tmp_path), tmp_path / "sounds", stock_dirs=[],
                      espeak="/nonexistent/espeak-ng", sox=EXISTING, strict=True)


def test_given_prompts_that_cannot_be_made_when_not_strict_then_listed_and_center_starts(
        tmp_path: Path) -> None:
    """The center must start without its prompts: they are listed as missing, the others
    are made, and the next build tries the missing ones again."""
    calls = FakeTools()

    def menu_fails(argv: Sequence[str], stdin: bytes | None) -> None:
        if stdin is not None and b"Tekan 1" in stdin:
            raise PromptError("espeak-ng crashed")
        calls(argv, stdin)

    sounds = tmp_path / "sounds"
    center = center_at(tmp_path)
    result = build_prompts(center, sounds, espeak=EXISTING, sox=EXISTING, run=menu_fails)
    assert result.missing == [("id", "menu")]
    assert len(result.built) == 2 * len(IVR_PROMPTS) - 1
    again = build_prompts(center, sounds, espeak=EXISTING, sox=EXISTING, run=FakeTools())
    assert again.built == [sounds / "id" / "siaga-menu.wav"] and again.missing == []


def test_given_a_corrupt_manifest_when_building_then_every_prompt_is_rebuilt(
        tmp_path: Path) -> None:
    """An unreadable manifest is not trusted (and is rewritten)."""
    sounds = tmp_path / "sounds"
    center = center_at(tmp_path)
    build_prompts(center, sounds, espeak=EXISTING, sox=EXISTING, run=FakeTools())
    (sounds / MANIFEST).write_text("{not json")
    result = build_prompts(center, sounds, espeak=EXISTING, sox=EXISTING, run=FakeTools())
    assert len(result.built) == 2 * len(IVR_PROMPTS)


def test_given_config_without_texts_when_specs_made_then_defaults_name_the_language_keys(
        tmp_path: Path) -> None:
    """Built-in texts fill in; the language prompt names the real key."""
    config = tmp_path / "c.yaml"
    text = EXAMPLE_CONFIG.read_text()
    start, end = text.index("  texts:\n"), text.index("# Operator desks")
    config.write_text(text[:start] + "\n" + text[end:])
    specs = {(s.language, s.key): s.text for s in prompt_specs(load_center(config))}
    assert specs[("id", "language")] == "For English, press 9."
    assert specs[("en", "language")] == "Untuk Bahasa Indonesia, tekan 8."


def test_given_a_rootfs_with_alternatives_links_when_locating_stock_sounds_then_resolved(
        tmp_path: Path) -> None:
    """Absolute symlinks inside a root filesystem are followed from its root."""
    root = tmp_path / "rootfs"
    real = root / "usr/share/asterisk/sounds/en_US_f_Allison"
    real.mkdir(parents=True)
    (root / "etc/alternatives").mkdir(parents=True)
    os.symlink("/usr/share/asterisk/sounds/en_US_f_Allison",
               root / "etc/alternatives/asterisk-prompt-en")
    os.symlink("/etc/alternatives/asterisk-prompt-en", root / "usr/share/asterisk/sounds/en")
    assert stock_sound_dirs("/usr/share/asterisk", root) == [real]


@pytest.mark.skipif(not (shutil.which("espeak-ng") and shutil.which("sox")),
                    reason="espeak-ng and sox are not installed")
def test_given_espeak_installed_when_building_then_prompts_are_8khz_mono_speech(
        tmp_path: Path) -> None:
    """The real tools: 8 kHz, 16-bit, mono WAV files that are not silence."""
    result = build_prompts(center_at(tmp_path), tmp_path / "sounds")
    for path in (result.files[("id", "welcome")], result.files[("en", "agency_failed")]):
        with wave.open(str(path)) as w:
            assert (w.getframerate(), w.getsampwidth(), w.getnchannels()) == (8000, 2, 1)
            assert w.getnframes() > 8000 * 0.5
        assert not tones.is_silence(path)
