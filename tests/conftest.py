"""Test settings shared by every test: never reach the model hub or the internet; the
session-wide `.test` pipeline run; the `pipeline` and `slow` markers of the tests that use it
(the markers themselves are declared in pyproject.toml)."""

import os

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
