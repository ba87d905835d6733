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
