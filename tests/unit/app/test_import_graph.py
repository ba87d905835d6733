"""The import graph of ``pbx``: no cycle, and nothing of the dispatcher; no cycle elsewhere.

The graph is read from the source (every module ast-parsed, every ``import`` and ``from ...
import`` of a ``pbx`` module collected, in functions too), not from ``sys.modules``: a cycle is
a design fault even when import order happens to let it load. The dependency runs one way,
``pbx`` <- ``dispatcher``: the SIP and AMI layer knows nothing of the features built on it.

Imports under ``if TYPE_CHECKING:`` never run. They are allowed to close a cycle (that is what
they are for), but they are listed, and each must still name a module that exists: no test
ever executes them, so a module that moved would leave them dangling unseen.
"""

from __future__ import annotations

import ast
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class Import:
    """One import of ``target`` by ``source`` at ``line``; ``typing_only`` under TYPE_CHECKING."""

    source: str
    target: str
    line: int
    typing_only: bool


def module_names(root: Path, package: str) -> dict[str, Path]:
    """Every module of ``package`` under ``root``, by dotted name (a package by its own)."""
    names: dict[str, Path] = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST, typing_only: bool = False):  # noqa: ANN202 - a generator of pairs
    """Every import statement under ``node``, with whether it sits under TYPE_CHECKING."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child, typing_only
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for stmt in child.body:
                yield from _walk_stmt(stmt, True)
            for stmt in child.orelse:
                yield from _walk_stmt(stmt, typing_only)
        else:
            yield from _walk(child, typing_only)


def _walk_stmt(stmt: ast.stmt, typing_only: bool):  # noqa: ANN202
    if isinstance(stmt, ast.Import | ast.ImportFrom):
        yield stmt, typing_only
    else:
        yield from _walk(stmt, typing_only)


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> list[Import]:
    """The imports in module ``name`` (at ``path``), each resolved to a module name.

    ``from a import b`` is an import of ``a.b`` when that is a module, else of ``a``;
    relative imports are resolved against the module's package. Targets outside the scanned
    package are kept as written (that is how an import of ``dispatcher`` is seen).
    """
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found: list[Import] = []
    for node, typing_only in _walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            if node.level:
                base_parts = package.split(".")
                if node.level > 1:
                    base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                child = f"{base}.{alias.name}"
                targets.append(child if child in modules else base)
        found.extend(Import(name, target, node.lineno, typing_only) for target in targets)
    return found


def import_graph(root: Path, package: str) -> list[Import]:
    """Every import made by a module of ``package`` under ``root``."""
    modules = module_names(root, package)
    edges: list[Import] = []
    for name, path in modules.items():
        edges.extend(imports_of(name, path, modules))
    return edges


def find_cycles(edges: list[Import], package: str) -> list[list[str]]:
    """The import cycles among ``package``'s modules, each as ``[a, b, ..., a]``.

    A depth-first search: an edge back to a module still on the path closes a cycle. Every
    strongly connected tangle yields at least one cycle, so none passes unreported.
    """
    graph: dict[str, set[str]] = {}
    for edge in edges:
        if edge.target == package or edge.target.startswith(package + "."):
            if edge.target != edge.source:
                graph.setdefault(edge.source, set()).add(edge.target)
    cycles: list[list[str]] = []
    done: set[str] = set()
    path: list[str] = []
    on_path: set[str] = set()

    def visit(node: str) -> None:
        path.append(node)
        on_path.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt in on_path:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif nxt not in done:
                visit(nxt)
        on_path.discard(node)
        path.pop()
        done.add(node)

    for start in sorted(graph):
        if start not in done:
            visit(start)
    return cycles


def named(cycles: list[list[str]]) -> str:
    return "; ".join(" -> ".join(cycle) for cycle in cycles)


# -- the checker itself, on packages made for the purpose ---------------------------------------


def _package(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_given_two_modules_importing_each_other_when_searched_then_the_cycle_is_named(
    tmp_path: Path,
) -> None:
    """a -> b -> c -> a (one of them relative, one deferred into a function) is one cycle."""
    root = _package(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "from pkg import b\n",
        "pkg/b.py": "from .sub import c\n",
        "pkg/sub/__init__.py": "",
        "pkg/sub/c.py": "def f():\n    import pkg.a\n",
    })
    cycles = find_cycles(import_graph(root, "pkg"), "pkg")
    assert named(cycles) == "pkg.a -> pkg.b -> pkg.sub.c -> pkg.a"


def test_given_a_cycle_closed_only_under_type_checking_when_searched_then_runtime_has_none(
    tmp_path: Path,
) -> None:
    """A TYPE_CHECKING import is no runtime edge, but the full graph still shows the cycle."""
    root = _package(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "import pkg.b\n",
        "pkg/b.py": "import typing\nif typing.TYPE_CHECKING:\n    from pkg.a import A\n",
    })
    edges = import_graph(root, "pkg")
    assert find_cycles([e for e in edges if not e.typing_only], "pkg") == []
    assert named(find_cycles(edges, "pkg")) == "pkg.a -> pkg.b -> pkg.a"
    assert [(e.source, e.target) for e in edges if e.typing_only] == [("pkg.b", "pkg.a")]


def test_given_a_layer_importing_its_user_when_read_then_the_import_is_seen(
    tmp_path: Path,
) -> None:
    """An import of ``dispatcher`` from inside a function is still an import of it."""
    root = _package(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "def f():\n    from dispatcher.hotline import service\n",
    })
    edges = import_graph(root, "pkg")
    assert [(e.source, e.target, e.line) for e in edges] == [
        ("pkg.a", "dispatcher.hotline", 2)]


# -- the rules, on pbx --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pbx_imports() -> list[Import]:
    """The imports of every module in ``pbx``."""
    edges = import_graph(ROOT, "pbx")
    assert len(module_names(ROOT, "pbx")) > 10, "pbx was not found where the test looks"
    return edges


def test_given_pbx_when_its_imports_are_followed_then_no_module_comes_back_to_itself(
    pbx_imports: list[Import],
) -> None:
    """No import cycle in ``pbx`` among the imports that run (deferred ones included)."""
    runtime = [e for e in pbx_imports if not e.typing_only]
    cycles = find_cycles(runtime, "pbx")
    assert not cycles, f"import cycles in pbx: {named(cycles)}"


@pytest.mark.parametrize("package", ["dispatcher", "dialplans", "ivr"])
def test_given_the_rest_of_the_tree_when_its_imports_are_followed_then_no_cycle(
    package: str,
) -> None:
    """The features, the dialplan contract and the IVR have no import cycle either (the
    config and the scale-out topology once imported each other)."""
    assert len(module_names(ROOT, package)) > 1, f"{package} was not found where the test looks"
    runtime = [e for e in import_graph(ROOT, package) if not e.typing_only]
    cycles = find_cycles(runtime, package)
    assert not cycles, f"import cycles in {package}: {named(cycles)}"


def test_given_pbx_when_read_then_no_module_imports_the_dispatcher(
    pbx_imports: list[Import],
) -> None:
    """The dependency runs pbx <- dispatcher: not even a type hint of pbx names the features."""
    upward = [f"{e.source}:{e.line} imports {e.target}" for e in pbx_imports
              if e.target == "dispatcher" or e.target.startswith("dispatcher.")]
    assert not upward, "; ".join(upward)


def test_given_pbx_when_type_checking_imports_are_read_then_each_names_a_module_and_is_listed(
    pbx_imports: list[Import],
) -> None:
    """Type-only imports may close a cycle (reported as a warning, not a failure); each must
    still name a module of pbx that exists."""
    modules = module_names(ROOT, "pbx")
    typing_only = [e for e in pbx_imports if e.typing_only and e.target.startswith("pbx")]
    dangling = [f"{e.source}:{e.line} -> {e.target}" for e in typing_only
                if e.target not in modules]
    assert not dangling, f"TYPE_CHECKING imports of modules that do not exist: {dangling}"
    for edge in typing_only:
        warnings.warn(f"type-only import {edge.source}:{edge.line} -> {edge.target}",
                      stacklevel=1)
    type_cycles = find_cycles(pbx_imports, "pbx")
    if type_cycles:
        warnings.warn(f"cycles closed only by TYPE_CHECKING imports: {named(type_cycles)}",
                      stacklevel=1)
