"""The folder list is the architecture: these rules are read from the source, so a change that
breaks a layer boundary or adds an import cycle fails here."""

from __future__ import annotations

import ast
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "livecap"
CORE = ("pipeline", "asr", "sources", "output", "translators", "diarize")
UI_LIBRARIES = {"rich", "typer", "click", "fastapi", "starlette", "uvicorn"}


def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def imports(path: Path, *, top_level_only: bool = False) -> set[str]:
    """Modules a file imports (all of them, or only those run at import time)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.If) and top_level_only:
            # `if TYPE_CHECKING:` blocks import nothing at run time
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def test_core_layers_never_import_terminal_or_web_libraries() -> None:
    offenders = []
    for name, path in modules().items():
        if name.split(".")[1:2] and name.split(".")[1] in CORE:
            bad = {m for m in imports(path) if m.split(".")[0] in UI_LIBRARIES}
            offenders += [f"{name} imports {m}" for m in sorted(bad)]
    assert not offenders


def test_core_layers_never_import_the_cli_or_the_server() -> None:
    offenders = []
    for name, path in modules().items():
        if name.count(".") and name.split(".")[1] in (
            *CORE, "engine", "api", "messages", "config", "closecodes",
        ):
            bad = {m for m in imports(path) if m.startswith(("livecap.cli", "livecap.server"))}
            offenders += [f"{name} imports {m}" for m in sorted(bad)]
    assert not offenders


def test_cli_and_server_never_import_each_other() -> None:
    offenders = []
    for name, path in modules().items():
        for side, other in (("livecap.cli", "livecap.server"), ("livecap.server", "livecap.cli")):
            if name.startswith(side):
                offenders += [f"{name} imports {m}" for m in imports(path) if m.startswith(other)]
    assert not offenders


def test_no_import_cycles() -> None:
    """Import-time dependencies between livecap modules form no cycle."""
    known = modules()
    graph = {
        name: {m for m in imports(path, top_level_only=True) if m in known and m != name}
        for name, path in known.items()
    }
    # a package's __init__ importing its own submodules is the package's own business
    graph = {
        name: {m for m in deps if not m.startswith(name + ".")} for name, deps in graph.items()
    }
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(node: str, trail: list[str]) -> bool:
        state[node] = 1
        for dep in graph[node]:
            if state.get(dep) == 1:
                cycle.extend(
                    trail[trail.index(dep) :] + [node, dep] if dep in trail else [node, dep]
                )
                return True
            if dep not in state and visit(dep, trail + [node]):
                return True
        state[node] = 2
        return False

    for name in sorted(graph):
        if name not in state and visit(name, []):
            break
    assert not cycle, " -> ".join(cycle)


# about 80 is the aim; past this a function decides too many things: split it
MAX_FUNCTION_LINES = 90


def test_no_function_is_too_long() -> None:
    """Every function and method in livecap/, signature and docstring included, fits in
    MAX_FUNCTION_LINES lines."""
    long = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{name}.{node.name} ({path.name}:{node.lineno}): {lines} lines")
    assert not long, long


def test_slow_tests_are_marked_one_way() -> None:
    """A module of slow tests says `pytestmark = pytest.mark.slow`; a mixed one marks each slow test
    `@pytest.mark.slow`: no aliases of the mark, no test marked twice."""
    for path in sorted((PACKAGE.parent / "tests").glob("test_*.py")):
        text = path.read_text(encoding="utf-8")
        names = re.findall(r"^(\w+) = pytest\.mark\.slow\b", text, re.MULTILINE)
        assert names in ([], ["pytestmark"]), (path.name, names)
        assert not (names and "@pytest.mark.slow" in text), (
            f"{path.name}: marked by module and by test"
        )
        assert not re.search(r"^@(?!pytest\.mark\.slow\b)\w*slow\b", text, re.MULTILINE), path.name
