"""Reading YAML with the position of every value, so errors can name file, line and key.

The center's config is read as a YAML node tree rather than plain data: each accessor knows
its path (``agencies[2].extensions[0]``) and its line, and every complaint is a
:class:`ConfigError` carrying both.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode


class ConfigError(ValueError):
    """A config value is wrong. ``str()`` reads ``file:line path: reason``."""

    def __init__(self, file: str, line: int, path: str, reason: str) -> None:
        self.file, self.line, self.path, self.reason = file, line, path, reason
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where} {path}: {reason}" if path else f"{where}: {reason}")


_constructor = SafeConstructor()


class Value:
    """One node of the document, with its path and file for error messages."""

    def __init__(self, node: Node | None, path: str, file: str, line: int = 0) -> None:
        self.node = node
        self.path = path
        self.file = file
        self.line = node.start_mark.line + 1 if node is not None else line

    # -- errors --------------------------------------------------------------------------
    def error(self, reason: str) -> ConfigError:
        """A ConfigError pointing at this value."""
        return ConfigError(Path(self.file).name, self.line, self.path, reason)

    # -- shape ---------------------------------------------------------------------------
    @property
    def missing(self) -> bool:
        """True when the key was absent (or explicitly null)."""
        return self.node is None or (
            isinstance(self.node, ScalarNode) and self.node.tag == "tag:yaml.org,2002:null"
        )

    def _child_path(self, key: str | int) -> str:
        if isinstance(key, int):
            return f"{self.path}[{key}]"
        return f"{self.path}.{key}" if self.path else key

    def mapping(self, allowed: set[str]) -> dict[str, Value]:
        """The children of a mapping; unknown keys are errors (they are usually typos)."""
        if not isinstance(self.node, MappingNode):
            raise self.error("must be a mapping of keys to values")
        out: dict[str, Value] = {}
        for key_node, value_node in self.node.value:
            key = str(_constructor.construct_object(key_node))
            child = Value(value_node, self._child_path(key), self.file)
            if key not in allowed:
                child.line = key_node.start_mark.line + 1
                known = ", ".join(sorted(allowed))
                raise child.error(f"unknown key (known keys here: {known})")
            if key in out:
                raise child.error("key given twice")
            out[key] = child
        return out

    def items(self) -> Iterator[Value]:
        """The elements of a sequence."""
        if not isinstance(self.node, SequenceNode):
            raise self.error("must be a list")
        for i, node in enumerate(self.node.value):
            yield Value(node, self._child_path(i), self.file)

    def scalar(self) -> Any:
        """The plain Python value of a scalar."""
        if not isinstance(self.node, ScalarNode):
            raise self.error("must be a single value, not a list or mapping")
        return _constructor.construct_object(self.node)


class Section:
    """A mapping node with typed getters; each getter validates and names the key on error."""

    def __init__(self, value: Value, allowed: set[str]) -> None:
        self.value = value
        self.children = {} if value.missing else value.mapping(allowed)

    def get(self, key: str) -> Value:
        """The child ``key``, or a missing Value positioned at this section."""
        if key in self.children:
            return self.children[key]
        return Value(None, self.value._child_path(key), self.value.file, self.value.line)

    def section(self, key: str, allowed: set[str]) -> Section:
        """A nested section (absent means empty)."""
        return Section(self.get(key), allowed)

    def text(self, key: str, default: str | None = None, *, max_len: int = 200) -> str:
        """A string; numbers are accepted and kept as written. Control characters refused."""
        v = self.get(key)
        if v.missing:
            if default is None:
                raise v.error("is required")
            return default
        raw = v.scalar()
        if isinstance(raw, bool) or not isinstance(raw, str | int | float):
            raise v.error("must be text")
        s = raw if isinstance(raw, str) else v.node.value  # type: ignore[union-attr]
        if any(ord(c) < 32 and c != "\t" for c in s) or "\x7f" in s:
            raise v.error("must not contain control characters (CR/LF, NUL...)")
        if len(s) > max_len:
            raise v.error(f"is longer than {max_len} characters")
        return s

    def integer(self, key: str, default: int | None = None, *, lo: int | None = None,
                hi: int | None = None) -> int:
        """An integer within [lo, hi]."""
        v = self.get(key)
        if v.missing:
            if default is None:
                raise v.error("is required")
            return default
        raw = v.scalar()
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise v.error(f"must be a whole number, got {raw!r}")
        if lo is not None and raw < lo or hi is not None and raw > hi:
            raise v.error(f"must be between {lo} and {hi}, got {raw}")
        return raw

    def number(self, key: str, default: float | None = None, *, lo: float | None = None,
               hi: float | None = None) -> float:
        """A real number within [lo, hi]."""
        v = self.get(key)
        if v.missing:
            if default is None:
                raise v.error("is required")
            return default
        raw = v.scalar()
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise v.error(f"must be a number, got {raw!r}")
        if lo is not None and raw < lo or hi is not None and raw > hi:
            raise v.error(f"must be between {lo} and {hi}, got {raw}")
        return float(raw)

    def boolean(self, key: str, default: bool) -> bool:
        """A yes/no value."""
        v = self.get(key)
        if v.missing:
            return default
        raw = v.scalar()
        if not isinstance(raw, bool):
            raise v.error(f"must be true or false, got {raw!r}")
        return raw


def load_document(path: Path) -> Value:
    """Parse a YAML file into its root Value; syntax errors become ConfigErrors with a line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), 0, "", f"cannot read: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(path.name, 0, "", "is not UTF-8 text") from exc
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else 0
        raise ConfigError(path.name, line, "", f"YAML syntax: {exc.problem}") from exc
    if node is None:
        raise ConfigError(path.name, 1, "", "the file is empty")
    return Value(node, "", str(path))
