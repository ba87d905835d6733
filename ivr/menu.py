"""The hotline's voice menu as data: what each key does, in which language, for how long.

The dialplan template renders this model (``extensions.conf``); the prompt builder
(:mod:`ivr.prompts`) makes the audio files it names. Nothing here touches Asterisk or the disk.

Queue priorities: the config gives each agency a ``priority`` from 1 (life-threatening) to 10
(least urgent); app_queue serves the highest ``QUEUE_PRIO`` first, so the menu turns one into
the other with ``QUEUE_PRIO = 11 - priority``. A caller who chose nothing gets the configured
``queue.default_priority``; a panic button beats everything.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dispatcher.config.model import Center, language_keys

PANIC_QUEUE_PRIO = 20  # above every category: a panic button is always first in line
REQUEUE_QUEUE_PRIO = 15  # a citizen whose agency and its fallback did not answer
OPERATOR_KEY = 0

# Categories the menu can set besides the agencies' keys.
CATEGORY_OPERATOR = "operator"  # pressed 0
CATEGORY_UNKNOWN = "unknown"  # no key or a key that means nothing
CATEGORY_PANIC = "panic"
CATEGORY_CALLBACK = "callback"

PROMPT_PREFIX = "siaga-"


def queue_prio(priority: int) -> int:
    """app_queue's QUEUE_PRIO (higher first) for a config priority (1 most urgent .. 10)."""
    if not 1 <= priority <= 10:
        raise ValueError(f"priority must be 1..10, got {priority}")
    return 11 - priority


@dataclass(frozen=True)
class Option:
    """One key of the category menu: the category it sets and its queue priority."""

    digit: int
    category: str
    queue_prio: int


@dataclass(frozen=True)
class Language:
    """One language of the menu and the key that switches to it."""

    code: str
    key: int


@dataclass(frozen=True)
class Menu:
    """The whole menu. ``sounds`` is the directory the prompts are built into."""

    languages: tuple[Language, ...]
    default_language: str
    options: tuple[Option, ...]
    default_queue_prio: int
    digit_timeout: int
    max_seconds: int
    sounds: Path

    @property
    def panic_queue_prio(self) -> int:
        """QUEUE_PRIO of a panic button's call."""
        return PANIC_QUEUE_PRIO

    @property
    def requeue_queue_prio(self) -> int:
        """QUEUE_PRIO of a citizen sent back to the operators after an agency failed."""
        return REQUEUE_QUEUE_PRIO

    def prompt(self, key: str, language: str | None = None) -> str:
        """A prompt as Asterisk names it: an absolute path without extension.

        Without ``language`` the name is language-neutral: Asterisk looks for it in the
        channel language's subdirectory first (``<sounds>/<lang>/siaga-<key>``) and falls
        back to the default language's copy (``<sounds>/siaga-<key>``).
        """
        if language is None:
            return str(self.sounds / f"{PROMPT_PREFIX}{key}")
        return str(self.sounds / language / f"{PROMPT_PREFIX}{key}")

    def option(self, digit: int) -> Option | None:
        """The option on ``digit``, if any."""
        return next((o for o in self.options if o.digit == digit), None)

    def switch_keys(self, current: str) -> tuple[Language, ...]:
        """Languages a caller listening in ``current`` can switch to."""
        return tuple(lang for lang in self.languages if lang.code != current)

    def resolve(self, keys: str) -> tuple[str, int]:
        """What the menu does with what a caller pressed (tests and the call log use it).

        Returns ``(category, queue_prio)``. Only the first key counts; language keys do
        not choose a category, so they are skipped.
        """
        lang_keys = {lang.key for lang in self.languages}
        for ch in keys:
            if not ch.isdigit():
                return CATEGORY_UNKNOWN, self.default_queue_prio
            digit = int(ch)
            if digit in lang_keys:
                continue
            if digit == OPERATOR_KEY:
                return CATEGORY_OPERATOR, self.default_queue_prio
            option = self.option(digit)
            if option is None:
                return CATEGORY_UNKNOWN, self.default_queue_prio
            return option.category, option.queue_prio
        return CATEGORY_UNKNOWN, self.default_queue_prio


def build_menu(center: Center, sounds: Path) -> Menu:
    """The menu of ``center`` with prompts in ``sounds``."""
    keys = language_keys(center.ivr.languages)
    options = tuple(sorted(
        (Option(a.digit, a.key, queue_prio(a.priority)) for a in center.agencies),
        key=lambda o: o.digit,
    ))
    return Menu(
        languages=tuple(Language(code, keys[code]) for code in center.ivr.languages),
        default_language=center.ivr.default_language,
        options=options,
        default_queue_prio=queue_prio(center.queue.default_priority),
        digit_timeout=center.ivr.digit_timeout,
        max_seconds=center.ivr.max_seconds,
        sounds=sounds,
    )
