"""The center's config: the example loads, and every kind of mistake names file, line and key."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from dispatcher.config.loader import load_center
from dispatcher.config.model import AGENCY_KINDS
from dispatcher.yamlnodes import ConfigError
from tests.harness import EXAMPLE_CONFIG


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "center.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def example_with(tmp_path: Path, old: str, new: str) -> Path:
    """The example config with one piece of text replaced (it must be there)."""
    text = EXAMPLE_CONFIG.read_text()
    assert old in text, old
    path = tmp_path / "siaga.example.yaml"
    path.write_text(text.replace(old, new, 1))
    return path


def replaced_line(old: str, new: str) -> int:
    """The line number of the last line of ``new`` once it replaced ``old`` in the example."""
    text = EXAMPLE_CONFIG.read_text()
    return text[: text.index(old)].count("\n") + 1 + new.rstrip("\n").count("\n")


def line_of(path: Path, needle: str) -> int:
    for i, line in enumerate(path.read_text().splitlines(), start=1):
        if needle in line:
            return i
    raise AssertionError(needle)


def test_given_the_example_when_loaded_then_it_describes_a_whole_city(tmp_path: Path) -> None:
    """The example has two hotline numbers, four operators and all six agencies."""
    center = load_center(EXAMPLE_CONFIG, state_dir=tmp_path)
    assert center.hotline == ("112", "11245")
    assert len(center.operators) == 4
    assert tuple(a.key for a in center.agencies) == AGENCY_KINDS
    assert all(1 <= len(a.extensions) <= 3 for a in center.agencies)
    assert center.ami.host == "127.0.0.1"
    assert center.database_url == f"sqlite:///{tmp_path / 'siaga.db'}"
    assert center.ivr.default_language == "id" and "en" in center.ivr.languages
    roles = {role for role, _ in center.extensions().values()}
    assert roles == {"operator", "supervisor", "agency", "button"}


def test_given_named_operators_when_loaded_then_the_center_keeps_its_own_name(
        tmp_path: Path) -> None:
    """The operators' names never replace the center's (the banner once said "Operator 4")."""
    center = load_center(EXAMPLE_CONFIG, state_dir=tmp_path)
    assert center.name == "Bitung Command Center"
    assert [op.name for op in center.operators][-1] == "Operator 4"


def test_given_an_agency_phone_that_is_an_operator_when_loaded_then_error_names_line_and_key(
        tmp_path: Path) -> None:
    """A clash is reported as file:line path: reason, pointing at the second owner."""
    path = example_with(tmp_path, 'extensions: ["321", "322"]', 'extensions: ["201", "322"]')
    with pytest.raises(ConfigError) as err:
        load_center(path)
    line = line_of(path, 'extensions: ["201", "322"]')
    assert str(err.value) == (
        f"siaga.example.yaml:{line} agencies[2].extensions[0]: 201 is already operator 201")


@pytest.mark.parametrize(
    ("old", "new", "path", "reason"),
    [
        ("  bind: 127.0.0.1\n  port: 5038", "  bind: 0.0.0.0", "ami.bind",
         "must be a loopback address"),
        ("    digit: 2\n", "    digit: 1\n", "agencies[1].digit", "1 is already agency police"),
        ("  ring_seconds: 15 ", "  ring_seconds: fifteen ", "queue.ring_seconds",
         "must be a whole number"),
        ("  - key: transport", "  - key: trains", "agencies[5].key", "must be one of"),
        ("    lat: 1.4756", "    lat: 91.5", "buttons[0].lat", "must be between -90 and 90"),
        ("recordings: true", "recordings: true\nrecordngs: false", "recordngs", "unknown key"),
        ("    name: Operator 2", "    name: Operator 2; desk B", "operators[1].name",
         "must not contain"),
        ('    fallback: "309"', '    fallback: "201"', "agencies[0].fallback",
         "201 is already operator 201"),
        ('    fallback: "309"', '    fallback: "+62438123"', "agencies[0].fallback",
         "needs a trunk"),
        ('numbers: ["112", "11245"]', 'numbers: ["112", "1a2"]', "hotline.numbers[1]",
         "must be an extension of 2 to 8 digits"),
    ],
)
def test_given_a_bad_value_when_loaded_then_the_error_names_it(
        tmp_path: Path, old: str, new: str, path: str, reason: str) -> None:
    """Each mistake is caught with the key's path and a reason a person understands."""
    cfg = example_with(tmp_path, old, new)
    with pytest.raises(ConfigError) as err:
        load_center(cfg)
    assert err.value.path == path
    assert reason in err.value.reason
    assert err.value.file == "siaga.example.yaml"
    assert err.value.line == replaced_line(old, new)


def test_given_a_missing_agency_when_loaded_then_it_is_named(tmp_path: Path) -> None:
    """All six agencies are required; the error lists the missing ones."""
    text = EXAMPLE_CONFIG.read_text()
    start = text.index("  - key: transport")
    end = text.index("# Physical panic buttons")
    path = tmp_path / "c.yaml"
    path.write_text(text[:start] + "\n" + text[end:])
    with pytest.raises(ConfigError, match="missing agencies: transport"):
        load_center(path)


def test_given_yaml_syntax_error_when_loaded_then_line_is_given(tmp_path: Path) -> None:
    """Broken YAML is reported with its line, not a traceback."""
    path = write(tmp_path, """\
        center:
          name: x
        hotline: [112
        sip: {}
        """)
    with pytest.raises(ConfigError) as err:
        load_center(path)
    assert err.value.line >= 3 and "YAML syntax" in err.value.reason


def test_given_control_characters_when_loaded_then_refused(tmp_path: Path) -> None:
    """CR/LF in a name could end up in an Asterisk config line: refused at load."""
    path = example_with(tmp_path, "name: Bitung Command Center",
                        'name: "Bitung\\r\\nCommand Center"')
    with pytest.raises(ConfigError, match="control characters"):
        load_center(path)


def test_given_the_example_when_loaded_then_its_security_section_is_read(
        tmp_path: Path) -> None:
    """The SIP guard's settings: the staff network, and N failures in T seconds block for B."""
    security = load_center(EXAMPLE_CONFIG, state_dir=tmp_path).security
    assert [str(n) for n in security.staff_networks] == ["127.0.0.1/32"]
    assert (security.block_after, security.window_seconds, security.block_seconds) == (
        10, 60, 600)


NETS = 'staff_networks: ["127.0.0.1/32"]'


@pytest.mark.parametrize(("old", "new", "key", "reason"), [
    (NETS, 'staff_networks: ["10.20.0.0/33"]', "security.staff_networks[0]",
     "address or network"),
    (NETS, 'staff_networks: ["desks"]', "security.staff_networks[0]", "address or network"),
    (NETS, "staff_networks: 10.20.0.0/24", "security.staff_networks", "must be a list"),
    ("block_after: 10", "block_after: 1", "security.block_after", "between 2 and 1000"),
    ("block_seconds: 600", "block_secs: 600", "security.block_secs", "unknown key"),
])
def test_given_a_bad_security_value_when_loaded_then_error_names_file_line_and_key(
        tmp_path: Path, old: str, new: str, key: str, reason: str) -> None:
    """A staff network that is no network, a limit that would block on one typo, a
    misspelt key: refused, naming the file, the line and the key."""
    path = example_with(tmp_path, old, new)
    with pytest.raises(ConfigError) as err:
        load_center(path, state_dir=tmp_path)
    assert err.value.path == key and reason in err.value.reason, str(err.value)
    assert err.value.line == line_of(path, new)
    assert str(err.value).startswith(f"siaga.example.yaml:{line_of(path, new)} {key}:")
