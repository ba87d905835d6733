"""Building the IVR's prompts: the config's texts spoken by espeak-ng, made 8 kHz by sox.

Each prompt is ``<sounds>/<lang>/siaga-<key>.wav`` (8 kHz, 16-bit, mono: what Asterisk
plays without transcoding), and the default language's copy is also written as
``<sounds>/siaga-<key>.wav`` for the places that play a prompt in the channel's language.
File names depend only on the language and the prompt key, so the dialplan can name them.

A manifest (``siaga-prompts.json``) keeps a hash of what each file was made from (builder
version, voice, text); a file whose hash is unchanged is not rebuilt, so preparing a center
twice costs nothing. Without espeak-ng or sox, Asterisk's stock English sounds are copied
under the same names instead, and the result says so (and a warning is logged): the menu
keeps working, only the words are generic.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from twisted.logger import Logger

from dispatcher.config.model import IVR_PROMPTS, Center, language_keys
from ivr.menu import PROMPT_PREFIX

log = Logger(namespace="ivr.prompts")

BUILDER_VERSION = "1"
MANIFEST = "siaga-prompts.json"
ESPEAK_SPEED = 155  # words per minute: clear, not slow
ESPEAK_VOICES = {"id": "id", "en": "en"}

ENGINE_ESPEAK = "espeak-ng"
ENGINE_STOCK = "stock"

# Built-in texts, used where the config gives none. {en}/{id}: the key of that language.
DEFAULT_TEXTS: dict[str, dict[str, str]] = {
    "id": {
        "welcome": "Layanan darurat.",
        "language": "For English, press {en}.",
        "menu": ("Tekan 1 untuk polisi, 2 pemadam kebakaran, 3 ambulans, 4 bencana, "
                 "5 ketertiban umum, 6 perhubungan, atau 0 untuk operator."),
        "connecting": "Mohon tunggu, Anda sedang disambungkan ke operator.",
        "wait": "Semua operator sedang sibuk. Tetap di saluran.",
        "agency_failed": "Instansi tidak menjawab. Panggilan dialihkan.",
        "goodbye": "Terima kasih.",
    },
    "en": {
        "welcome": "Emergency service.",
        "language": "Untuk Bahasa Indonesia, tekan {id}.",
        "menu": ("Press 1 for police, 2 for fire, 3 for ambulance, 4 for disaster, "
                 "5 for public order, 6 for transport, or 0 for an operator."),
        "connecting": "Please hold, you are being connected to an operator.",
        "wait": "All operators are busy. Please stay on the line.",
        "agency_failed": "The agency did not answer. Your call is being redirected.",
        "goodbye": "Thank you.",
    },
}

# Stock sounds (asterisk-core-sounds-en) standing in for each prompt without espeak-ng.
STOCK_SOUNDS: dict[str, str] = {
    "welcome": "silence/1",
    "language": "silence/1",
    "menu": "silence/1",
    "connecting": "pls-hold-while-try",
    "wait": "queue-periodic-announce",
    "agency_failed": "sorry-youre-having-problems",
    "goodbye": "goodbye",
}
STOCK_EXTENSIONS = (".gsm", ".wav", ".sln", ".ulaw", ".alaw")


@dataclass(frozen=True)
class PromptSpec:
    """One prompt to make: where it goes and what it says."""

    language: str
    key: str
    text: str
    voice: str

    @property
    def relative(self) -> str:
        """Its path under the sounds directory, without extension."""
        return f"{self.language}/{PROMPT_PREFIX}{self.key}"

    def digest(self, engine: str) -> str:
        """What the file is made from, hashed: a change of any part rebuilds it."""
        raw = "\0".join((BUILDER_VERSION, engine, self.voice, str(ESPEAK_SPEED), self.text))
        return hashlib.sha256(raw.encode()).hexdigest()


@dataclass
class PromptBuild:
    """What :func:`build_prompts` did. ``engine`` is ``espeak-ng`` or ``stock``."""

    engine: str
    sounds: Path
    built: list[Path] = field(default_factory=list)
    unchanged: list[Path] = field(default_factory=list)
    files: dict[tuple[str, str], Path] = field(default_factory=dict)
    missing: list[tuple[str, str]] = field(default_factory=list)  # (language, key) not made
    warning: str | None = None

    @property
    def fallback(self) -> bool:
        """True when stock sounds stand in for the config's texts."""
        return self.engine == ENGINE_STOCK


def prompt_specs(center: Center) -> list[PromptSpec]:
    """Every prompt of every language, with the config's text or the built-in one."""
    keys = {lang: str(k) for lang, k in language_keys(center.ivr.languages).items()}
    specs = []
    for lang in center.ivr.languages:
        configured = center.ivr.texts.get(lang, {})
        defaults = DEFAULT_TEXTS.get(lang, DEFAULT_TEXTS["en"])
        for key in IVR_PROMPTS:
            text = configured.get(key) or defaults[key].format_map(_Keys(keys))
            specs.append(PromptSpec(lang, key, " ".join(text.split()),
                                    ESPEAK_VOICES.get(lang, lang)))
    return specs


class _Keys(dict):
    def __missing__(self, key: str) -> str:
        return "?"


Runner = Callable[[Sequence[str], bytes | None], None]


def _run(argv: Sequence[str], stdin: bytes | None) -> None:
    try:
        result = subprocess.run(list(argv), input=stdin, capture_output=True, timeout=60,
                                check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PromptError(f"{argv[0]} could not run: {exc}") from exc
    if result.returncode != 0:
        raise PromptError(f"{argv[0]} failed ({result.returncode}): "
                          f"{result.stderr.decode(errors='replace').strip()[:300]}")


class PromptError(Exception):
    """A prompt could not be made."""


def build_prompts(
    center: Center,
    sounds: Path,
    *,
    stock_dirs: Sequence[Path] = (),
    espeak: str = "espeak-ng",
    sox: str = "sox",
    run: Runner = _run,
    strict: bool = False,
) -> PromptBuild:
    """Make every prompt of ``center`` in ``sounds``; skip those whose text is unchanged.

    ``stock_dirs`` are where Asterisk's stock English sounds are on this host (used when
    espeak-ng or sox is missing). A prompt that cannot be made (a tool fails; neither the
    tools nor the stock sounds are there) is logged and listed in ``missing``: the hotline
    must start anyway (the menu still routes every key; Asterisk skips a missing file).
    With ``strict`` it raises :class:`PromptError` instead.
    """
    sounds.mkdir(parents=True, exist_ok=True)
    espeak_path, sox_path = shutil.which(espeak), shutil.which(sox)
    specs = prompt_specs(center)
    manifest = _read_manifest(sounds / MANIFEST)
    if espeak_path and sox_path:
        result = PromptBuild(ENGINE_ESPEAK, sounds)

        def make(spec: PromptSpec, out: Path) -> None:
            _speak(spec, out, espeak_path, sox_path, run)

        ext = ".wav"
    else:
        missing = " and ".join(t for t, p in ((espeak, espeak_path), (sox, sox_path)) if not p)
        result = PromptBuild(ENGINE_STOCK, sounds)
        result.warning = (f"{missing} not found: the IVR plays Asterisk's stock sounds "
                          "instead of the config's texts (install espeak-ng and sox)")
        log.warn("{warning}", warning=result.warning)

        def make(spec: PromptSpec, out: Path) -> None:
            _copy_stock(spec, out, stock_dirs)

        ext = ".gsm"
    for spec in specs:
        out = sounds / (spec.relative + ext)
        digest = spec.digest(result.engine)
        if manifest.get(spec.relative + ext) == digest and out.exists():
            result.unchanged.append(out)
        else:
            out.parent.mkdir(parents=True, exist_ok=True)
            _remove_other_formats(sounds / spec.relative, keep=ext)
            try:
                make(spec, out)
            except PromptError as exc:
                if strict:
                    raise
                log.error("IVR prompt {lang}/{key} not made: {error}", lang=spec.language,
                          key=spec.key, error=str(exc))
                result.missing.append((spec.language, spec.key))
                manifest.pop(spec.relative + ext, None)
                continue
            manifest[spec.relative + ext] = digest
            result.built.append(out)
        result.files[(spec.language, spec.key)] = out
        if spec.language == center.ivr.default_language:
            # The language-neutral copy, for prompts played in the channel's language.
            neutral = sounds / f"{PROMPT_PREFIX}{spec.key}{ext}"
            _remove_other_formats(sounds / f"{PROMPT_PREFIX}{spec.key}", keep=ext)
            if not neutral.exists() or neutral.read_bytes() != out.read_bytes():
                _atomic_copy(out, neutral)
    _write_manifest(sounds / MANIFEST, manifest)
    log.info("IVR prompts in {sounds}: {built} built, {unchanged} unchanged ({engine})",
             sounds=sounds, built=len(result.built), unchanged=len(result.unchanged),
             engine=result.engine)
    return result


def _speak(spec: PromptSpec, out: Path, espeak: str, sox: str, run: Runner) -> None:
    # espeak-ng writes 22.05 kHz; sox resamples to what Asterisk mixes natively and
    # normalises so every prompt plays at the same loudness.
    with tempfile.TemporaryDirectory(prefix="siaga-prompt-") as tmp:
        raw = Path(tmp) / "raw.wav"
        tmp_out = Path(tmp) / "out.wav"
        # The text goes on stdin: a text starting with '-' is never taken for an option.
        run([espeak, "-v", spec.voice, "-s", str(ESPEAK_SPEED), "--stdin", "-w", str(raw)],
            spec.text.encode())
        run([sox, str(raw), "-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer",
             str(tmp_out), "gain", "-n", "-3"], None)
        _atomic_copy(tmp_out, out)


def _copy_stock(spec: PromptSpec, out: Path, stock_dirs: Sequence[Path]) -> None:
    name = STOCK_SOUNDS[spec.key]
    for d in stock_dirs:
        source = d / (name + ".gsm")
        if source.exists():
            _atomic_copy(source, out)
            return
    raise PromptError(f"neither espeak-ng nor the stock sound {name}.gsm "
                      f"(looked in {', '.join(map(str, stock_dirs)) or 'nowhere'})")


def _remove_other_formats(base: Path, keep: str) -> None:
    # Asterisk picks any format it finds: a stale .gsm beside a new .wav would be ambiguous.
    for ext in STOCK_EXTENSIONS:
        if ext != keep:
            other = base.with_name(base.name + ext)
            if other.exists():
                other.unlink()


def _atomic_copy(source: Path, target: Path) -> None:
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)


def _read_manifest(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warn("IVR prompt manifest {path} unreadable ({error}): rebuilding every prompt",
                 path=path, error=str(exc))
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _write_manifest(path: Path, manifest: Mapping[str, str]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(dict(sorted(manifest.items())), indent=1) + "\n")
    os.replace(tmp, path)


def stock_sound_dirs(datadir: str, rootfs: Path | None) -> list[Path]:
    """Where Asterisk's stock English sounds are on this host (inside ``rootfs`` if any).

    Symlinks inside a root filesystem are absolute from its root (Debian's ``sounds/en`` is
    an alternatives link), so they are followed by hand, re-rooted at each step.
    """
    candidates = [f"{datadir}/sounds/en", f"{datadir}/sounds/en_US_f_Allison"]
    found = []
    for c in candidates:
        path = _resolve_in_root(rootfs, c) if rootfs is not None else Path(c)
        if path is not None and path.is_dir() and path not in found:
            found.append(path)
    return found


def _resolve_in_root(root: Path, path: str, depth: int = 0) -> Path | None:
    if depth > 10:
        return None
    current = root
    parts = [p for p in path.split("/") if p]
    for i, part in enumerate(parts):
        current = current / part
        if current.is_symlink():
            target = os.readlink(current)
            rest = "/".join(parts[i + 1:])
            if target.startswith("/"):
                return _resolve_in_root(root, target + ("/" + rest if rest else ""), depth + 1)
            inner = str(current.parent.relative_to(root)) + "/" + target
            return _resolve_in_root(root, "/" + inner + ("/" + rest if rest else ""), depth + 1)
    return current
