"""The Figure 1 simulation: its outputs, and the behaviour each normalisation must show."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import yaml
from entrypoints import one_error_line, run_entry

from pgrpo.config import validate_config
from pgrpo.simulate import METHODS, make_world, run

SMALL = {"seeds": 3, "steps": 40, "num_users": 60}


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("simulation")
    (folder / "config.yaml").write_text(yaml.safe_dump({"simulation": SMALL}))
    done = run_entry(
        "pgrpo.simulate", "--config", str(folder / "config.yaml"),
        "--table", str(folder / "simulation.csv"), "--figure", str(folder / "fig.png"),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader((folder / "simulation.csv").open()))
    return folder, {(r["method"], r["cluster"]): r for r in rows}


@pytest.mark.slow
def test_table_and_figure(outputs):
    folder, rows = outputs
    assert set(rows) == {(m, c) for m in METHODS.values() for c in ("majority", "minority")}
    assert all(int(r["seeds"]) == 3 for r in rows.values())
    assert (folder / "fig.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_untrained_policy_earns_the_configured_cluster_means():
    cfg = validate_config({"simulation": dict(SMALL)})["simulation"]
    world = make_world(cfg, np.random.default_rng(0))
    for c, target in enumerate(cfg["reward_means"]):
        assert abs(world["prob"][world["cluster"] == c].mean() - target) < 1e-6
    assert 0 < world["cluster"].mean() < 0.5  # the minority is the smaller cluster


@pytest.mark.slow
def test_each_normalisation_gives_the_clusters_the_advantages_it_should(outputs):
    _, rows = outputs

    def advantage(method, cluster):
        return float(rows[(METHODS[method], cluster)]["mean_advantage"])

    # GRPO subtracts each user's own group mean: no cluster is favoured on average.
    for cluster in ("majority", "minority"):
        assert abs(advantage("grpo_group", cluster)) < 1e-9
        assert abs(advantage("grpo_batch", cluster)) < 1e-9
    # The batch mean of Figure 1(b) is pulled up by the majority: the minority's samples
    # get a negative advantage on average, the majority's a positive one.
    assert advantage("batch_mean", "minority") < -0.3 < 0 < advantage("batch_mean", "majority")
    # P-GRPO compares each sample with its own cluster's history: the minority is not
    # pushed down (about 0, positive as the policy improves on the history).
    assert advantage("pgrpo", "minority") > advantage("batch_mean", "minority") + 0.3


def test_runs_are_reproducible():
    cfg = validate_config({"simulation": dict(SMALL, steps=5)})["simulation"]
    a, b = run(cfg, "pgrpo", seed=1), run(cfg, "pgrpo", seed=1)
    assert np.array_equal(a["reward"], b["reward"])
    assert not np.array_equal(a["reward"], run(cfg, "pgrpo", seed=2)["reward"])


@pytest.mark.slow
def test_bad_setting_is_one_line_naming_the_key(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"simulation": {"reward_means": [0.8, 1.5]}}))
    done = run_entry(
        "pgrpo.simulate", "--config", str(config), "--table", str(tmp_path / "t.csv"),
        "--figure", str(tmp_path / "f.png"),
    )  # fmt: skip
    assert "simulation.reward_means" in one_error_line(done)
    assert not (tmp_path / "t.csv").exists() and not (tmp_path / "f.png").exists()
