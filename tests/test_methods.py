"""Named methods (pgrpo/methods.py): the config's forms, its one-line errors, and the tables
that hold every configured method with its paired difference from the reference method and
the best-worst gap of every per-group table."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from test_catalogue import SEEDS, _runs

from pgrpo.config import load_config, validate_config
from pgrpo.io import PgrpoError
from pgrpo.methods import BUILTIN, label, named_methods
from pgrpo.stats import mean_ci95, minimum_detectable_difference
from pgrpo.tables import cells, method_label, parse_runs, to_markdown
from pgrpo.tasks import GroupInPrompt, Task

CONFIG_YAML = Path(__file__).resolve().parents[1] / "config.yaml"


def methods_of(train: dict) -> dict:
    return named_methods(validate_config({"train": train}, "c.yaml")["train"])


def test_the_default_is_grpo_and_pgrpo_compared_with_grpo():
    config = validate_config({})
    assert config["train"]["methods"] == {"grpo": {"advantage": "group"},
                                          "pgrpo": {"advantage": "cluster"}}  # fmt: skip
    assert config["train"]["reference_method"] == "grpo"


def test_a_list_of_built_in_names_selects_exactly_those():
    """The form before named methods keeps working: `methods: [grpo, pgrpo]`."""
    assert methods_of({"methods": ["grpo", "pgrpo"]}) == methods_of({})
    chosen = methods_of({"methods": ["grpo", "dr_grpo", "batch_grpo"]})
    assert chosen == {m: BUILTIN[m] for m in ("batch_grpo", "dr_grpo", "grpo")}
    validated = validate_config({"train": {"methods": ["grpo", "dr_grpo"]}})
    assert validate_config(copy.deepcopy(validated)) == validated  # pgrpo stays out


def test_a_mapping_adds_to_the_defaults_and_null_drops_one():
    """Merged over config.yaml as Snakemake merges a --configfile (and over the schema's
    defaults where there is no config.yaml); the validated config validates to itself (the
    jobs re-read it), so a dropped method stays dropped."""
    wide = {"advantage": "batch", "learning_rate": 1e-3}
    added = load_config(CONFIG_YAML, {"train": {"methods": {"wide": wide}}})
    assert list(named_methods(added["train"])) == ["grpo", "pgrpo", "wide"]
    assert added["train"]["methods"]["wide"] == wide
    assert list(methods_of({"methods": {"wide": wide}})) == ["grpo", "pgrpo", "wide"]
    dropped = load_config(CONFIG_YAML, {"train": {"methods": {"pgrpo": None}}})
    assert list(named_methods(dropped["train"])) == ["grpo"]
    assert validate_config(copy.deepcopy(dropped)) == dropped


@pytest.mark.parametrize(
    "train,message",
    [
        ({"methods": ["grpo", "maxmin"]},
         "train.methods: 'maxmin' is not a built-in method (grpo, pgrpo, dr_grpo, batch_grpo, "
         "maxmin_grpo, prompted_grpo, gdpo); write train.methods as a mapping of names to "
         "settings, e.g. {maxmin: {advantage: group}}"),
        ({"methods": {"wide": {"learning_rate": 1e-3}}},
         "train.methods.wide: no advantage (one of group, batch, cluster)"),
        ({"methods": {"wide": {"advantage": "global"}}},
         "train.methods.wide.advantage: 'global' is not one of the allowed values (group, "
         "batch, cluster)"),
        ({"methods": {"wide": {"advantage": "batch", "grpo_scale": "max"}}},
         "train.methods.wide.grpo_scale: 'max' is not one of the allowed values (group, batch, "
         "none)"),
        ({"methods": {"wide": {"advantage": "batch", "threads": 4}}},
         "train.methods.wide.threads: the same for every method (set train.threads)"),
        ({"methods": {"base": {"advantage": "group"}}}, "train.methods.base: the name is reserved"),
        ({"methods": {"dr-grpo": {"advantage": "group"}}},
         "train.methods: 'dr-grpo' does not match '^[a-z][a-z0-9_]*$'"),
        ({"methods": {"grpo": None, "pgrpo": None}}, "train.methods: no method left to train"),
        ({"reference_method": "dr_grpo"},
         "train.reference_method: 'dr_grpo' is not one of train.methods (grpo, pgrpo)"),
    ],
)  # fmt: skip
def test_a_bad_method_is_one_line_naming_its_key(train, message):
    with pytest.raises(PgrpoError) as info:
        validate_config({"train": train}, "c.yaml")
    assert str(info.value) == f"c.yaml: {message}"


def test_a_task_cannot_choose_its_own_methods():
    with pytest.raises(PgrpoError) as info:
        validate_config({"personas": {"train": {"methods": ["grpo"]}}}, "c.yaml")
    assert str(info.value) == (
        "c.yaml: personas.train.methods: methods are the same for every task (set train.methods)"
    )


def test_every_method_gets_its_paired_difference_from_the_reference(tmp_path):
    """Three trained methods: each non-reference one has a difference row with its minimum
    detectable difference; with another reference the rows follow it."""
    seeds = {**SEEDS, "wide": [{"0": 0.2, "1": 0.2}, {"0": 0.3, "1": 0.1}, {"0": 0.3, "1": 0.3}]}
    runs = parse_runs(_runs(tmp_path, seeds))
    cell = {(r["method"], r["cluster"], r["metric"]): r for r in cells(runs)}
    pairs = zip(seeds["wide"], seeds["grpo"], strict=True)
    direct = mean_ci95([w["0"] - g["0"] for w, g in pairs])
    row = cell[("wide-grpo", "0", "accuracy")]
    assert (row["mean"], row["ci95"]) == pytest.approx((direct.mean, direct.ci95))
    assert row["mdd"] == pytest.approx(minimum_detectable_difference(direct))
    assert ("pgrpo-grpo", "0", "accuracy") in cell
    assert not any(m.startswith(("grpo-", "base-")) for m, _, _ in cell)
    other = {r["method"] for r in cells(runs, reference="pgrpo")}
    assert {"grpo-pgrpo", "wide-pgrpo"} <= other and "pgrpo-grpo" not in other


def test_the_gap_is_the_best_group_minus_the_worst_per_seed(tmp_path):
    """A hand computation: GRPO's groups 0.3/0.1, 0.4/0.2, 0.35/0.0 give gaps 0.2, 0.2,
    0.35; P-GRPO's 0.1, 0.25, 0.25; the paired difference of the gaps is -0.1, +0.05,
    -0.1."""
    cell = {(r["method"], r["cluster"], r["metric"]): r
            for r in cells(parse_runs(_runs(tmp_path, SEEDS)))}  # fmt: skip
    for method, gaps in (("grpo", [0.2, 0.2, 0.35]), ("pgrpo", [0.1, 0.25, 0.25])):
        direct = mean_ci95(gaps)
        row = cell[(method, "gap", "accuracy")]
        assert (row["mean"], row["ci95"]) == pytest.approx((direct.mean, direct.ci95))
    diff = cell[("pgrpo-grpo", "gap", "accuracy")]
    assert diff["mean"] == pytest.approx(mean_ci95([-0.1, 0.05, -0.1]).mean)
    markdown = to_markdown(list(cell.values()), "Caption.")
    header = next(line for line in markdown.splitlines() if line.startswith("| task"))
    assert header.endswith("| worst | gap |")  # the last columns of every per-group pivot


def test_a_table_with_one_group_has_no_gap(tmp_path):
    path = tmp_path / "eval.json"
    path.write_text(json.dumps({"task": "t", "reward": 0.5, "usable_rate": 1.0, "n": 4,
                                "per_cluster": {"0": {"reward": 0.5, "n": 4}}}))  # fmt: skip
    rows = cells(parse_runs([f"m/t/grpo/0={path}"]))
    assert {r["cluster"] for r in rows} == {"all", "0", "worst"}


def test_labels_of_methods_differences_and_other_rows():
    assert label("pgrpo-grpo") == "P-GRPO − GRPO"
    assert label("wide-dr_grpo") == "wide − Dr. GRPO"
    assert method_label("base") == "Base model" and method_label("wide") == "wide"


def test_group_in_prompt_tags_the_first_user_message_and_keeps_the_rest():
    """cluster-conditioned GRPO's prompts: the user's cluster, counted from 1, before the
    task's own prompt; scores, options and everything else are the task's."""

    class Echo(Task):
        name = "echo"

        def messages(self, example):
            return [{"role": "system", "content": "Be brief."},
                    {"role": "user", "content": f"Hello {example['user_id']}"}]  # fmt: skip

        def score(self, completion, example):
            return float(completion == "hi"), True

    inner = Echo()
    task = GroupInPrompt(inner, {7: 2, 8: 0}, 3)
    assert task.messages({"user_id": 7}) == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "[Preference group 3 of 3]\nHello 7"},
    ]
    assert task.messages({"user_id": 8})[1]["content"].startswith("[Preference group 1 of 3]")
    assert inner.messages({"user_id": 7})[1]["content"] == "Hello 7"  # the task's own untouched
    assert task.checked_scores(["hi", "no"], [{"user_id": 7}, {"user_id": 8}]) == [
        (1.0, True), (0.0, True)]  # fmt: skip
    assert task.name == "echo" and task.options({"user_id": 7}) is None
