"""The package's shape: entry points are thin and nothing imports one.

An entry point is a module of ``pgrpo`` with a top-level ``main()`` (``python -m pgrpo.<step>``).
Its ``main()`` parses the arguments, loads the config and calls library functions, so it stays
short; the logic it calls lives in library modules, which any module may import. Importing an
entry point from another module would make a command-line module a library by accident (and
tie the two together), so no module does.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "pgrpo"
MAX_MAIN_LINES = 40


def modules() -> dict[str, ast.Module]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = ast.parse(path.read_text(), str(path))
    return out


def main_of(tree: ast.Module) -> ast.FunctionDef | None:
    return next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main"), None)


def imported(tree: ast.Module, name: str) -> set[str]:
    """Modules ``tree`` imports anywhere (inside functions too), as absolute names."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the importing module's package
                parent = name.rsplit(".", node.level)[0]
                base = f"{parent}.{base}" if base else parent
            out.add(base)
            out.update(f"{base}.{alias.name}" for alias in node.names)
    return out


def test_there_are_entry_points_and_libraries():
    trees = modules()
    entry = {n for n, t in trees.items() if main_of(t)}
    assert {"pgrpo.train", "pgrpo.evaluate", "pgrpo.catalogue", "pgrpo.launch"} <= entry
    assert {
        "pgrpo.trainer",
        "pgrpo.tables",
        "pgrpo.distributed",
        "pgrpo.io",
    } <= trees.keys() - entry


def test_every_main_is_at_most_40_lines():
    long = {}
    for name, tree in modules().items():
        main = main_of(tree)
        if main and main.end_lineno - main.lineno + 1 > MAX_MAIN_LINES:
            long[name] = main.end_lineno - main.lineno + 1
    assert not long, f"main() longer than {MAX_MAIN_LINES} lines: {long}"


def test_no_module_imports_an_entry_point():
    trees = modules()
    entry = {n for n, t in trees.items() if main_of(t)}
    found = {name: sorted(imported(tree, name) & entry) for name, tree in trees.items()}
    violations = {name: entries for name, entries in found.items() if entries}
    assert not violations, f"modules importing an entry point: {violations}"


def test_the_import_check_sees_imports_inside_functions():
    tree = ast.parse("def f():\n    from pgrpo.train import x\n    from . import evaluate\n")
    assert {"pgrpo.train", "pgrpo.evaluate"} <= imported(tree, "pgrpo.figures")
