"""The GRPO / P-GRPO loop: rollout -> rewards -> advantages -> clipped surrogate + KL -> AdamW.

One step, for ``prompts_per_step`` prompts split across processes:
  1. run the prompts once (with gradients) and sample G completions per prompt from that
     prefill (each prompt computed once for its group, see ``pgrpo.rollout``);
  2. score them with the task's reward;
  3. gather rewards and cluster ids from every process, so that every process computes the
     same advantages and holds the same cluster statistics;
  4. advantages: GRPO (generation group) or P-GRPO (running statistics of the user's cluster);
  5. per-token clipped surrogate + beta * k3 KL against the base model (adapter disabled);
     the policy's log-probs reuse the step-1 prefill, so no prompt is run twice by the policy.

Timings per step: time/generate (prefill + sampling), time/score, time/advantages,
time/log_probs (policy and reference passes), time/backward, time/optimizer; and the number of
completion tokens sampled (completion_tokens).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from types import SimpleNamespace

import numpy as np
import torch

from pgrpo import sharding
from pgrpo.advantages import (
    ClusterRewardStats,
    batch_advantages,
    group_advantages,
    pgrpo_advantages,
    worst_group_weights,
)
from pgrpo.loss import policy_loss
from pgrpo.models import autocast
from pgrpo.rollout import completion_log_probs, encode_prompts, generate, prefill
from pgrpo.settings import TrainSettings, step_examples


def new_cluster_stats(settings: TrainSettings, num_clusters: int) -> ClusterRewardStats:
    """Empty running statistics with the configured forgetting and std estimator."""
    return ClusterRewardStats(num_clusters, settings.decay, settings.std == "unbiased")


def compute_advantages(
    rewards: torch.Tensor,
    cluster_ids: torch.Tensor,
    settings: TrainSettings,
    cluster_stats: ClusterRewardStats,
) -> torch.Tensor:
    """Advantages of the global batch [prompts * G] for the method's ``advantage``."""
    s = settings
    if s.advantage == "group":
        return group_advantages(
            rewards, s.group_size, s.grpo_scale, s.advantage_eps, unbiased=s.std == "unbiased"
        )
    if s.advantage == "batch":
        return batch_advantages(rewards, s.advantage_eps, unbiased=s.std == "unbiased")
    return pgrpo_advantages(
        rewards, cluster_ids, cluster_stats, s.group_size, s.advantage_eps,
        order=s.pgrpo_order, warmup_min_count=s.warmup_min_count,
    )  # fmt: skip


def update_loss(logp, old_logp, ref_logp, advantages, mask, settings: TrainSettings):
    """The configured GRPO objective of one update: (loss, stats), see ``policy_loss``."""
    s = settings
    return policy_loss(
        logp, old_logp, ref_logp, advantages, mask, beta=s.beta, clip_low=s.clip_eps,
        clip_high=s.clip_eps if s.clip_eps_high is None else s.clip_eps_high,
        mode=s.loss_aggregation, max_completion_length=s.max_new_tokens,
    )  # fmt: skip


class Trainer:
    """Runs GRPO or P-GRPO on one task; every process holds identical cluster statistics."""

    def __init__(self, policy, tokenizer, task, accelerator, settings, num_clusters, stop_ids):
        self.settings = settings
        self.task = task
        self.tokenizer = tokenizer
        self.accelerator = accelerator
        self.stop_ids = stop_ids
        self.num_clusters = num_clusters
        self.cluster_stats = new_cluster_stats(settings, num_clusters)
        # The per-cluster mean rewards group_weighting reads (their own statistics: P-GRPO's
        # are updated by its advantages, in its own order).
        self.weighting_stats = new_cluster_stats(settings, num_clusters)
        self.last_batch: dict[str, torch.Tensor] = {}  # the global batch of the last step
        self._strata_of: tuple = (None, None)  # (examples, their right positions), see _strata
        world = accelerator.num_processes
        if settings.prompts_per_step % world:
            raise ValueError(
                f"train.prompts_per_step={settings.prompts_per_step} is not divisible by "
                f"the {world} processes"
            )
        # No DDP wrapper: a step runs the model several times before one backward (shared
        # prompt cache), so gradients are averaged across processes explicitly instead;
        # sharded (FSDP2), FSDP reduce-scatters them itself.
        sharding.broadcast_trainable(policy, accelerator)
        self.sharded = sharding.wants_sharding(accelerator, settings.sharding)
        if self.sharded:
            self.policy = sharding.shard(policy, accelerator)
        else:
            self.policy = policy.to(accelerator.device)
        self.params = [p for p in policy.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=settings.learning_rate)

    def _generators(self, step: int) -> list[torch.Generator]:
        """One sampling generator per local prompt, seeded by (seed, step, global prompt
        index): the answers to a prompt do not depend on the number of processes."""
        first = self.accelerator.process_index * self._local_count()
        generators = []
        for index in range(first, first + self._local_count()):
            seed = np.random.SeedSequence([self.settings.seed, step, index]).generate_state(1)
            generators.append(torch.Generator(self.accelerator.device).manual_seed(int(seed[0])))
        return generators

    def _local_count(self) -> int:
        return self.settings.prompts_per_step // self.accelerator.num_processes

    def _strata(self, examples: list[dict]) -> list | None:
        """Each training example's right position (multiple choice), computed once."""
        if self._strata_of[0] is not examples:
            options = [self.task.options(e) for e in examples]
            strata = [o[1] for o in options] if all(o is not None for o in options) else None
            self._strata_of = (examples, strata)
        return self._strata_of[1]

    def _learning_rate(self, step: int) -> float:
        """The configured rate, ramped linearly over the first ``warmup_steps`` steps (step 0
        at 1 / warmup_steps of it); a function of the step, so a resumed run gets it too."""
        s = self.settings
        return s.learning_rate * min(1.0, (step + 1) / s.warmup_steps if s.warmup_steps else 1.0)

    def _local_slice(self, items: list) -> list:
        world, rank = self.accelerator.num_processes, self.accelerator.process_index
        n = len(items) // world
        return items[rank * n : (rank + 1) * n]

    def rollout(self, step: int, examples: list[dict], cluster_of_user: dict[int, int],
                base: bool = False) -> SimpleNamespace:  # fmt: skip
        """The step's prompts (this process's share), ``group_size`` sampled answers to each
        and the rewards of the global batch. The policy samples (``base``: the base model,
        adapter disabled, without gradients); the policy's prompt pass is kept, with its
        gradients, for the first update (the sampling policy is the policy of that update)."""
        s, acc = self.settings, self.accelerator
        model = self.policy
        batch = self._local_slice(step_examples(examples, s, step, self._strata(examples)))
        prompts = encode_prompts(self.tokenizer, [self.task.messages(e) for e in batch], acc.device)
        t0 = time.perf_counter()
        model.train()
        precision = autocast(s.precision, acc.device)
        base_model = model.disable_adapter() if base else contextlib.nullcontext()
        with precision, base_model, torch.no_grad() if base else contextlib.nullcontext():
            prefilled = prefill(model, prompts)
            completions = generate(
                model, prompts, s.group_size, s.max_new_tokens, self.stop_ids,
                self.tokenizer.pad_token_id, s.temperature, generator=self._generators(step),
                prefilled=prefilled,
            )  # fmt: skip
        timings = {"time/generate": time.perf_counter() - t0}

        t0 = time.perf_counter()
        texts = self.tokenizer.batch_decode(
            completions.ids * completions.mask, skip_special_tokens=True
        )
        scored = self.task.checked_scores(texts, _repeat(batch, s.group_size))
        dev = acc.device
        local_rewards = torch.tensor([r for r, _ in scored], dtype=torch.float32, device=dev)
        local_parsed = torch.tensor([p for _, p in scored], dtype=torch.float32, device=dev)
        local_clusters = torch.tensor(
            [cluster_of_user[e["user_id"]] for e in _repeat(batch, s.group_size)], device=dev
        )
        timings["time/score"] = time.perf_counter() - t0
        return SimpleNamespace(
            batch=batch, prompts=prompts, completions=completions, timings=timings,
            prefilled=None if base else prefilled, local_rewards=local_rewards,
            rewards=acc.gather(local_rewards).cpu(),  # [prompts * G], the global batch's order
            clusters=acc.gather(local_clusters).cpu(), parsed=acc.gather(local_parsed).cpu(),
        )  # fmt: skip

    def update(self, loss: torch.Tensor, step: int, timings: dict) -> float:
        """Backward, gradients averaged over processes, clipped; one AdamW step at the step's
        learning rate. Returns the gradient norm before clipping."""
        t0 = time.perf_counter()
        loss.backward()
        self._average_gradients()
        timings["time/backward"] = timings.get("time/backward", 0.0) + time.perf_counter() - t0
        t0 = time.perf_counter()
        norm = self._clip_gradients()
        for group in self.optimizer.param_groups:
            group["lr"] = self._learning_rate(step)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        timings["time/optimizer"] = timings.get("time/optimizer", 0.0) + time.perf_counter() - t0
        return norm

    def step(self, step: int, examples: list[dict], cluster_of_user: dict[int, int]) -> dict:
        """One optimisation step; returns its metrics (identical on every process)."""
        s, acc = self.settings, self.accelerator
        model = self.policy
        out = self.rollout(step, examples, cluster_of_user)
        prompts, completions, timings = out.prompts, out.completions, out.timings
        rewards, clusters, prefilled = out.rewards, out.clusters, out.prefilled
        precision = autocast(s.precision, acc.device)

        t0 = time.perf_counter()
        advantages_all = compute_advantages(rewards, clusters, s, self.cluster_stats)
        weights = None
        if s.group_weighting == "softmin":
            weights = worst_group_weights(
                rewards, clusters, self.weighting_stats, s.group_weighting_temperature
            )
            advantages_all = advantages_all * weights
        n_local = out.local_rewards.shape[0]
        start = acc.process_index * n_local
        advantages = advantages_all[start : start + n_local].to(acc.device)
        timings["time/advantages"] = time.perf_counter() - t0
        self.last_batch = {"rewards": rewards, "clusters": clusters, "advantages": advantages_all}

        t0 = time.perf_counter()
        ref_logp = None
        if s.beta > 0:
            with precision, torch.no_grad(), model.disable_adapter():
                ref_logp = completion_log_probs(model, prompts, completions, s.group_size)
        mask = completions.mask.float()
        timings["time/log_probs"] = time.perf_counter() - t0
        timings["time/backward"] = timings["time/optimizer"] = 0.0
        old_logp, losses, stats, grad_norms = None, [], [], []
        for _ in range(s.iterations):
            t0 = time.perf_counter()
            with precision:
                logp = completion_log_probs(model, prompts, completions, s.group_size, prefilled)
            prefilled = None  # later updates (new weights) run the prompts again
            if old_logp is None:
                old_logp = logp.detach()  # the sampling policy's log-probs, kept
            loss, update_stats = update_loss(logp, old_logp, ref_logp, advantages, mask, s)
            timings["time/log_probs"] += time.perf_counter() - t0
            grad_norms.append(self.update(loss, step, timings))
            losses.append(loss.detach())
            stats.append(update_stats)

        loss = torch.stack(losses).mean()  # means over the iterations of this batch
        stats = {k: float(np.mean([st[k] for st in stats])) for k in stats[0]}
        stats["grad_norm"] = float(np.mean(grad_norms))
        stats["learning_rate"] = self._learning_rate(step)
        timings["completion_tokens"] = acc.reduce(completions.mask.sum(), "sum").item()
        metrics = self._metrics(rewards, clusters, out.parsed, advantages_all, loss, stats,
                                timings)  # fmt: skip
        if weights is not None:
            for k in clusters.unique().tolist():
                metrics[f"group_weight/cluster_{k}"] = weights[clusters == k][0].item()
        return metrics

    def _average_gradients(self) -> None:
        """Mean of the adapter gradients over processes (equal local batch sizes)."""
        if self.accelerator.num_processes == 1 or self.sharded:
            return
        for p in self.params:
            if p.grad is not None:
                p.grad = self.accelerator.reduce(p.grad, "mean")

    def _clip_gradients(self) -> float:
        """The adapter's gradient norm before clipping to ``max_grad_norm`` (when set)."""
        limit = self.settings.max_grad_norm
        norm = torch.nn.utils.clip_grad_norm_(self.params, limit if limit else float("inf"))
        return float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)

    def _metrics(self, rewards, clusters, parsed, advantages, loss, stats, timings) -> dict:
        g = self.settings.group_size
        group_std = rewards.view(-1, g).std(dim=1)
        metrics = {
            "reward_mean": rewards.mean().item(),
            "loss": self.accelerator.reduce(loss.detach(), "mean").item(),
            "kl": stats["kl"],
            "clip_fraction": stats["clip_fraction"],
            "ratio_mean": stats["ratio_mean"],
            "grad_norm": stats["grad_norm"],
            "learning_rate": stats["learning_rate"],
            "zero_std_group_fraction": (group_std == 0).float().mean().item(),
            "parse_rate": parsed.mean().item(),
            "advantage_abs_mean": advantages.abs().mean().item(),
            **timings,
        }
        for k in range(self.num_clusters):
            in_k = clusters == k
            if in_k.any():
                metrics[f"reward_mean/cluster_{k}"] = rewards[in_k].mean().item()
                metrics[f"advantage_mean/cluster_{k}"] = advantages[in_k].mean().item()
        return metrics

    def train(
        self, examples, cluster_of_user, on_step: Callable[[int, dict], None], start: int = 0
    ) -> None:
        """Run steps ``start`` .. ``settings.steps - 1``, calling ``on_step(step, metrics)``."""
        for step in range(start, self.settings.steps):
            on_step(step, self.step(step, examples, cluster_of_user))

    def state_dict(self, next_step: int) -> dict:
        """Everything a resumed run needs: adapter, optimiser, cluster statistics, next step.

        Sampling needs no state: its generators are seeded by (seed, step, prompt). Full
        tensors: collective (every process calls it) when the model is sharded.
        """
        optimizer = (
            sharding.full_optimizer_state(self.policy, self.optimizer)
            if self.sharded
            else self.optimizer.state_dict()
        )
        return {
            "next_step": next_step,
            "adapter": sharding.full_trainable_state(self.policy),
            "optimizer": optimizer,
            "cluster_stats": self.cluster_stats.state_dict(),
            "weighting_stats": self.weighting_stats.state_dict(),
            "method": self.settings.method,
            "sharded": self.sharded,
        }

    def load_state_dict(self, state: dict) -> int:
        """Restore :meth:`state_dict`; returns the step to continue from."""
        if state["method"] != self.settings.method:
            raise ValueError(
                f"checkpoint is of method {state['method']!r}, not {self.settings.method!r}"
            )
        sharding.load_trainable_state(self.policy, state["adapter"])
        if self.sharded:
            sharding.load_optimizer_state(self.policy, self.optimizer, state["optimizer"])
        else:
            self.optimizer.load_state_dict(state["optimizer"])
        self.cluster_stats.load_state_dict(state["cluster_stats"])
        if "weighting_stats" in state:  # checkpoints of before group_weighting hold none
            self.weighting_stats.load_state_dict(state["weighting_stats"])
        return int(state["next_step"])


def _repeat(items: list, times: int) -> list:
    """[a, b] -> [a, a, b, b] for times=2 (a prompt's G completions are consecutive)."""
    return [item for item in items for _ in range(times)]
