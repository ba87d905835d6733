"""The ``http.limits`` section: defaults, values, and errors that name file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from dispatcher.config.loader import load_center
from dispatcher.config.model import HttpLimits
from dispatcher.yamlnodes import ConfigError
from tests.unit.app.test_config import example_with, line_of

PORT = "  port: 8080\n"


def test_given_no_limits_when_loaded_then_the_defaults(tmp_path: Path) -> None:
    """The example leaves the limits commented out: the defaults apply."""
    cfg = example_with(tmp_path, PORT, PORT)
    assert load_center(cfg).http_limits == HttpLimits()


def test_given_limits_when_loaded_then_used(tmp_path: Path) -> None:
    """Each key is read."""
    cfg = example_with(tmp_path, PORT, PORT + "  limits: {connections: 100, "
                       "connections_per_source: 4, request_seconds: 5, idle_seconds: 20}\n")
    assert load_center(cfg).http_limits == HttpLimits(100, 4, 5.0, 20.0)


@pytest.mark.parametrize(("limits", "path", "reason"), [
    ("{connections: 0}", "http.limits.connections", "between 1"),
    ("{request_seconds: yes}", "http.limits.request_seconds", "must be a number"),
    ("{per_source: 3}", "http.limits", "per_source"),
    ("64", "http.limits", ""),
])
def test_given_a_bad_limit_when_loaded_then_the_error_names_line_and_key(
        tmp_path: Path, limits: str, path: str, reason: str) -> None:
    """A wrong limit is refused with the file, the line and the key's path."""
    cfg = example_with(tmp_path, PORT, PORT + f"  limits: {limits}\n")
    with pytest.raises(ConfigError) as err:
        load_center(cfg)
    assert err.value.path.startswith(path) and reason in str(err.value)
    assert err.value.line == line_of(cfg, "  limits:")


def test_given_no_intake_processes_when_loaded_then_the_server_takes_alerts_alone(
        tmp_path: Path) -> None:
    """``http.intake_processes`` is commented out in the example: 0, one process (a small
    center); a value given is read."""
    assert load_center(example_with(tmp_path, PORT, PORT)).http_intake_processes == 0
    cfg = example_with(tmp_path, PORT, PORT + "  intake_processes: 3\n")
    assert load_center(cfg).http_intake_processes == 3


@pytest.mark.parametrize(("value", "reason"), [
    ("-1", "between 0"), ("33", "32"), ("two", "whole number"), ("1.5", "whole number"),
])
def test_given_a_bad_intake_processes_when_loaded_then_the_error_names_line_and_key(
        tmp_path: Path, value: str, reason: str) -> None:
    """A wrong number of intake processes is refused with the file, the line and the key."""
    cfg = example_with(tmp_path, PORT, PORT + f"  intake_processes: {value}\n")
    with pytest.raises(ConfigError) as err:
        load_center(cfg)
    assert err.value.path == "http.intake_processes", err.value.path
    assert reason in str(err.value), str(err.value)
    assert err.value.line == line_of(cfg, "  intake_processes:")
