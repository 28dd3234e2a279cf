"""The manual cannot rot silently: every link, repository path, ``pgrpo`` function and config
key that README.md and docs/ mention exists, and every ``snakemake`` command in their fenced
blocks parses on the `.test` config."""

from __future__ import annotations

import csv
import importlib
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pipeline_run import REPO, TEST_CONFIG

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
# Repository paths in code spans: the folders that are the project's, not what a run writes.
PATH = re.compile(r"(?<![\w./-])((?:pgrpo|benchmarks|tests|workflow|docs|profiles|envs|\.ci|"
                  r"\.test)/[\w./-]*\w)")  # fmt: skip
RUN_OUTPUTS = (".test/results", ".test/outputs", ".test/resources", ".test/logs")
# Dotted names in code spans: pgrpo.module[.attribute].
DOTTED = re.compile(r"`(pgrpo(?:\.\w+)+)`")
# Config keys in code spans: section.key[.key] of a top-level section of the schema.
KEY = re.compile(r"`([a-z_]+(?:\.[a-z_0-9]+)+)(?::[^`]*)?`")
FILE_SUFFIXES = {"py", "md", "yaml", "json", "jsonl", "db", "csv", "tsv", "png", "svg", "tex"}


def _text(page: Path) -> str:
    return page.read_text()


def _schema() -> dict:
    return yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_links_and_repository_paths_exist(page):
    missing = []
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", _text(page)):
        if not target.startswith("http") and not (page.parent / target).exists():
            missing.append(target)
    text = _text(page)
    code = re.findall(r"`([^`\n]+)`", text) + re.findall(r"```.*?\n(.*?)```", text, re.S)
    code += re.findall(r"(?m)^ {4,}(\S.*)$", text)  # indented code blocks
    for span in code:
        for path in PATH.findall(span):
            written = path.startswith(RUN_OUTPUTS)  # what a .test run writes, not the repository
            exists = (REPO / path).exists() or any(
                (REPO / path).parent.glob(Path(path).name + ".*")
            )
            if not written and not exists and not any(c in span for c in "*{<"):
                missing.append(path)
    assert missing == []


def _resolves(name: str) -> bool:
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[cut:]:
            if not hasattr(obj, attribute):
                return False
            obj = getattr(obj, attribute)
        return True
    return False


def _defined_string(name: str) -> bool:
    """``name`` is a string the package defines (an MLflow tag such as ``pgrpo.run_dir``)."""
    return any(f'"{name}"' in f.read_text() for f in (REPO / "pgrpo").rglob("*.py"))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_named_pgrpo_modules_and_functions_exist(page):
    names = DOTTED.findall(_text(page))
    assert [n for n in names if not _resolves(n) and not _defined_string(n)] == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_named_config_keys_exist(page):
    schema = _schema()["properties"]
    unknown = []
    for key in KEY.findall(_text(page)):
        section, *rest = key.split(".")
        if section not in schema or rest[-1] in FILE_SUFFIXES:
            continue  # not a config key (a module, a file)
        node = schema[section]
        for part in rest:
            properties = node.get("properties")
            if properties is None:  # a task's overrides: any key of the section it overrides
                break
            if part not in properties:
                unknown.append(key)
                break
            node = properties[part]
    assert unknown == []


def _snakemake_commands() -> list[tuple[str, list[str]]]:
    """Each distinct command once (the README and a manual page may show the same one; -n
    does not make it another, as every command is dry-run), named by its first page."""
    commands: dict[tuple[str, ...], tuple[str, list[str]]] = {}
    for page in PAGES:
        for block in re.findall(r"```(?:bash)?\n(.*?)```", _text(page), re.S):
            for line in block.replace("\\\n", " ").splitlines():
                line = line.split(" #", 1)[0].strip()
                if not line.startswith(("snakemake", "./with-venv snakemake")):
                    continue
                words = shlex.split(line)
                if words[:1] == ["./with-venv"]:
                    words = words[1:]
                if words[:1] == ["snakemake"]:
                    key = tuple(w for w in words[1:] if w not in ("-n", "--dry-run"))
                    commands.setdefault(key, (f"{page.name}: {line}", words[1:]))
    return list(commands.values())


def test_the_manual_has_snakemake_commands():
    assert len(_snakemake_commands()) >= 5


@pytest.mark.slow
@pytest.mark.parametrize("command", _snakemake_commands(), ids=lambda c: c[0][:60])
def test_every_snakemake_command_of_the_manual_parses(command, tmp_path):
    """Each documented command, dry-run against the `.test` config in an empty folder (the
    executor and the number of jobs are those of a dry run: nothing is submitted)."""
    _, args = command
    # Targets in the default config's folders are the .test config's .test/ ones.
    folders = ("results/", "resources/", "outputs/")
    args = [".test/" + a if a.startswith(folders) else a for a in args
            if a not in ("-n", "--dry-run")]  # fmt: skip
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
           "--directory", str(tmp_path), "-n", *args, "--configfile", str(TEST_CONFIG)]  # fmt: skip
    if "--profile" not in args and "--cores" not in args:
        cmd += ["--cores", "1"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


# A published number with its interval, as the tables print it: "0.246 ± 0.033".
RESULT = re.compile(r"-?\d+\.\d{3} ± \d+\.\d{3}")


def _published_numbers() -> set[str]:
    """Every "mean ± interval" the committed results hold: the tables' Markdown as written,
    and each CSV column next to its ``<column>_ci95`` (the simulation's table) at 3 decimals."""
    found: set[str] = set()
    for table in (REPO / "results").rglob("tables/*"):
        if table.suffix == ".md":
            found.update(RESULT.findall(table.read_text()))
        elif table.suffix == ".csv":
            for row in csv.DictReader(table.open()):
                for column, value in row.items():
                    interval = row.get(f"{column}_ci95")
                    if value and interval:
                        found.add(f"{float(value):.3f} ± {float(interval):.3f}")
    return found


@pytest.mark.parametrize("page", ["README.md", "docs/results.md"])
def test_every_published_number_comes_from_the_results(page):
    """A "mean ± interval" in the README's claims or the results page is one the committed
    tables hold: rewritten pages cannot keep a number of an earlier run. A difference may be
    quoted the other way round ("GRPO's is above by 0.014 ± 0.012")."""
    written = {n.lstrip("-") for n in RESULT.findall((REPO / page).read_text())}
    published = {n.lstrip("-") for n in _published_numbers()}
    assert len(written) >= 10, "the page quotes no results"
    assert sorted(written - published) == []
