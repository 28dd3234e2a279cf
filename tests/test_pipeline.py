"""The whole DAG at CI scale (.test/config.yaml): real data, tiny model, real MLflow store.

Runs `snakemake` once for the session in a temporary working directory (through SLURM where
a cluster answers, see tests/pipeline_run.py), then checks what a user gets: the three tasks'
tables and figures, the adapters, the rating model (fitted on the train split only), MLflow
runs (tests/test_mlflow_runs.py), and a second `snakemake` that has nothing to do.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from pipeline_run import snakemake

METHODS = ("grpo", "pgrpo")
TASKS = ("movielens", "personas", "reviews")
CATALOGUE = ("table1_movielens", "table2_personas", "table3_reviews", "table4_general",
             "fig2_reward_curves", "fig3_accuracy_vs_candidates", "fig4_cluster_ablation",
             "fig5_judge_winrates", "fig6_training_dynamics", "fig7_group_size")  # fmt: skip


@pytest.fixture(scope="module")
def run(pipeline):
    return pipeline


def _table(run, name: str) -> list[dict]:
    with open(run["dir"] / f".test/results/tables/{name}.csv") as f:
        return list(csv.DictReader(f))


def _cells(rows: list[dict], **match) -> list[dict]:
    return [r for r in rows if all(r[k] == v for k, v in match.items())]


def _runs(run, task: str, method: str) -> list[Path]:
    """Run folders of every training seed of ``method`` on ``task`` (main partition)."""
    seeds = range(run["config"]["seed"], run["config"]["seed"] + run["config"]["seeds"])
    part = {"movielens": "kmeans_k3", "personas": "kmeans_k7", "reviews": "groups"}[task]
    return [run["dir"] / f".test/outputs/tiny/{task}/{part}/seed{s}/{method}" for s in seeds]


def test_every_catalogue_table_and_figure_and_the_manifest_are_written(run):
    results = run["dir"] / ".test/results"
    for name in CATALOGUE:
        kind = "tables" if name.startswith("table") else "figures"
        suffixes = ("csv", "md", "tex") if kind == "tables" else ("png", "svg")
        for suffix in suffixes:
            assert (results / kind / f"{name}.{suffix}").stat().st_size > 200, (name, suffix)
        header = (results / "tables" / f"{name}.csv").read_text().splitlines()[0].split(",")
        assert header[:3] == ["task", "model", "method"]
        assert header[-6:] == ["cluster", "metric", "mean", "ci95", "n_seeds", "mdd"]
    manifest = json.loads((results / "manifest.json").read_text())
    assert manifest["config_hash"] and manifest["git"]["commit"]
    assert manifest["versions"]["torch"] and manifest["time"]["wall_seconds"] > 0
    assert any(p.endswith("ml-100k.inter") for p in manifest["data"])
    assert {Path(p).name for p in manifest["results"]} >= {
        "table1_movielens.csv",
        "fig1_simulation.png",
    }


def test_table1_cells_are_the_mean_and_interval_of_the_seeds_evaluations(run):
    from pgrpo.stats import mean_ci95

    rows = _table(run, "table1_movielens")
    k = run["config"]["clustering"]["num_clusters"]
    for method in METHODS:
        evals = [json.loads((d / "eval.json").read_text()) for d in _runs(run, "movielens", method)]
        for cluster in map(str, range(k)):
            (cell,) = _cells(rows, method=method, cluster=cluster, metric="accuracy")
            direct = mean_ci95([e["per_cluster"][cluster]["reward"] for e in evals])
            assert float(cell["mean"]) == pytest.approx(direct.mean)
            assert float(cell["ci95"]) == pytest.approx(direct.ci95)
            assert cell["n_seeds"] == str(run["config"]["seeds"])
        assert _cells(rows, method=method, cluster="all", metric="final_train_reward")
    # Validation option scores: before the first step, then every eval_every updates.
    every, steps = run["config"]["train"]["eval_every"], run["config"]["train"]["steps"]
    logged = [json.loads(line) for line in (_runs(run, "movielens", "pgrpo")[0] /
                                             "metrics.jsonl").read_text().splitlines()]  # fmt: skip
    assert 0 <= logged[0]["val0/letter_accuracy"] <= 1
    assert [r["val/updates"] for r in logged if "val/updates" in r] == list(
        range(every, steps + 1, every)
    )
    (base,) = _cells(rows, method="base", cluster="all", metric="accuracy")
    assert base["n_seeds"] == "1" and base["ci95"] == ""
    assert _cells(rows, method="pgrpo-grpo", cluster="worst", metric="accuracy")


def test_table1_scores_the_letters_on_a_balanced_test_set_beside_the_reference_rows(run):
    test = _jsonl(run["dir"] / ".test/resources/movielens/test.jsonl")
    letters = [e["answer"] for e in test]
    counts = [letters.count(x) for x in sorted(set(letters))]
    assert len(counts) == 4 and max(counts) - min(counts) <= 1
    rows = _table(run, "table1_movielens")
    methods = {r["method"] for r in _cells(rows, cluster="all", metric="letter_accuracy")}
    assert methods >= {"base", *METHODS, "pgrpo-grpo", "one_letter", "recent", "genre",
                       "popularity"}  # fmt: skip
    (constant,) = _cells(rows, method="one_letter", cluster="all", metric="letter_accuracy")
    assert float(constant["mean"]) == pytest.approx(0.25, abs=1e-9)
    evaluated = json.loads((_runs(run, "movielens", "grpo")[0] / "eval.json").read_text())
    assert len(evaluated["answers"][0]["option_log_probs"]) == 4
    (cell,) = _cells(rows, method="grpo", cluster="all", metric="letter_accuracy")
    seeds = [json.loads((d / "eval.json").read_text())["choices"]["letter_accuracy"]["all"]
             for d in _runs(run, "movielens", "grpo")]  # fmt: skip
    assert float(cell["mean"]) == pytest.approx(sum(seeds) / len(seeds))


def test_text_tables_have_every_group_and_the_clusters_ari_and_rating_model(run):
    out = run["dir"] / ".test"
    tested = {e["persona"] for e in _jsonl(out / "resources/personas/test.jsonl")}
    personas = _table(run, "table2_personas")
    groups = {r["cluster"] for r in _cells(personas, method="pgrpo", metric="reward")}
    evaluated = json.loads((_runs(run, "personas", "pgrpo")[0] / "eval.json").read_text())
    assert groups == set(evaluated["per_group"]) | {"all", "worst", "gap"}
    assert set(evaluated["per_group"]) <= tested and len(evaluated["per_group"]) >= 3
    clusters = json.loads((out / "outputs/personas/clusters/kmeans_k7.json").read_text())
    (ari,) = _cells(personas, metric="cluster_ari")
    assert float(ari["mean"]) == pytest.approx(clusters["adjusted_rand_index"])
    reviews = _table(run, "table3_reviews")
    ratings = {r["cluster"] for r in _cells(reviews, method="grpo", metric="reward")}
    assert {"rating 1", "rating 5", "worst", "gap"} <= ratings
    rating = json.loads((out / "outputs/reviews/rating_model.json").read_text())
    (acc,) = _cells(reviews, metric="rating_model_balanced_accuracy")
    assert float(acc["mean"]) == pytest.approx(rating["balanced_accuracy"])


def test_figure_tables_cover_every_candidate_size_and_partition(run):
    sizes = {f"c{n}" for n in run["config"]["figures"]["candidate_sizes"]}
    fig3 = _table(run, "fig3_accuracy_vs_candidates")
    for method in ("base", *METHODS):
        assert {r["variant"] for r in _cells(fig3, method=method, metric="accuracy")} == sizes
    fig4 = _table(run, "fig4_cluster_ablation")
    parts = {r["variant"] for r in _cells(fig4, method="pgrpo", metric="accuracy")}
    assert parts == {"kmeans_k1", "kmeans_k3", "random_k3"}
    general = _table(run, "table4_general")
    assert {r["task"] for r in general} == {"none", *TASKS}
    assert {r["metric"] for r in general} >= {"lm_loss", "mc_accuracy"}


def test_rating_model_was_fitted_on_train_reviews_only(run):
    import numpy as np

    out = run["dir"] / ".test"
    train = {str(r["review_id"]) for r in _jsonl(out / "resources/reviews/train.jsonl")}
    test = {str(r["review_id"]) for r in _jsonl(out / "resources/reviews/test.jsonl")}
    with np.load(out / "outputs/reviews/rating_model.npz", allow_pickle=False) as model:
        fitted = set(model["trained_on"].tolist())
    assert not fitted & test
    assert fitted <= train
    assert len(fitted) == min(len(train), run["config"]["reviews"]["rating_model_max_reviews"])


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_dvc_metrics_hold_each_tables_overall_means(run):
    summary = json.loads((run["dir"] / ".test/results/metrics/table1_movielens.json").read_text())
    methods = summary["movielens"]["tiny"]
    assert set(methods) == {"base", "grpo", "pgrpo", "pgrpo-grpo", "one_letter", "recent", "genre",
                            "popularity"}  # fmt: skip
    assert all(0.0 <= methods[m]["accuracy"] <= 1.0 for m in ("base", "grpo", "pgrpo"))


def test_simulation_table_and_figure(run):
    rows = list(csv.DictReader((run["dir"] / ".test/results/tables/simulation.csv").open()))
    assert len(rows) == 8 and {r["seeds"] for r in rows} == {"2"}  # .test/config.yaml
    figure = run["dir"] / ".test/results/figures/fig1_simulation.png"
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("task", TASKS)
def test_each_method_saved_an_adapter_and_its_metrics(run, task):
    steps = run["config"]["train"]["steps"]
    for out in [d for method in METHODS for d in _runs(run, task, method)]:
        assert (out / "adapter/adapter_model.safetensors").stat().st_size > 0
        assert json.loads((out / "adapter/adapter_config.json").read_text())["r"] == 4
        lines = (out / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(line)["step"] for line in lines] == list(range(steps))


@pytest.mark.slow
def test_the_html_report_captions_every_table_and_figure(run):
    report = run["dir"] / "report.html"
    proc = snakemake(run["dir"], "--report", str(report), env=run["env"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    html = report.read_text()
    for name in CATALOGUE:
        assert name in html, name
    for caption in ("Table 1, MovieLens next-item prediction", "Table 4, general capabilities",
                    "Figure 3, accuracy against candidate-set size", "Figure 5, judge win rates",
                    "95% Student-t interval"):  # fmt: skip
        assert caption in html, caption


@pytest.mark.slow
def test_second_run_has_nothing_to_do(run):
    proc = snakemake(run["dir"], "--dry-run", env=run["env"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_judge_win_rates_cover_every_group_of_the_judged_tasks(run):
    rows = _table(run, "fig5_judge_winrates")
    for task in ("personas", "reviews"):
        for folder in _runs(run, task, "pgrpo"):
            result = json.loads((folder / "judge_winrates.json").read_text())
            evaluation = json.loads((folder / "eval.json").read_text())
            assert set(result["per_group"]) == set(evaluation["per_group"])
            assert result["pairs"] == evaluation["n"]
            for cell in result["per_group"].values():
                assert cell["wins"] + cell["ties"] + cell["losses"] == cell["n"]
                rate = (cell["wins"] + cell["ties"] / 2) / cell["n"]
                assert cell["win_rate"] == pytest.approx(rate)
        groups = {r["cluster"] for r in _cells(rows, task=task, metric="win_rate")}
        assert groups == set(result["per_group"])


def test_the_run_ends_comparing_its_headline_numbers_with_the_published_ones(run):
    results = run["dir"] / ".test/results"
    comparison = json.loads((results / "comparison.json").read_text())
    from pipeline_run import REPO

    published = json.loads((REPO / ".test/reference.json").read_text())
    # Every published headline number was produced again and compared; whether each is
    # consistent depends on the CPU's kernels, which the tiny model is sensitive to.
    assert comparison["missing"] == [] and comparison["compared"] == len(published["cells"])
    assert comparison["reference_commit"] == published["commit"]
    assert 0 <= comparison["consistent"] <= comparison["compared"]
    assert (results / "comparison.md").read_text().startswith("Comparison with the published")
