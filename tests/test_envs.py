"""The install descriptions (constraints*.txt, envs/pgrpo.yaml, pyproject.toml) agree."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS = ROOT / "constraints.txt"
CONSTRAINTS_CPU = ROOT / "constraints-cpu.txt"
CONDA_ENV = ROOT / "envs" / "pgrpo.yaml"
PYPROJECT = ROOT / "pyproject.toml"

CORE = [
    "torch",
    "snakemake",
    "transformers",
    "accelerate",
    "peft",
    "scikit-learn",
    "dvc",
    "mlflow",
    "pyyaml",
]
# conda-forge package names that differ from the pip distribution they provide
CONDA_TO_PIP = {"pytorch": "torch", "matplotlib-base": "matplotlib"}
# entries of the conda file that are not Python distributions pinned by constraints
CONDA_ONLY = {"python", "pip"}

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*(===?|=)\s*([^\s;#,]+)")
_NAME = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)")


def norm(name: str) -> str:
    """Normalise a distribution name (PEP 503: lowercase, runs of -_. become -)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_constraints(path: Path) -> dict[str, str]:
    pins: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()
        if not line:
            continue
        m = _PIN.match(line)
        assert m and m.group(2) == "==", f"{path.name}: not an exact '==' pin: {raw!r}"
        name = norm(m.group(1))
        assert name not in pins, f"{path.name}: {name} pinned twice"
        pins[name] = m.group(3)
    return pins


def all_constraints() -> dict[str, str]:
    base, cpu = parse_constraints(CONSTRAINTS), parse_constraints(CONSTRAINTS_CPU)
    return {**base, **cpu}


def parse_conda_env(path: Path) -> dict[str, str | None]:
    """name -> pinned version (None when unpinned), conda and pip sections together."""
    env = yaml.safe_load(path.read_text())
    pins: dict[str, str | None] = {}

    def add(spec: str, conda: bool) -> None:
        m = _PIN.match(spec.strip())
        if m:
            name, version = m.group(1), m.group(3)
        else:
            name_match = _NAME.match(spec.strip())
            assert name_match, f"{path.name}: cannot parse {spec!r}"
            name, version = name_match.group(1), None
        name = norm(name)
        if conda:
            name = CONDA_TO_PIP.get(name, name)
        assert name not in pins, f"{path.name}: {name} listed twice"
        pins[name] = version

    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            for spec in dep.get("pip", []):
                add(spec, conda=False)
        else:
            add(dep, conda=True)
    return pins


def test_constraint_files_agree():
    base, cpu = parse_constraints(CONSTRAINTS), parse_constraints(CONSTRAINTS_CPU)
    assert cpu.get("torch"), "constraints-cpu.txt must pin torch"
    assert "torch" not in base, "torch belongs in constraints-cpu.txt only (GPU machines)"
    clash = {n: (base[n], cpu[n]) for n in base.keys() & cpu.keys() if base[n] != cpu[n]}
    assert not clash, f"constraints.txt and constraints-cpu.txt disagree: {clash}"


def test_conda_env_matches_constraints():
    pins = all_constraints()
    env = parse_conda_env(CONDA_ENV)
    mismatched = {
        name: (pins[name], version)
        for name, version in env.items()
        if name in pins and version is not None and version != pins[name]
    }
    assert not mismatched, f"constraints vs envs/pgrpo.yaml (name: (pin, env)): {mismatched}"
    unpinned = sorted(n for n, v in env.items() if n in pins and v is None)
    assert not unpinned, f"envs/pgrpo.yaml lists these without the constraints' pin: {unpinned}"
    extra = sorted(n for n in env if n not in pins and n not in CONDA_ONLY)
    assert not extra, f"envs/pgrpo.yaml pins packages that the constraints do not: {extra}"
    missing = [n for n in CORE if n in pins and n not in env]
    assert not missing, f"core packages missing from envs/pgrpo.yaml: {missing}"


def test_core_packages_are_pinned():
    pins = all_constraints()
    assert [n for n in CORE if n not in pins] == []


def test_pyproject_dependencies_are_pinned():
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    deps = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        deps += extra
    pins = all_constraints()
    names = [norm(_NAME.match(dep.strip()).group(1)) for dep in deps]
    assert names, "pyproject.toml declares no dependencies"
    unpinned = sorted(n for n in names if n not in pins)
    assert not unpinned, f"pyproject dependencies without a pin in constraints*.txt: {unpinned}"


def _torch_is_cuda_build(version: str) -> bool:
    if "+" in version:
        return version.split("+", 1)[1].startswith(("cu", "rocm"))
    import torch  # a plain version (PyPI's Linux wheel) may be a CUDA build too

    return torch.version.cuda is not None or getattr(torch.version, "hip", None) is not None


def test_installed_versions_match_pins():
    checked, wrong = [], {}
    for name, pin in sorted(all_constraints().items()):
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        if name == "torch" and _torch_is_cuda_build(installed):
            continue  # a GPU machine keeps the CUDA torch that pip chose; only CPU torch is pinned
        checked.append(name)
        if installed.split("+", 1)[0] != pin:
            wrong[name] = (pin, installed)
    if not checked:
        pytest.skip("none of the pinned packages is installed in this interpreter")
    assert not wrong, f"installed versions differ from the pins (name: (pin, installed)): {wrong}"
