"""What one training run trains with (config section ``train``, with the method's own keys,
:mod:`pgrpo.methods`) and which prompts each of its steps draws."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch

from pgrpo.io import PgrpoError
from pgrpo.methods import method_train


@dataclass
class TrainSettings:
    """Hyperparameters of one training run (config section ``train``)."""

    method: str = "pgrpo"  # the name in train.methods (run, checkpoint and MLflow tag)
    advantage: str = "cluster"  # group (GRPO), batch (Figure 1b), cluster (P-GRPO)
    steps: int = 100
    prompts_per_step: int = 4
    group_size: int = 16
    max_new_tokens: int = 4
    temperature: float = 1.0
    learning_rate: float = 3e-4
    warmup_steps: int = 0  # linear learning-rate warm-up over the first steps
    max_grad_norm: float | None = 1.0  # clip the adapter's gradient norm (None: never)
    balanced_steps: bool = True  # multiple choice: each step's right positions even
    beta: float = 0.04
    clip_eps: float = 0.2
    clip_eps_high: float | None = None  # None: clip_eps
    iterations: int = 1
    loss_aggregation: str = "grpo"
    grpo_scale: str = "group"
    std: str = "unbiased"
    pgrpo_order: str = "after"
    warmup_min_count: int = 2
    decay: float = 1.0
    advantage_eps: float = 1e-4
    group_in_prompt: bool = False  # the user's cluster named in the prompt (pgrpo.train)
    objective: str = "grpo"  # dpo: pairs of base-model answers, DPO loss (pgrpo.dpo)
    dpo_beta: float = 0.1
    group_weighting: str = "none"  # softmin: weight clusters toward the worst (MaxMin)
    group_weighting_temperature: float = 0.1
    log_every: int = 1
    seed: int = 0
    precision: str = "bf16"
    sharding: str | None = None  # launch.sharding: "fsdp" shards the model (pgrpo.sharding)

    @classmethod
    def from_config(cls, config: dict, method: str) -> TrainSettings:
        train = method_train(config["train"], method)
        fields = {k: train[k] for k in cls.__dataclass_fields__ if k in train}
        return cls(
            **fields, method=method, seed=config["seed"], precision=config["model"]["precision"],
            sharding=config["launch"]["sharding"],
        )  # fmt: skip


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def step_examples(
    examples: list[dict], settings: TrainSettings, step: int, strata: list | None = None
) -> list[dict]:
    """The prompts of one global step: a seeded draw without replacement, same on every process.

    With ``strata`` (a multiple-choice task's right positions) and ``balanced_steps``, the
    draw is stratified: each position is right for ``n // k`` prompts of the step (the
    remainder goes to positions drawn at random), then the prompts are shuffled. A step whose
    prompts share a right letter pushes the whole policy toward that letter; balanced steps
    cancel that push within the step instead of leaving it to chance.
    """
    rng = np.random.default_rng([settings.seed, step])
    n = settings.prompts_per_step
    if strata is None or not settings.balanced_steps:
        picks = rng.choice(len(examples), size=n, replace=False)
        return [examples[i] for i in picks]
    strata = np.asarray(strata)
    levels = np.unique(strata)
    counts = np.full(len(levels), n // len(levels))
    counts[rng.choice(len(levels), size=n % len(levels), replace=False)] += 1
    picks = []
    for level, count in zip(levels, counts, strict=True):
        pool = np.flatnonzero(strata == level)
        if len(pool) < count:
            raise PgrpoError(
                f"train.balanced_steps: {count} prompts with right position {level} needed per "
                f"step, only {len(pool)} in the training split"
            )
        picks += rng.choice(pool, size=count, replace=False).tolist()
    return [examples[i] for i in rng.permutation(picks)]
