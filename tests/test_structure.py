"""The package's shape: entry points are thin and nothing imports one.

An entry point is a module of ``pgrpo`` with a top-level ``main()`` (``python -m pgrpo.<step>``).
Its ``main()`` parses the arguments, loads the config and calls library functions, so it stays
short; the logic it calls lives in library modules, which any module may import. Importing an
entry point from another module would make a command-line module a library by accident (and
tie the two together), so no module does.
"""

from __future__ import annotations

import ast
import re
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


# ------------------------------------------------------------------ tasks are plugins
# A task is one module of pgrpo/tasks (its TaskSpec, pgrpo/tasks/registry.py) plus its config
# section: the rules and the entry points look it up by name and name none themselves (the
# config's defaults may: config.yaml and the schema are the tasks' sections).
TASK_NAME = re.compile(r"\b(movielens|personas|reviews)\b")


def docstring_nodes(tree: ast.Module) -> set[int]:
    kinds = (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, kinds) and node.body and isinstance(node.body[0], ast.Expr):
            out.add(id(node.body[0].value))
    return out


def names_a_task(path: Path) -> bool:
    """Whether the code of ``path`` (not its docstrings or comments) names a built-in task."""
    if path.suffix == ".py":
        tree = ast.parse(path.read_text())
        skip = docstring_nodes(tree)
        return any(
            isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in skip
            and TASK_NAME.search(n.value)
            for n in ast.walk(tree)
        )  # fmt: skip
    text = re.sub(r'"""(.|\n)*?"""', "", path.read_text())
    return any(TASK_NAME.search(line.split("#", 1)[0]) for line in text.splitlines())


def test_no_rule_or_entry_point_names_a_task_outside_the_tasks():
    files = [*PACKAGE.glob("*.py"), *sorted((ROOT / "workflow/rules").glob("*.smk"))]
    naming = {str(p.relative_to(ROOT)) for p in [*files, ROOT / "Snakefile"] if names_a_task(p)}
    assert not naming, f"code outside pgrpo/tasks and pgrpo/data naming a task: {naming}"


def test_the_task_name_check_sees_code_not_prose(tmp_path):
    code = tmp_path / "m.py"
    code.write_text('"""About movielens."""\n# personas\nx = 1\n')
    assert not names_a_task(code)
    code.write_text('"""About."""\nif task == "reviews":\n    pass\n')
    assert names_a_task(code)
    rules = tmp_path / "r.smk"
    rules.write_text('# movielens\ndef f():\n    """personas"""\n    return 1\n')
    assert not names_a_task(rules)
    rules.write_text('X = f"{RESOURCES}/movielens"\n')
    assert names_a_task(rules)
