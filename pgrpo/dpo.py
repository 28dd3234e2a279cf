"""GDPO as the pipeline trains it: a DPO objective on chosen/rejected pairs per preference
group, the group carried in the prompt (``objective: dpo``, :mod:`pgrpo.methods`).

Each step draws its training prompts as a GRPO step does (``prompts_per_step``, seeded, from
the training split only) and samples ``group_size`` answers to each from the **base model**
(the adapter disabled), scored by the task's reward. A prompt's best answer is its chosen
one, its worst the rejected one; a prompt whose answers all score the same gives no pair.
The policy (the LoRA adapter) then takes one AdamW step on the DPO loss of the step's pairs,

    loss = -mean log sigmoid(beta * ((log pi(c) - log ref(c)) - (log pi(r) - log ref(r)))),

log-probabilities summed over each answer's tokens, the reference being the base model, as
TRL's ``DPOTrainer`` computes its ``sigmoid`` loss (tested against it on a fixed batch).
Sampling the pairs step by step from the fixed base model is the same as sampling them all
before training, without a second pass over the data or a file of pairs.

Each step logs the number of pairs, their reward margin (chosen minus rejected reward) and the
DPO statistics (``dpo/margin``: beta times the log-ratio difference, ``dpo/accuracy``: the
share of pairs the policy ranks right). ``reward_mean`` and ``zero_std_group_fraction`` are
those of the base model's sampled answers, not of the policy: the tables and figure 2 leave
runs with ``pairs`` in their rows out of the training reward.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

from pgrpo.models import autocast
from pgrpo.rollout import Completions, PromptBatch, completion_log_probs
from pgrpo.trainer import Trainer


def dpo_loss(
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, dict]:
    """DPO's sigmoid loss over pairs, from the sequence log-probabilities [pairs] of the
    chosen and rejected answers under the policy and the reference; (loss, statistics)."""
    delta = (chosen - ref_chosen) - (rejected - ref_rejected)  # [pairs]
    loss = -F.logsigmoid(beta * delta).mean()
    stats = {"dpo/margin": (beta * delta).mean().item(),
             "dpo/accuracy": (delta > 0).float().mean().item()}  # fmt: skip
    return loss, stats


def preference_pairs(rewards: torch.Tensor, group_size: int) -> tuple[torch.Tensor, ...]:
    """Per prompt of ``rewards`` [prompts * G]: the index within its group of the best and of
    the worst answer (the first of ties), and whether they differ (a pair) [prompts]."""
    grouped = rewards.view(-1, group_size)  # [prompts, G]
    best, worst = grouped.argmax(dim=1), grouped.argmin(dim=1)
    return best, worst, grouped.max(dim=1).values > grouped.min(dim=1).values


def pair_batch(prompts: PromptBatch, completions: Completions, group_size: int,
               best: torch.Tensor, worst: torch.Tensor, keep: torch.Tensor):  # fmt: skip
    """The kept prompts and their [chosen, rejected] answers, as a batch of groups of 2."""
    rows = torch.nonzero(keep).flatten()  # prompts with a pair
    index = torch.stack([rows * group_size + best[rows], rows * group_size + worst[rows]], 1)
    index = index.flatten().to(completions.ids.device)  # [pairs * 2]: chosen, rejected, ...
    pairs = Completions(completions.ids[index], completions.mask[index])
    return PromptBatch(prompts.ids[rows], prompts.mask[rows]), pairs


def sequence_log_probs(model, prompts: PromptBatch, pairs: Completions) -> tuple[torch.Tensor, ...]:
    """Summed log-probabilities of the chosen and of the rejected answers [pairs] each."""
    per_token = completion_log_probs(model, prompts, pairs, 2)  # [pairs * 2, T], 0 if masked
    sums = (per_token * pairs.mask).sum(dim=1).view(-1, 2)
    return sums[:, 0], sums[:, 1]


class PairTrainer(Trainer):
    """GDPO's training loop: the trainer's prompts, sampling, update and checkpoints, with
    pairs of base-model answers and the DPO loss instead of advantages."""

    def step(self, step: int, examples: list[dict], cluster_of_user: dict[int, int]) -> dict:
        s, acc = self.settings, self.accelerator
        out = self.rollout(step, examples, cluster_of_user, base=True)
        timings, g = out.timings, s.group_size
        best, worst, keep = preference_pairs(out.local_rewards.cpu(), g)
        n_pairs = int(acc.reduce(keep.sum().to(acc.device), "sum").item())
        grouped = out.local_rewards.view(-1, g)
        margins = (grouped.max(1).values - grouped.min(1).values)[keep.to(acc.device)]
        margin_sum = acc.reduce(margins.sum().reshape(1), "sum").item()
        self.last_batch = {"rewards": out.rewards, "clusters": out.clusters,
                           "examples": out.batch, "pairs": keep.tolist()}  # fmt: skip
        t0 = time.perf_counter()
        stats = {"dpo/margin": 0.0, "dpo/accuracy": 0.0}
        # No pair here (other processes may have some): a zero loss that still reaches every
        # adapter weight, so that the gradient averaging sees every process.
        loss = sum(p.sum() for p in self.params) * 0.0
        if keep.any():
            prompts, pairs = pair_batch(out.prompts, out.completions, g, best, worst, keep)
            self.last_batch["pair_batch"] = (prompts, pairs)
            precision = autocast(s.precision, acc.device)
            with precision, torch.no_grad(), self.policy.disable_adapter():
                ref_chosen, ref_rejected = sequence_log_probs(self.policy, prompts, pairs)
            with precision:
                chosen, rejected = sequence_log_probs(self.policy, prompts, pairs)
            loss, stats = dpo_loss(chosen, rejected, ref_chosen, ref_rejected, s.dpo_beta)
            # A process's mean over its pairs, weighted so that the averaged gradient is the
            # mean over every process's pairs.
            loss = loss * keep.sum() * acc.num_processes / max(n_pairs, 1)
        timings["time/log_probs"] = time.perf_counter() - t0
        grad_norm = self.update(loss, step, timings) if n_pairs else 0.0
        group_std = out.rewards.view(-1, g).std(dim=1)
        return {
            "reward_mean": out.rewards.mean().item(),
            "zero_std_group_fraction": (group_std == 0).float().mean().item(),
            "parse_rate": out.parsed.mean().item(),
            "pairs": n_pairs,
            "pair_reward_margin": margin_sum / n_pairs if n_pairs else 0.0,
            "loss": acc.reduce(loss.detach().reshape(1), "mean").item(),
            **self._pair_means(stats, float(keep.sum()), n_pairs),
            "grad_norm": grad_norm,
            "learning_rate": self._learning_rate(step),
            "completion_tokens": acc.reduce(out.completions.mask.sum(), "sum").item(),
            **timings,
        }

    def _pair_means(self, stats: dict, local_pairs: float, n_pairs: int) -> dict:
        """This process's means over its pairs, as means over every process's pairs."""
        acc = self.accelerator
        return {
            k: acc.reduce(torch.tensor([v * local_pairs], device=acc.device), "sum").item()
            / max(n_pairs, 1)
            for k, v in stats.items()
        }
