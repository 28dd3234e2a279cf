"""Test settings shared by every test: never reach the model hub or the internet; the
session-wide `.test` pipeline run; the `pipeline` and `slow` markers of the tests that use it
(the markers themselves are declared in pyproject.toml)."""

import os
import re
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory):
    """The `.test` DAG, run once per session (see tests/pipeline_run.py)."""
    from pipeline_run import run_pipeline

    return run_pipeline(tmp_path_factory.mktemp("pipeline"))


def pytest_report_header(config):
    """The CPU kernel set torch uses (``ATEN_CPU_CAPABILITY`` picks another): float results
    differ in their last bits between sets, so a failure report should say which ran."""
    import platform

    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in _cpuinfo() if "model name" in line), "")
    chosen = os.environ.get("ATEN_CPU_CAPABILITY", "unset")
    return (
        f"torch {torch.__version__}, CPU kernels {torch.backends.cpu.get_cpu_capability()} "
        f"(ATEN_CPU_CAPABILITY={chosen}), {platform.machine()} {cpu}".rstrip()
    )


def _cpuinfo() -> list[str]:
    try:
        with open("/proc/cpuinfo") as f:
            return f.readlines()
    except OSError:
        return []


def pytest_collection_modifyitems(items):
    """A test that needs the session's pipeline run is a `pipeline` test, and a slow one."""
    for item in items:
        if "pipeline" in item.fixturenames:
            item.add_marker(pytest.mark.pipeline)
            item.add_marker(pytest.mark.slow)


# A test function or fixture that takes the session's pipeline run.
_TAKES_PIPELINE = re.compile(r"^def \w+\([^)]*\bpipeline\b", re.M)


def pipeline_files() -> set[str]:
    """The test files (node id form, ``tests/test_x.py``) with a test or fixture that takes the
    ``pipeline`` fixture."""
    here = Path(__file__).parent
    return {
        f"{here.name}/{path.name}"
        for path in here.glob("test_*.py")
        if _TAKES_PIPELINE.search(path.read_text())
    }


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """How the suite is split over its pytest-xdist workers (pyproject's addopts: ``-n 2
    --dist loadscope``): each worker takes whole files, so that a module's fixtures (a trained
    run, a killed DAG) are made once, as in a plain run; and every file that uses the
    session's `.test` pipeline run goes to one worker, so that the DAG is built once, while
    the other worker runs the rest. (pytest-xdist's own ``xdist_group`` marks do not group
    under pytest 9, whose node ids no longer come from the attribute xdist rewrites.)"""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    shared = pipeline_files()

    class PipelineTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = nodeid.split("::", 1)[0]
            return "pipeline" if path in shared else path

    return PipelineTogether(config, log)
