"""Controls against letter drift and noisy updates: balanced steps, gradient clipping,
learning-rate warm-up, and the per-cluster advantage logged each step."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pgrpo.io import PgrpoError
from pgrpo.settings import TrainSettings, step_examples
from pgrpo.trainer import Trainer

EXAMPLES = [{"i": i} for i in range(400)]
# Unbalanced right positions, as in a real training split: position 0 is right 40% of the time.
STRATA = np.random.default_rng(1).choice(4, size=400, p=[0.4, 0.3, 0.2, 0.1]).tolist()


@pytest.mark.parametrize("n", [4, 6, 8, 13])
def test_balanced_steps_spread_the_right_positions_evenly(n):
    settings = TrainSettings(prompts_per_step=n, seed=3)
    seen = set()
    for step in range(30):
        picked = step_examples(EXAMPLES, settings, step, STRATA)
        ids = [e["i"] for e in picked]
        assert len(set(ids)) == n
        counts = np.bincount([STRATA[i] for i in ids], minlength=4)
        assert counts.max() - counts.min() <= 1, (step, counts)
        assert picked == step_examples(EXAMPLES, settings, step, STRATA)  # reproducible
        seen.add(tuple(ids))
    assert len(seen) == 30
    # Not sorted by position: a process's slice of the step is not one letter.
    firsts = {STRATA[step_examples(EXAMPLES, settings, s, STRATA)[0]["i"]] for s in range(30)}
    assert len(firsts) == 4


def test_unbalanced_draw_is_the_plain_seeded_draw():
    for settings in (
        TrainSettings(prompts_per_step=8, balanced_steps=False),
        TrainSettings(prompts_per_step=8),
    ):
        strata = STRATA if not settings.balanced_steps else None
        rng = np.random.default_rng([settings.seed, 5])
        plain = [EXAMPLES[i] for i in rng.choice(400, size=8, replace=False)]
        assert step_examples(EXAMPLES, settings, 5, strata) == plain


def test_a_position_with_too_few_examples_is_named():
    settings = TrainSettings(prompts_per_step=8)
    with pytest.raises(PgrpoError, match="right position 1 needed per step, only 1"):
        step_examples(EXAMPLES[:5], settings, 0, [0, 0, 0, 0, 1])


class _Probe:
    """Just enough of a Trainer for its clipping and learning-rate methods."""

    def __init__(self, settings, grads):
        self.settings = settings
        self.params = [torch.nn.Parameter(torch.zeros_like(g)) for g in grads]
        for p, g in zip(self.params, grads, strict=True):
            p.grad = g.clone()


@pytest.mark.parametrize("limit", [None, 0.5, 100.0])
def test_gradient_clipping_reports_the_norm_before_and_bounds_it_after(limit):
    grads = [torch.full((3, 4), 0.5), torch.full((5,), -1.0)]
    norm = float(torch.cat([g.flatten() for g in grads]).norm())  # sqrt(3 + 5) = 2.83
    probe = _Probe(TrainSettings(max_grad_norm=limit), grads)
    assert Trainer._clip_gradients(probe) == pytest.approx(norm, rel=1e-6)
    after = float(torch.cat([p.grad.flatten() for p in probe.params]).norm())
    assert after == pytest.approx(min(norm, limit or np.inf), rel=1e-5)


def test_warm_up_ramps_the_learning_rate_linearly_then_holds_it():
    probe = _Probe(TrainSettings(learning_rate=1e-3, warmup_steps=4), [])
    rates = [Trainer._learning_rate(probe, step) for step in range(7)]
    assert rates == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3, 1e-3])
    probe.settings = TrainSettings(learning_rate=1e-3)
    assert Trainer._learning_rate(probe, 0) == 1e-3


@pytest.mark.slow
def test_a_step_logs_its_rate_gradient_norm_and_advantage_per_cluster(tmp_path):
    from accelerate import Accelerator
    from tiny_training import tiny_training_inputs

    from pgrpo.models import LoraSettings, add_lora, load_base_model

    folder = tmp_path / "tiny"
    tokenizer, task, examples, clusters, stop_ids = tiny_training_inputs(folder)
    torch.manual_seed(0)
    policy = add_lora(load_base_model(folder), LoraSettings(r=4, alpha=8))
    settings = TrainSettings(
        method="pgrpo", prompts_per_step=2, group_size=4, max_new_tokens=3, learning_rate=0.05,
        precision="fp32", warmup_steps=10, max_grad_norm=1e-3,
    )  # fmt: skip
    trainer = Trainer(policy, tokenizer, task, Accelerator(cpu=True), settings, 2, stop_ids)
    metrics = trainer.step(0, examples, clusters)
    assert metrics["learning_rate"] == pytest.approx(0.005)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.005)
    assert metrics["grad_norm"] > 1e-3  # measured before clipping
    batch = trainer.last_batch
    for k in range(2):
        in_k = batch["clusters"] == k
        if in_k.any():
            expected = batch["advantages"][in_k].mean().item()
            assert metrics[f"advantage_mean/cluster_{k}"] == pytest.approx(expected)
