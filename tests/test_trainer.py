"""Every training option of config.yaml reaches the trainer and changes what it computes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import yaml

from pgrpo.advantages import (
    ClusterRewardStats,
    group_advantages,
    pgrpo_advantages,
    worst_group_weights,
)
from pgrpo.config import validate_config
from pgrpo.loss import policy_loss
from pgrpo.settings import TrainSettings
from pgrpo.trainer import (
    Trainer,
    compute_advantages,
    new_cluster_stats,
    update_loss,
)

pytestmark = pytest.mark.numerics

# Keys of config section `train` that the launcher or the entry point uses rather than the
# training loop (checkpoint_every: pgrpo.train, tests/test_resume.py).
LAUNCH_KEYS = {
    "methods",
    "reference_method",
    "num_processes",
    "threads",
    "checkpoint_every",
    "eval_every",
    "eval_prompts",
}
NON_DEFAULT = {
    "group_weighting": "softmin", "group_weighting_temperature": 0.5, "group_in_prompt": True,
    "objective": "dpo", "dpo_beta": 0.2,
    "steps": 7, "prompts_per_step": 6, "group_size": 3, "max_new_tokens": 9,
    "temperature": 0.7, "learning_rate": 1e-3, "beta": 0.1, "clip_eps": 0.1,
    "clip_eps_high": 0.28, "iterations": 3, "loss_aggregation": "dr_grpo", "grpo_scale": "batch",
    "std": "population", "pgrpo_order": "before", "warmup_min_count": 5, "decay": 0.9,
    "advantage_eps": 0.01, "log_every": 4, "warmup_steps": 3, "max_grad_norm": 0.5,
    "balanced_steps": False,
}  # fmt: skip


def test_every_train_option_reaches_the_settings():
    with open("workflow/schemas/config.schema.yaml") as f:
        schema_keys = set(yaml.safe_load(f)["properties"]["train"]["properties"])
    assert schema_keys - LAUNCH_KEYS == set(NON_DEFAULT)  # a new key must be wired and tested
    config = validate_config({
        "train": dict(NON_DEFAULT), "seed": 3, "model": {"precision": "fp32"},
        "launch": {"sharding": "fsdp"},
    })  # fmt: skip
    settings = TrainSettings.from_config(config, "grpo")
    for key, value in NON_DEFAULT.items():
        assert getattr(settings, key) == value, key
    assert (settings.seed, settings.precision, settings.method) == (3, "fp32", "grpo")
    assert settings.advantage == "group"
    assert settings.sharding == "fsdp"
    defaults = TrainSettings.from_config(validate_config({}), "pgrpo")
    assert all(getattr(defaults, k) != v for k, v in NON_DEFAULT.items())
    assert defaults.sharding is None


def batch(seed: int = 0, groups: int = 6, g: int = 4):
    rng = np.random.default_rng(seed)
    rewards = torch.tensor(rng.integers(0, 2, size=groups * g), dtype=torch.float32)
    rewards[:g] = 1.0  # one constant group
    clusters = torch.tensor(rng.integers(0, 3, size=groups)).repeat_interleave(g)
    return rewards, clusters


@pytest.mark.parametrize(
    "options,direct",
    [
        ({"grpo_scale": "batch"}, lambda r, c: group_advantages(r, 4, "batch", 1e-4)),
        ({"grpo_scale": "none"}, lambda r, c: group_advantages(r, 4, "none", 1e-4)),
        ({"std": "population"}, lambda r, c: group_advantages(r, 4, eps=1e-4, unbiased=False)),
    ],
)
def test_grpo_advantage_options(options, direct):
    rewards, clusters = batch()
    settings = TrainSettings(method="grpo", advantage="group", group_size=4, **options)
    got = compute_advantages(rewards, clusters, settings, new_cluster_stats(settings, 3))
    torch.testing.assert_close(got, direct(rewards, clusters))
    default = compute_advantages(
        rewards, clusters, TrainSettings(method="grpo", advantage="group", group_size=4), None
    )
    assert not torch.allclose(got, default)


@pytest.mark.parametrize(
    "options,stats_args,call_args",
    [
        ({"pgrpo_order": "before"}, {}, {"order": "before"}),
        (
            {"pgrpo_order": "before", "warmup_min_count": 9},
            {},
            {"order": "before", "warmup_min_count": 9},
        ),
        ({"decay": 0.5}, {"decay": 0.5}, {}),
        ({"std": "population"}, {"unbiased": False}, {}),
    ],
)
def test_pgrpo_advantage_options(options, stats_args, call_args):
    """Three batches through the trainer's statistics equal the library with the options."""
    settings = TrainSettings(method="pgrpo", group_size=4, **options)
    default_settings = TrainSettings(method="pgrpo", group_size=4)
    stats, reference = new_cluster_stats(settings, 3), ClusterRewardStats(3, **stats_args)
    default_stats = new_cluster_stats(default_settings, 3)
    differs = False
    for seed in range(3):
        rewards, clusters = batch(seed)
        got = compute_advantages(rewards, clusters, settings, stats)
        want = pgrpo_advantages(rewards, clusters, reference, 4, 1e-4, **call_args)
        torch.testing.assert_close(got, want)
        default = compute_advantages(rewards, clusters, default_settings, default_stats)
        differs |= not torch.allclose(got, default)
    assert differs


def test_loss_options():
    g = torch.Generator().manual_seed(0)
    logp = -torch.rand(8, 5, generator=g)
    old = logp - 0.4 * torch.rand(8, 5, generator=g)  # ratios up to e^0.4, above 1 + 0.2
    ref = logp - 0.1
    adv = torch.randn(8, generator=g)
    mask = (torch.rand(8, 5, generator=g) > 0.3).float()
    for options, kwargs in [
        ({"loss_aggregation": "dapo"}, {"mode": "dapo"}),
        ({"loss_aggregation": "dr_grpo"}, {"mode": "dr_grpo", "max_completion_length": 4}),
        ({"clip_eps_high": 0.3}, {"clip_high": 0.3}),
        ({"clip_eps": 0.1}, {"clip_low": 0.1, "clip_high": 0.1}),
        ({"beta": 0.5}, {"beta": 0.5}),
    ]:
        settings = TrainSettings(max_new_tokens=4, **options)
        got, _ = update_loss(logp, old, ref, adv, mask, settings)
        want, _ = policy_loss(logp, old, ref, adv, mask, **{"beta": 0.04, **kwargs})
        default, _ = update_loss(logp, old, ref, adv, mask, TrainSettings(max_new_tokens=4))
        assert torch.allclose(got, want), options
        assert not torch.allclose(got, default), options


@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory):
    from tiny_training import tiny_training_inputs

    folder = tmp_path_factory.mktemp("model") / "tiny"
    return (folder, *tiny_training_inputs(folder))


@pytest.mark.slow
@pytest.mark.parametrize("iterations", [1, 3])
def test_iterations_are_optimiser_updates_per_generation_batch(tiny_setup, iterations):
    from accelerate import Accelerator

    from pgrpo.models import LoraSettings, add_lora, load_base_model

    folder, tokenizer, task, examples, clusters, stop_ids = tiny_setup
    torch.manual_seed(0)
    policy = add_lora(load_base_model(folder), LoraSettings(r=4, alpha=8))
    settings = TrainSettings(
        method="pgrpo", prompts_per_step=2, group_size=4, max_new_tokens=3,
        iterations=iterations, learning_rate=0.05, precision="fp32",
    )  # fmt: skip
    trainer = Trainer(policy, tokenizer, task, Accelerator(cpu=True), settings, 2, stop_ids)
    metrics = trainer.step(0, examples, clusters)
    assert metrics["advantage_abs_mean"] > 0
    adam_steps = {float(st["step"]) for st in trainer.optimizer.state.values()}
    assert adam_steps == {float(iterations)}
    # The ratio is 1 in the first update (old log-probs = the sampling policy's); later
    # updates see the moved policy against the kept old log-probs.
    if iterations == 1:
        assert metrics["ratio_mean"] == pytest.approx(1.0)
    else:
        assert metrics["ratio_mean"] != pytest.approx(1.0, abs=1e-6)


def test_a_methods_own_keys_override_the_train_section():
    """A named method trains with its advantage and its own keys over the section; the
    section's other keys, and the other methods, stay as they are."""
    config = validate_config({"train": {"learning_rate": 1e-3, "methods": {
        "dr_grpo": {"advantage": "group", "grpo_scale": "none", "learning_rate": 5e-4},
        "wide": {"advantage": "batch"}, "grpo": {"advantage": "group"},
        "pgrpo": {"advantage": "cluster"},
    }}})  # fmt: skip
    dr = TrainSettings.from_config(config, "dr_grpo")
    assert (dr.advantage, dr.grpo_scale, dr.learning_rate) == ("group", "none", 5e-4)
    wide = TrainSettings.from_config(config, "wide")
    assert (wide.advantage, wide.grpo_scale, wide.learning_rate) == ("batch", "group", 1e-3)
    pgrpo = TrainSettings.from_config(config, "pgrpo")  # the section's values
    assert (pgrpo.advantage, pgrpo.learning_rate) == ("cluster", 1e-3)


def test_batch_advantage_is_normalised_over_the_whole_step():
    """advantage: batch (Figure 1b) against a hand computation: rewards [1, 1, 0, 0 | 0, 0,
    0, 0] have mean 0.25 and unbiased std s = sqrt(1.5 / 7), so a rewarded sample gets
    0.75 / s and every other -0.25 / s; the all-zero second group gets negative advantages,
    where GRPO's group normalisation gives it zeros."""
    rewards = torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    clusters = torch.zeros(8, dtype=torch.long)
    settings = TrainSettings(method="batch_grpo", advantage="batch", group_size=4)
    got = compute_advantages(rewards, clusters, settings, new_cluster_stats(settings, 1))
    s = (sum((r - 0.25) ** 2 for r in rewards.tolist()) / 7) ** 0.5  # = sqrt(1.5 / 7)
    expected = torch.tensor([0.75, 0.75, -0.25, -0.25, -0.25, -0.25, -0.25, -0.25]) / (s + 1e-4)
    torch.testing.assert_close(got, expected)
    grpo = compute_advantages(
        rewards, clusters, TrainSettings(method="grpo", advantage="group", group_size=4), None
    )
    assert torch.count_nonzero(grpo[4:]) == 0 and (got[4:] < 0).all()


def test_worst_group_weighting_against_a_hand_computation():
    """group_weighting softmin: clusters 0 and 1 with running mean rewards 0.75 and 0.25
    (this step's rewards are their first), temperature 0.5: the worst cluster's samples
    weigh exp(0) = 1, the other's exp(-0.5 / 0.5) = e^-1, normalised to mean 1 over the
    step; every GRPO group keeps a zero mean."""
    rewards = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 0.0])  # groups of 4
    clusters = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    settings = TrainSettings(
        method="maxmin_grpo", advantage="group", group_size=4, group_weighting="softmin",
        group_weighting_temperature=0.5,
    )  # fmt: skip
    stats = new_cluster_stats(settings, 2)
    weights = worst_group_weights(rewards, clusters, stats, 0.5)
    e = math.exp(-1.0)
    expected = torch.tensor([e] * 4 + [1.0] * 4) / ((4 * e + 4) / 8)
    torch.testing.assert_close(weights, expected)
    assert stats.mean.tolist() == [0.75, 0.25]
    grpo = group_advantages(rewards, 4, "group", 1e-4)
    weighted = grpo * weights
    assert weighted.view(2, 4).sum(dim=1).abs().max() < 1e-6  # zero-mean groups stay so
    very_hot = worst_group_weights(rewards, clusters, new_cluster_stats(settings, 2), 1e6)
    torch.testing.assert_close(very_hot, torch.ones(8), atol=1e-5, rtol=0)
    very_cold = worst_group_weights(rewards, clusters, new_cluster_stats(settings, 2), 1e-3)
    torch.testing.assert_close(very_cold, torch.tensor([0.0] * 4 + [2.0] * 4))


@pytest.mark.slow
def test_the_trainer_scales_each_clusters_advantages_by_its_weight(tiny_setup):
    """Two steps of the tiny model with group_weighting softmin: the advantages the update
    used are GRPO's times the weights of the trainer's own running statistics, and the
    metrics log each present cluster's weight."""
    from accelerate import Accelerator

    from pgrpo.models import LoraSettings, add_lora, load_base_model

    folder, tokenizer, task, examples, clusters, stop_ids = tiny_setup
    torch.manual_seed(0)
    policy = add_lora(load_base_model(folder), LoraSettings(r=4, alpha=8))
    settings = TrainSettings(
        method="maxmin_grpo", advantage="group", group_weighting="softmin",
        prompts_per_step=2, group_size=4, max_new_tokens=3, learning_rate=0.05,
        precision="fp32",
    )  # fmt: skip
    trainer = Trainer(policy, tokenizer, task, Accelerator(cpu=True), settings, 2, stop_ids)
    shadow = new_cluster_stats(settings, 2)
    for step in range(2):
        metrics = trainer.step(step, examples, clusters)
        batch = trainer.last_batch
        weights = worst_group_weights(batch["rewards"], batch["clusters"], shadow, 0.1)
        grpo = group_advantages(batch["rewards"], 4, "group", 1e-4)
        torch.testing.assert_close(batch["advantages"], grpo * weights)
        for k in batch["clusters"].unique().tolist():
            first = weights[batch["clusters"] == k][0].item()
            assert metrics[f"group_weight/cluster_{k}"] == pytest.approx(first)
