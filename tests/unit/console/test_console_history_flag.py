"""The repeat-caller flag's rule and the ``console`` config section (no database)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from dispatcher.config.loader import load_center
from dispatcher.console.history import has_history, repeat_flag
from dispatcher.console.settings import ConsoleSettings
from dispatcher.yamlnodes import ConfigError
from tests.harness import EXAMPLE_CONFIG

NOW = dt.datetime(2026, 12, 7, 10, 0, tzinfo=dt.UTC)
HOUR = dt.timedelta(hours=1)


def ago(**kw: float) -> dt.datetime:
    return NOW - dt.timedelta(**kw)


@pytest.mark.parametrize(("earlier", "flagged"), [
    (2, False),  # three calls in all: not more than three
    (3, True),  # the fourth call
])
def test_given_n_earlier_calls_within_the_hour_when_one_more_then_flagged_past_threshold(
        earlier: int, flagged: bool) -> None:
    """More than repeat_calls calls (this one included) within repeat_hours flags."""
    flag = repeat_flag([ago(minutes=5 * (i + 1)) for i in range(earlier)], NOW, 0,
                       ConsoleSettings(repeat_calls=3, repeat_hours=1))
    assert flag.calls_in_window == earlier + 1
    assert flag.flagged is flagged
    assert flag.reasons == (["repeat"] if flagged else [])


def test_given_calls_on_the_window_edge_then_the_start_is_inside_and_before_it_outside() -> None:
    """A call exactly repeat_hours ago is in the window; a microsecond earlier is not, nor
    is one in the future (a clock skew must not inflate the count)."""
    settings = ConsoleSettings(repeat_calls=3, repeat_hours=1)
    inside = [ago(minutes=10), ago(minutes=20), NOW - HOUR]
    assert repeat_flag(inside, NOW, 0, settings).flagged
    outside = [ago(minutes=10), ago(minutes=20), NOW - HOUR - dt.timedelta(microseconds=1),
               NOW + dt.timedelta(seconds=5)]
    assert repeat_flag(outside, NOW, 0, settings).calls_in_window == 3
    assert not repeat_flag(outside, NOW, 0, settings).flagged


def test_given_a_prank_before_when_the_number_calls_once_then_flagged_for_prank() -> None:
    """One earlier prank is enough, whatever the count."""
    flag = repeat_flag([], NOW, 1, ConsoleSettings())
    assert flag.reasons == ["prank"]
    assert repeat_flag([], NOW, 0, ConsoleSettings()).reasons == []


def test_given_withheld_or_malformed_numbers_then_no_history() -> None:
    """Only real numbers have a history: withheld callers are not one person."""
    assert has_history("081234567890") and has_history("+6281234567")
    for number in ("", "anonymous", "12", "<script>", "0812 3456", "1" * 21):
        assert not has_history(number), number


def _example_with(tmp_path: Path, old: str, new: str) -> Path:
    text = EXAMPLE_CONFIG.read_text()
    assert old in text, old
    path = tmp_path / "siaga.example.yaml"
    path.write_text(text.replace(old, new, 1))
    return path


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def test_given_the_example_when_loaded_then_its_console_thresholds_are_read(
        tmp_path: Path) -> None:
    """The example's console section: the 4th call within one hour is flagged."""
    path = _example_with(tmp_path, "repeat_calls: 3", "repeat_calls: 5")
    assert load_center(path, state_dir=tmp_path).console == ConsoleSettings(5, 1.0, 30)


def test_given_no_console_section_then_the_defaults(tmp_path: Path) -> None:
    """The section is optional: without it, the 4th call within an hour is flagged and the
    history reaches back 30 days."""
    text = EXAMPLE_CONFIG.read_text()
    start = text.index("\nconsole:\n")
    end = text.index("history_days: 30\n", start) + len("history_days: 30\n")
    path = tmp_path / "siaga.yaml"
    path.write_text(text[:start] + "\n" + text[end:])
    assert "\nconsole:" not in path.read_text()
    assert load_center(path, state_dir=tmp_path).console == ConsoleSettings(3, 1.0, 30)


@pytest.mark.parametrize(("old", "new", "key", "reason"), [
    ("repeat_calls: 3", "repeat_calls: 0", "console.repeat_calls", "between"),
    ("repeat_calls: 3", "repeat_calls: many", "console.repeat_calls", "whole number"),
    ("repeat_hours: 1", "repeat_hours: -2", "console.repeat_hours", "between"),
    ("history_days: 30", "history_days: 3.5", "console.history_days", "whole number"),
    ("history_days: 30", "history_dayz: 30", "console.history_dayz", "unknown key"),
])
def test_given_a_bad_console_value_when_loaded_then_error_names_file_line_and_key(
        tmp_path: Path, old: str, new: str, key: str, reason: str) -> None:
    """A threshold that makes no sense or a misspelt key is refused at its line."""
    path = _example_with(tmp_path, old, new)
    with pytest.raises(ConfigError) as err:
        load_center(path, state_dir=tmp_path)
    assert err.value.path == key and reason in err.value.reason, str(err.value)
    assert str(err.value).startswith(f"siaga.example.yaml:{_line_of(path, new)} {key}:")
