"""The phone directory of tests/phones.py: role lookups and their errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.phones import Credentials, Directory, PhoneFactory


def directory() -> Directory:
    """Two operators, police with two phones, fire with one."""
    return Directory(
        server="127.0.0.1:5999",
        operators=[Credentials("201", "a"), Credentials("202", "b")],
        agencies={"police": [Credentials("301", "c"), Credentials("302", "d")],
                  "fire": [Credentials("311", "e")]},
    )


def test_given_roles_when_looked_up_then_the_right_extension_is_returned() -> None:
    """Operator n and agency phone n are 1-based."""
    d = directory()
    assert d.operator(2) == Credentials("202", "b")
    assert d.agency("police") == Credentials("301", "c")
    assert d.agency("police", 2).user == "302"


@pytest.mark.parametrize(
    ("lookup", "message"),
    [
        (lambda d: d.operator(0), "no operator 0"),
        (lambda d: d.operator(3), "has 2"),
        (lambda d: d.agency("health"), "known: \\['fire', 'police'\\]"),
        (lambda d: d.agency("fire", 2), "has 1 phones"),
    ],
)
def test_given_a_role_the_config_lacks_when_looked_up_then_the_error_says_what_exists(
    lookup, message: str
) -> None:
    """A wrong role number or agency names what the config has."""
    with pytest.raises(LookupError, match=message):
        lookup(directory())


def test_given_no_directory_when_a_role_phone_is_asked_then_it_says_the_harness_is_needed(
    tmp_path: Path,
) -> None:
    """Without the Asterisk harness only direct phones exist; role phones say why not."""
    factory = PhoneFactory(stack=None, workdir=tmp_path)  # type: ignore[arg-type]
    with pytest.raises(LookupError, match="need the Asterisk harness"):
        factory.operator(1)


def test_given_a_lazy_directory_when_first_used_then_it_is_fetched_once(tmp_path: Path) -> None:
    """The directory provider (the harness fixture) runs on first use only, then is kept."""
    calls = []

    def provide() -> Directory:
        calls.append(1)
        return directory()

    factory = PhoneFactory(stack=None, workdir=tmp_path, directory=provide)  # type: ignore[arg-type]
    assert calls == []
    assert factory.directory.server == "127.0.0.1:5999"
    assert factory.directory.hotline == "112"
    assert calls == [1]
