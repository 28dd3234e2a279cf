"""The task registry: the built-in tasks' declarations hold together, a plugin task from
``task_modules`` is validated, prepared and loaded like a built-in one, and mistakes in a
plugin or its config give one-line errors."""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path

import pytest
import yaml
from entrypoints import one_error_line, run_entry
from pipeline_run import TEST_CONFIG, environment, snakemake

from pgrpo.config import task_config, validate_config
from pgrpo.io import PgrpoError, load_clusters, read_jsonl
from pgrpo.tasks import load_task
from pgrpo.tasks.registry import BUILT_IN, TaskSpec, task_spec, task_specs

TESTS = Path(__file__).resolve().parent


def plugin(**sections) -> dict:
    """A new config naming only the plugin task (validation fills a config in place)."""
    return {"task_modules": ["arithmetic_task"], "tasks": ["arithmetic"], **sections}


@pytest.fixture
def plugin_path(monkeypatch):
    """This folder importable, as PYTHONPATH makes it for the workflow's jobs."""
    monkeypatch.syspath_prepend(str(TESTS))
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))}


@pytest.mark.parametrize("name", ["movielens", "personas", "reviews"])
def test_each_built_in_task_declares_files_it_prepares(name):
    spec = task_specs()[name]
    assert spec.name == name
    prepared = set(spec.prepared_files)
    assert {"train.jsonl", "test.jsonl"} <= prepared
    assert set(spec.read_files) <= prepared and spec.read_files[0] == "train.jsonl"
    assert set(spec.embedding_files) <= prepared
    assert spec.labels_file is None or spec.labels_file in prepared
    assert (spec.grouping == "given") == ("groups.json" in prepared)


def test_the_built_in_tasks_come_in_order():
    assert list(task_specs()) == [m.rsplit(".", 1)[1] for m in BUILT_IN]


def test_a_plugin_task_is_validated_with_its_own_section(plugin_path):
    config = validate_config(plugin(arithmetic={"num_users": 4}))
    assert config["arithmetic"]["num_users"] == 4
    assert config["arithmetic"]["questions_per_user"] == 3  # the plugin schema's default
    config["arithmetic"]["train"] = {"steps": 7}
    merged = task_config(config, "arithmetic")
    assert merged["train"]["steps"] == 7  # the overrides every task takes
    with pytest.raises(PgrpoError, match=re.escape("c.yaml: arithmetic.num_users: 1 is less")):
        validate_config(plugin(arithmetic={"num_users": 1}), "c.yaml")
    with pytest.raises(PgrpoError, match=r"c.yaml: arithmetic.colour: unknown key"):
        validate_config(plugin(arithmetic={"colour": "red"}), "c.yaml")


def test_without_its_module_a_plugin_task_is_unknown():
    with pytest.raises(PgrpoError, match=r"tasks.0: 'arithmetic' is not one of"):
        validate_config({"tasks": ["arithmetic"]}, "c.yaml")


@pytest.mark.parametrize(
    ("modules", "message"),
    [
        (["no_such_task_module"], "task_modules: cannot import task module 'no_such_task_module'"),
        (["entrypoints"], "task_modules: module 'entrypoints' defines no TASK = TaskSpec(...)"),
        ("arithmetic_task", "task_modules: 'arithmetic_task' is not a list of module names"),
    ],
)
def test_a_bad_task_module_is_one_line(plugin_path, modules, message):
    with pytest.raises(PgrpoError, match=re.escape(message)) as info:
        validate_config({"task_modules": modules}, "c.yaml")
    assert str(info.value).startswith("c.yaml: ") and "\n" not in str(info.value)


def test_a_spec_must_hold_together():
    def build(data_dir, config, reward_model):
        return None

    with pytest.raises(PgrpoError, match="grouping 'given' needs groups.json prepared"):
        TaskSpec(name="x", summary="", build=build, prepare=build,
                 prepared_files=("train.jsonl", "test.jsonl"), grouping="given")  # fmt: skip
    with pytest.raises(PgrpoError, match="grouping 'clusters' needs user_texts"):
        TaskSpec(name="x", summary="", build=build, prepare=build,
                 prepared_files=("train.jsonl", "test.jsonl"))  # fmt: skip
    with pytest.raises(PgrpoError, match="grouping 'ages' is not one of clusters, given"):
        TaskSpec(name="x", summary="", build=build, prepare=build,
                 prepared_files=("train.jsonl",), grouping="ages")  # fmt: skip


def test_a_plugin_task_is_prepared_and_loaded_by_the_entry_point(tmp_path, plugin_path):
    """`python -m pgrpo.prepare --task arithmetic` in a fresh process, as the rule runs it;
    then the task scores answers in the user's format above the other format."""
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(plugin(arithmetic={"num_users": 6})))
    out = tmp_path / "arithmetic"
    done = run_entry("pgrpo.prepare", "--config", str(config_file), "--task", "arithmetic",
                     "--out", str(out), env=plugin_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert sorted(os.listdir(out)) == sorted(task_spec("arithmetic", validate_config(plugin()))
                                             .prepared_files)  # fmt: skip
    assignment, k = load_clusters(out / "groups.json")
    assert k == 2 and len(assignment) == 6
    test = read_jsonl(out / "test.jsonl")
    assert len(test) == 6 and len(read_jsonl(out / "train.jsonl")) == 6 * 3
    task = load_task("arithmetic", out, validate_config(plugin()))
    example = next(e for e in test if e["format"] == "words")
    total = example["a"] + example["b"]
    words = __import__("arithmetic_task").WORDS[total]
    assert task.score(f"It is {words}.", example) == (1.0, True)
    assert task.score(f"{total}", example) == (0.5, True)
    assert task.score(f"{total + 1}", example) == (0.0, True)
    assert task.score("no idea", example) == (0.0, False)


def test_the_entry_points_refuse_what_a_task_does_not_have(tmp_path, plugin_path):
    config_file = tmp_path / "config.yaml"
    config_file.write_text(yaml.safe_dump(plugin()))
    common = ["--config", str(config_file), "--task", "arithmetic", "--out", str(tmp_path / "o")]
    line = one_error_line(run_entry("pgrpo.prepare", *common, "--raw", "x", env=plugin_path))
    assert line == "error: --raw: the arithmetic task generates its data, it reads no raw data"
    line = one_error_line(
        run_entry("pgrpo.prepare", *common, "--test-candidates", "8", env=plugin_path)
    )
    assert line == "error: --test-candidates: the arithmetic task has no candidates"
    line = one_error_line(run_entry("pgrpo.prepare", *common[:2], "--task", "music",
                                    "--out", str(tmp_path / "o"), env=plugin_path))  # fmt: skip
    assert line == "error: task: 'music' is not one of movielens, personas, reviews, arithmetic"


@pytest.mark.slow
def test_a_fourth_task_runs_through_the_whole_workflow(tmp_path, plugin_path):
    """The plugin task, and only it, on the `.test` config with one seed: prepared, trained
    with every method (GRPO, P-GRPO and the baselines: batch-normalised GRPO, MaxMin GRPO,
    GRPO with the group in its prompts, GDPO, and a method of the config's own, Dr. GRPO),
    evaluated with the prompts each trained with, and written as its own table beside table
    4; nothing outside this test suite knows the task. (The difference rows need two seeds:
    tests/test_methods.py and the `.test` pipeline check them.)"""
    config = tmp_path / "arithmetic.yaml"
    methods = {"batch_grpo": {"advantage": "batch"},
               "maxmin_grpo": {"advantage": "group", "group_weighting": "softmin"},
               "prompted_grpo": {"advantage": "group", "group_in_prompt": True},
               "gdpo": {"objective": "dpo", "group_in_prompt": True},
               "unscaled": {"advantage": "group", "grpo_scale": "none",
                            "loss_aggregation": "dr_grpo"}}  # fmt: skip
    config.write_text(
        yaml.safe_dump(plugin(arithmetic={"num_users": 6}, train={"methods": methods}, seeds=1))
    )
    env = {**environment(tmp_path), **plugin_path}
    done = snakemake(tmp_path, "--configfile", str(TEST_CONFIG), str(config), env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    results = tmp_path / ".test/results"
    with open(results / "tables/table5_arithmetic.csv") as f:
        rows = list(csv.DictReader(f))
    cells = {(r["method"], r["cluster"], r["metric"]) for r in rows}
    groups = ("all", "digits", "words", "worst", "gap")
    for method in ("base", "grpo", "pgrpo", *methods):
        assert {(method, group, "reward") for group in groups} <= cells
    runs = tmp_path / ".test/outputs/tiny/arithmetic/groups/seed0"
    for method in ("grpo", *methods):  # evaluated with the prompts the method trained with
        report = json.loads((runs / method / "eval.json").read_text())
        assert report["group_in_prompt"] is (method in ("prompted_grpo", "gdpo")), method
    assert all(r["task"] == "arithmetic" and r["model"] == "tiny" for r in rows)  # `.test` scale
    general = (results / "tables/table4_general.csv").read_text()
    assert "arithmetic" in general and "movielens" not in general
    caption = (results / "tables/table5_arithmetic.md").read_text()
    assert "Table 5: sums in the user's format" in caption
    assert not (tmp_path / ".test/resources/movielens").exists()
