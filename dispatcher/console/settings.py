"""The ``console`` section of the center's config: when the call card flags a repeat caller.

A bad value raises :class:`~dispatcher.yamlnodes.ConfigError` naming the file, the line and
the key, like every other section. The flag only informs the operator: nothing here blocks
or deprioritises a caller (an emergency line answers everyone).
"""

from __future__ import annotations

from dataclasses import dataclass

from dispatcher.yamlnodes import Section

__all__ = ["CONSOLE_KEYS", "ConsoleSettings", "parse_console"]

CONSOLE_KEYS = {"repeat_calls", "repeat_hours", "history_days"}


@dataclass(frozen=True)
class ConsoleSettings:
    """A number is a repeat caller when it called more than ``repeat_calls`` times within
    ``repeat_hours`` (the current call included); the card's history reaches back
    ``history_days``."""

    repeat_calls: int = 3
    repeat_hours: float = 1.0
    history_days: int = 30

    @property
    def repeat_seconds(self) -> float:
        """The repeat window in seconds."""
        return self.repeat_hours * 3600.0


def parse_console(sec: Section) -> ConsoleSettings:
    """The ``console`` section (absent: the defaults)."""
    d = ConsoleSettings()
    return ConsoleSettings(
        repeat_calls=sec.integer("repeat_calls", d.repeat_calls, lo=1, hi=1000),
        repeat_hours=sec.number("repeat_hours", d.repeat_hours, lo=0.05, hi=24 * 30),
        history_days=sec.integer("history_days", d.history_days, lo=1, hi=366),
    )
