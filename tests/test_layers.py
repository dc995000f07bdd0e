"""The package's structure: imports flow one way, and modules and functions stay small.

Sizes are counted in lines, blank lines, comments and docstrings included. A module may have
:data:`MAX_MODULE_LINES`. A function may have :data:`MAX_FUNCTION_LINES`, counted from its ``def``
line to its last line: its decorators are not counted, and neither are the lines of the
``click.option(...)`` and ``click.argument(...)`` calls inside it, so a click command, or a
decorator that declares shared options (``cli/app.py``'s ``matcher_options``), is measured by its
logic and not by its option declarations. A nested function counts in its parent and on its own.
"""

from __future__ import annotations

import ast
from pathlib import Path

import mlmatch

PACKAGE = Path(mlmatch.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _type_checking_only(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def _imports(path: Path) -> set[str]:
    """The mlmatch modules a module imports, at module level or inside functions.

    Imports under ``if TYPE_CHECKING:`` never run, so they are not edges.
    """
    tree = ast.parse(path.read_text())
    skipped = {
        id(child)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and _type_checking_only(node)
        for child in ast.walk(node)
    }
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("mlmatch")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if not node.module.startswith("mlmatch"):
                continue
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.add(child if child in MODULES else node.module)
    return found & MODULES.keys()


GRAPH = {name: _imports(path) - {name} for name, path in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles_inside_the_package():
    # A package's __init__ re-exporting its submodules is the one allowed way back up.
    graph = {
        name: {t for t in targets if not name.startswith(t + ".")}
        for name, targets in GRAPH.items()
    }
    assert _cycles(graph) == []


def test_the_encoder_base_depends_on_nothing_of_mlmatch():
    assert GRAPH["mlmatch.encoders.base"] == set()


MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 60


def _declaration_lines(function: ast.AST) -> set[int]:
    """The lines of the ``click.option(...)`` and ``click.argument(...)`` calls in ``function``."""
    lines: set[int] = set()
    for node in ast.walk(function):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "click"
            and node.func.attr in ("option", "argument")
        ):
            lines |= set(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    return lines


def _function_lengths(source: str) -> dict[str, int]:
    """``"name (line N)"`` to the length of every function in ``source``, counted as above."""
    lengths = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lines = set(range(node.lineno, (node.end_lineno or node.lineno) + 1))
            lengths[f"{node.name} (line {node.lineno})"] = len(lines - _declaration_lines(node))
    return lengths


def test_function_length_leaves_out_decorators_and_option_declarations():
    source = """
@main.command()
@click.option("--top", type=int, default=1)
def command(top):
    options = [
        click.option(
            "--json",
            is_flag=True,
        ),
        click.argument("path"),
    ]

    def inner():
        return 1

    return options
"""
    # command: lines 4-16, less the five of the option declarations; inner: lines 13-14.
    assert _function_lengths(source) == {"command (line 4)": 8, "inner (line 13)": 2}


def test_no_module_grows_past_the_size_a_reader_can_hold():
    sizes = {name: len(path.read_text().splitlines()) for name, path in MODULES.items()}
    assert {name: n for name, n in sizes.items() if n > MAX_MODULE_LINES} == {}


def test_no_function_grows_past_the_size_a_reader_can_hold():
    too_long = {
        f"{module}.{function}": n
        for module, path in MODULES.items()
        for function, n in _function_lengths(path.read_text()).items()
        if n > MAX_FUNCTION_LINES
    }
    assert too_long == {}
