"""Test settings shared by every test: never reach the model hub or the internet; the
session-wide `.test` pipeline run."""

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
