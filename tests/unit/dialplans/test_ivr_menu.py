"""The IVR menu model: keys, categories, priorities, languages, and the config checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from dispatcher.config.loader import load_center
from dispatcher.config.model import language_keys
from dispatcher.hotline import codes
from dispatcher.yamlnodes import ConfigError
from ivr.menu import CATEGORY_OPERATOR, CATEGORY_UNKNOWN, build_menu, queue_prio
from tests.harness import EXAMPLE_CONFIG


@pytest.fixture
def menu(tmp_path: Path):  # noqa: ANN201 (ivr.menu.Menu)
    """The example city's menu."""
    return build_menu(load_center(EXAMPLE_CONFIG, state_dir=tmp_path), tmp_path / "sounds")


def test_given_config_priorities_when_mapped_then_life_threatening_is_served_first() -> None:
    """Priority 1 (life-threatening) gets the highest QUEUE_PRIO, 10 the lowest."""
    assert [queue_prio(p) for p in (1, 2, 5, 10)] == [10, 9, 6, 1]
    for bad in (0, 11):
        with pytest.raises(ValueError):
            queue_prio(bad)


def test_given_the_example_when_built_then_each_agency_digit_is_its_category(menu) -> None:  # noqa: ANN001
    """1 police ... 6 transport, each with its agency's priority."""
    assert [(o.digit, o.category) for o in menu.options] == [
        (1, "police"), (2, "fire"), (3, "health"), (4, "disaster"), (5, "public_order"),
        (6, "transport")]
    assert menu.option(2).queue_prio == 10 and menu.option(6).queue_prio == 6
    assert menu.default_queue_prio == queue_prio(3)
    assert menu.max_seconds == 10


def test_given_two_languages_when_built_then_8_is_indonesian_and_9_english(menu) -> None:  # noqa: ANN001
    """The key that switches to a language; from each language only the others are offered."""
    assert [(lang.code, lang.key) for lang in menu.languages] == [("id", 8), ("en", 9)]
    assert [lang.code for lang in menu.switch_keys("id")] == ["en"]
    assert language_keys(("id", "en", "jv")) == {"id": 7, "en": 8, "jv": 9}


def test_given_keys_when_resolved_then_category_and_priority_follow_the_first_real_key(
        menu) -> None:  # noqa: ANN001
    """Language keys are skipped; 0 is an operator; nothing or nonsense is unknown."""
    assert menu.resolve("1") == ("police", 9)
    assert menu.resolve("92") == ("fire", 10)
    assert menu.resolve("0") == (CATEGORY_OPERATOR, menu.default_queue_prio)
    assert menu.resolve("") == (CATEGORY_UNKNOWN, menu.default_queue_prio)
    assert menu.resolve("7") == (CATEGORY_UNKNOWN, menu.default_queue_prio)
    assert menu.resolve("#") == (CATEGORY_UNKNOWN, menu.default_queue_prio)


def test_given_prompts_when_named_then_names_are_absolute_and_deterministic(
        menu, tmp_path: Path) -> None:  # noqa: ANN001
    """Per-language and language-neutral names, as the dialplan plays them."""
    assert menu.prompt("menu", "en") == str(tmp_path / "sounds" / "en" / "siaga-menu")
    assert menu.prompt("wait") == str(tmp_path / "sounds" / "siaga-wait")


def test_given_a_language_key_taken_by_an_agency_when_loaded_then_error_names_the_key(
        tmp_path: Path) -> None:
    """An agency on digit 8 would shadow the Indonesian key: refused at load, file:line."""
    text = EXAMPLE_CONFIG.read_text()
    old = "    digit: 6\n"
    assert old in text
    path = tmp_path / "siaga.example.yaml"
    path.write_text(text.replace(old, "    digit: 8\n", 1))
    with pytest.raises(ConfigError) as err:
        load_center(path)
    message = str(err.value)
    assert "siaga.example.yaml:" in message and "ivr.languages" in message
    assert "transport" in message


def test_given_a_default_priority_out_of_range_when_loaded_then_refused(tmp_path: Path) -> None:
    """queue.default_priority is 1..10 like the agencies' priorities."""
    text = EXAMPLE_CONFIG.read_text()
    old = "  default_priority: 3"
    assert old in text
    path = tmp_path / "siaga.example.yaml"
    path.write_text(text.replace(old, "  default_priority: 0", 1))
    with pytest.raises(ConfigError, match="queue.default_priority"):
        load_center(path)


def test_given_every_agency_when_codes_are_made_then_no_code_is_a_prefix_of_another(
        tmp_path: Path) -> None:
    """Asterisk acts on a code at its last key only if no longer code starts with it."""
    center = load_center(EXAMPLE_CONFIG, state_dir=tmp_path)
    in_call = [c for a in codes.agency_codes(center.agencies)
               for c in (a.blind, a.consult, a.conference)]
    in_call += [codes.BUILTIN_BLIND, codes.BUILTIN_ATTENDED]
    consult = [codes.CONSULT_COMPLETE, codes.CONSULT_CANCEL, codes.CONSULT_THREEWAY,
               codes.CONSULT_SWAP]
    for group in (in_call, consult):
        assert len(set(group)) == len(group)
        for a in group:
            assert not [b for b in group if b != a and b.startswith(a)], a
