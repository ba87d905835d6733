"""The dependency direction, checked on the source: pbx ← dispatcher's features ← api/web ←
app (the builder) ← the entry points. (``pbx`` ← dispatcher is test_import_graph's.)

A feature refuses in its own exceptions and knows no HTTP status; only ``dispatcher/api`` and
``dispatcher/web`` serve HTTP and map refusals to statuses. Read with ``ast`` (imports inside
functions count too), so nothing is imported to check it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
HTTP_LAYER = ("dispatcher/api/", "dispatcher/web/")
# The builder, ``siaga up``'s entry points (one node; several behind the SIP edge), and the
# command line that dispatches to them.
ENTRY_POINTS = ("dispatcher/serve.py", "dispatcher/topology_run.py")
# The builders: one center, and the brain over a topology's nodes.
TOP = ("dispatcher/app.py", "dispatcher/brain.py", "dispatcher/cli.py", *ENTRY_POINTS)
# Serving HTTP (resources, requests, status codes); a feature may be an HTTP *client*
# (the self-test's alarm webhook uses twisted.web.client).
HTTP_SERVING = ("twisted.web.resource", "twisted.web.server", "twisted.web.http")


def _modules(*tops: str) -> Iterator[tuple[str, ast.Module]]:
    for top in tops:
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if "/migrations/" in rel:
                continue
            yield rel, ast.parse(path.read_text("utf-8"), filename=rel)


def _imports(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """Every module an import names (``from a.b import c`` names ``a.b`` and ``a.b.c``)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module
            for alias in node.names:
                yield node.lineno, f"{node.module}.{alias.name}"


def _within(name: str, *packages: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def _features() -> Iterator[tuple[str, ast.Module]]:
    for rel, tree in _modules("dispatcher"):
        if not rel.startswith(HTTP_LAYER) and rel not in TOP:
            yield rel, tree


def test_given_the_features_when_their_imports_are_read_then_none_reaches_up() -> None:
    """No feature imports the API, the web pages, the builder or the entry point."""
    upward = [f"{rel}:{line} imports {name}" for rel, tree in _features()
              for line, name in _imports(tree)
              if _within(name, "dispatcher.api", "dispatcher.web", "dispatcher.app",
                         "dispatcher.serve")]
    assert upward == []


def test_given_the_features_when_read_then_none_knows_http_statuses() -> None:
    """No feature names ``ApiError`` (an HTTP status with a body) or serves HTTP itself:
    its refusals are its own exceptions, which ``dispatcher.api.errors`` maps."""
    found = []
    for rel, tree in _features():
        for node in ast.walk(tree):
            name = (node.id if isinstance(node, ast.Name)
                    else node.attr if isinstance(node, ast.Attribute) else None)
            if name == "ApiError":
                found.append(f"{rel}:{node.lineno} names ApiError")
        found += [f"{rel}:{line} imports {name}" for line, name in _imports(tree)
                  if _within(name, *HTTP_SERVING)]
    assert found == []


def test_given_the_http_layer_when_read_then_it_does_not_reach_the_builder() -> None:
    """The API and the pages are given their features; they never import the builder."""
    upward = [f"{rel}:{line} imports {name}" for rel, tree in _modules(*HTTP_LAYER)
              for line, name in _imports(tree)
              if _within(name, "dispatcher.app", "dispatcher.serve")]
    assert upward == []


def test_given_the_builder_when_read_then_only_the_entry_point_imports_it() -> None:
    """``dispatcher.app`` assembles everything, so nothing but ``siaga up``'s entry points,
    the brain's builder (which builds on it) and the test harness may import it."""
    importers = [f"{rel}:{line}" for rel, tree in _modules("dispatcher", "pbx", "ivr")
                 for line, name in _imports(tree)
                 if _within(name, "dispatcher.app")
                 and rel not in (*ENTRY_POINTS, "dispatcher/brain.py")]
    assert importers == []
