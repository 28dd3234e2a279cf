"""Advantage estimators: GRPO group normalisation and P-GRPO cluster normalisation.

Equations (docs/method.md, section 1):

* GRPO (group)   : A_i = (R_i - mean(R_group)) / (std(R_group) + eps)
* P-GRPO (cluster): A_i = (R_i - mu_p) / (sigma_p + eps), with (n_p, mu_p, M2_p) the running
  Welford statistics of the preference cluster p of the user who asked prompt i.
* Corollary 3.1   : A~_i = (sigma_G / sigma_p) * A^_i + (mu_G - mu_p) / sigma_p   (eps = 0)

Pure tensor code: imports only torch, math and typing.
"""

from __future__ import annotations

import math
from typing import Any

import torch

GROUP_SCALES = ("group", "batch", "none")
PGRPO_ORDERS = ("after", "before")


def _group_view(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """Reshape a flat reward vector [N] into [N // group_size, group_size], validating it."""
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be 1-D, got shape {tuple(rewards.shape)}")
    if group_size < 1 or rewards.numel() % group_size != 0:
        raise ValueError(
            f"number of rewards ({rewards.numel()}) must be a positive multiple of "
            f"group_size ({group_size})"
        )
    return rewards.view(-1, group_size)  # [num_groups, G]


def group_advantages(
    rewards: torch.Tensor,
    group_size: int,
    scale: str = "group",
    eps: float = 1e-4,
    unbiased: bool = True,
) -> torch.Tensor:
    """GRPO advantage A^_i = (R_i - mean(R_group)) / (std + eps).

    `rewards` [N] holds consecutive generation groups of `group_size` completions each.
    scale="group": std of the generation group (DeepSeekMath GRPO);
    scale="batch": std of the whole batch (the group mean is still subtracted);
    scale="none" : no division at all, A = R - mean(R_group) (Dr. GRPO).
    std is the unbiased sample std (torch.std), or the population std with unbiased=False.
    Returns [N] in rewards' dtype.
    """
    if scale not in GROUP_SCALES:
        raise ValueError(f"scale must be one of {GROUP_SCALES}, got {scale!r}")
    grouped = _group_view(rewards, group_size)  # [num_groups, G]
    centred = grouped - grouped.mean(dim=1, keepdim=True)  # [num_groups, G]
    correction = 1 if unbiased else 0
    if scale == "group":
        centred = centred / (grouped.std(dim=1, keepdim=True, correction=correction) + eps)
    elif scale == "batch":
        centred = centred / (rewards.std(correction=correction) + eps)
    return centred.reshape(-1).to(rewards.dtype)  # [N]


def batch_advantages(
    rewards: torch.Tensor, eps: float = 1e-4, unbiased: bool = True
) -> torch.Tensor:
    """Batch-normalised advantage A_i = (R_i - mean(R)) / (std(R) + eps) over the whole batch
    [N] of every prompt of the step: the paper's Figure 1(b), where a minority cluster whose
    rewards sit below the batch mean receives negative advantages on every sample. Returns
    [N] in rewards' dtype."""
    correction = 1 if unbiased else 0
    centred = rewards - rewards.mean()
    return (centred / (rewards.std(correction=correction) + eps)).to(rewards.dtype)


def worst_group_weights(
    rewards: torch.Tensor, cluster_ids: torch.Tensor, stats: ClusterRewardStats, temperature: float
) -> torch.Tensor:
    """Soft worst-group weights [N] of a step's samples: fold the step's rewards into the
    running per-cluster statistics ``stats`` (their mean reward mu_c), then weight each
    sample of cluster c by exp(-(mu_c - min mu) / temperature), normalised so that the
    weights average 1 over the step's samples (the minimum runs over the clusters in the
    step). As temperature -> 0 only the worst cluster of the step is trained (MaxMin-RLHF,
    Chakraborty et al. 2024: maximise the worst group's reward); as it grows every weight
    tends to 1 (no weighting). [N] float32 on rewards' device."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    stats.update(rewards, cluster_ids)
    ids = cluster_ids.detach().to("cpu", torch.long)  # [N]
    mu = stats.mean[ids]  # [N] float64, every sample's cluster mean reward
    weights = torch.exp(-(mu - mu.min()) / temperature)  # [N], the worst cluster's are 1
    return (weights / weights.mean()).to(device=rewards.device, dtype=torch.float32)


def _batch_cluster_moments(
    rewards: torch.Tensor, cluster_ids: torch.Tensor, num_clusters: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-cluster count, mean and M2 (sum of squared deviations) of one batch, float64.

    rewards [N] float64, cluster_ids [N] long -> three [K] tensors; empty clusters get zeros.
    """
    count = torch.zeros(num_clusters, dtype=torch.float64)  # [K]
    count.index_add_(0, cluster_ids, torch.ones_like(rewards))
    total = torch.zeros(num_clusters, dtype=torch.float64).index_add_(0, cluster_ids, rewards)
    mean = torch.where(count > 0, total / count.clamp(min=1.0), torch.zeros_like(total))  # [K]
    sq_dev = (rewards - mean[cluster_ids]) ** 2  # [N]
    m2 = torch.zeros(num_clusters, dtype=torch.float64).index_add_(0, cluster_ids, sq_dev)
    return count, mean, m2


def chan_merge(
    count_a: torch.Tensor,
    mean_a: torch.Tensor,
    m2_a: torch.Tensor,
    count_b: torch.Tensor,
    mean_b: torch.Tensor,
    m2_b: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Chan et al. parallel merge of two sets of (count, mean, M2), elementwise over [K].

        n = n_a + n_b;  delta = mu_b - mu_a
        mu = mu_a + delta * n_b / n;  M2 = M2_a + M2_b + delta^2 * n_a * n_b / n
    Clusters with n = 0 keep count = mean = M2 = 0. Counts may be fractional (decay).
    """
    count = count_a + count_b  # [K]
    safe = count.clamp(min=torch.finfo(count.dtype).tiny)  # [K], avoids 0/0
    delta = mean_b - mean_a  # [K]
    nonempty = count > 0
    mean = torch.where(nonempty, mean_a + delta * count_b / safe, torch.zeros_like(mean_a))
    m2 = torch.where(
        nonempty, m2_a + m2_b + delta**2 * count_a * count_b / safe, torch.zeros_like(m2_a)
    )
    return count, mean, m2


class ClusterRewardStats:
    """Running reward statistics per preference cluster (Welford / Chan), float64 on CPU.

    Attributes: count [K], mean [K], m2 [K] (sum of squared deviations). With decay < 1 the
    existing count and m2 are multiplied by `decay` before each batch is merged, which makes
    mean/m2/count the exponentially weighted statistics with weight decay**(number of later
    batches) per reward; decay = 1 is pure Welford (the paper). ``unbiased``: sigma_p is
    sqrt(M2 / (n - 1)) (default) or the population sqrt(M2 / n).
    """

    def __init__(self, num_clusters: int, decay: float = 1.0, unbiased: bool = True) -> None:
        if int(num_clusters) < 1:
            raise ValueError(f"num_clusters must be >= 1, got {num_clusters}")
        if not (0.0 < float(decay) <= 1.0) or math.isnan(float(decay)):
            raise ValueError(f"decay must be in (0, 1], got {decay}")
        self.num_clusters = int(num_clusters)
        self.decay = float(decay)
        self.unbiased = bool(unbiased)
        self.count = torch.zeros(self.num_clusters, dtype=torch.float64)  # [K]
        self.mean = torch.zeros(self.num_clusters, dtype=torch.float64)  # [K]
        self.m2 = torch.zeros(self.num_clusters, dtype=torch.float64)  # [K]

    @property
    def std(self) -> torch.Tensor:
        """sigma_p per cluster [K]: sqrt(M2 / (n - 1)), or sqrt(M2 / n) when not unbiased;
        NaN where n < 2."""
        denominator = self.count - 1.0 if self.unbiased else self.count
        var = self.m2 / denominator.clamp(min=1e-300)
        return torch.where(self.count >= 2, var.clamp(min=0.0).sqrt(), torch.nan)

    def _check_inputs(
        self, rewards: torch.Tensor, cluster_ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Validate and move inputs to CPU: rewards [N] float64, cluster_ids [N] long."""
        if rewards.dim() != 1 or cluster_ids.dim() != 1:
            raise ValueError("rewards and cluster_ids must be 1-D")
        if rewards.numel() != cluster_ids.numel():
            raise ValueError(
                f"rewards ({rewards.numel()}) and cluster_ids ({cluster_ids.numel()}) differ "
                "in length"
            )
        if cluster_ids.is_floating_point() or cluster_ids.is_complex():
            raise ValueError("cluster_ids must be an integer tensor")
        ids = cluster_ids.detach().to("cpu", torch.long)  # [N]
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.num_clusters):
            raise ValueError(f"cluster ids must lie in [0, {self.num_clusters})")
        return rewards.detach().to("cpu", torch.float64), ids

    def update(self, rewards: torch.Tensor, cluster_ids: torch.Tensor) -> None:
        """Fold one batch into the running statistics (vectorised Chan merge)."""
        r, ids = self._check_inputs(rewards, cluster_ids)  # [N], [N]
        b_count, b_mean, b_m2 = _batch_cluster_moments(r, ids, self.num_clusters)  # [K] x3
        count, m2 = self.count * self.decay, self.m2 * self.decay  # forgetting
        self.count, self.mean, self.m2 = chan_merge(count, self.mean, m2, b_count, b_mean, b_m2)

    def advantages(
        self, rewards: torch.Tensor, cluster_ids: torch.Tensor, eps: float = 1e-4
    ) -> torch.Tensor:
        """P-GRPO advantage (R_i - mu_p) / (sigma_p + eps), [N] in rewards' dtype/device.

        Samples whose cluster has n < 2 get NaN (use `pgrpo_advantages` for the fallback).
        """
        r, ids = self._check_inputs(rewards, cluster_ids)  # [N], [N]
        adv = (r - self.mean[ids]) / (self.std[ids] + eps)  # [N] float64
        return adv.to(device=rewards.device, dtype=rewards.dtype)

    def merge(self, other: ClusterRewardStats) -> None:
        """Merge statistics computed elsewhere (e.g. another process) into self (Chan)."""
        if other.num_clusters != self.num_clusters:
            raise ValueError(
                f"cannot merge stats with {other.num_clusters} clusters into {self.num_clusters}"
            )
        self.count, self.mean, self.m2 = chan_merge(
            self.count, self.mean, self.m2, other.count, other.mean, other.m2
        )

    def state_dict(self) -> dict[str, Any]:
        """Plain dict: count/mean/m2 tensors (copies) plus num_clusters, decay, unbiased."""
        return {
            "count": self.count.clone(),
            "mean": self.mean.clone(),
            "m2": self.m2.clone(),
            "num_clusters": self.num_clusters,
            "decay": self.decay,
            "unbiased": self.unbiased,
        }

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        """Restore from `state_dict()`; the number of clusters must match."""
        k = int(sd["num_clusters"])
        if k != self.num_clusters:
            raise ValueError(f"state dict has {k} clusters, this object has {self.num_clusters}")
        for name in ("count", "mean", "m2"):
            value = torch.as_tensor(sd[name], dtype=torch.float64).detach().to("cpu").clone()
            if value.shape != (k,):
                raise ValueError(f"{name} has shape {tuple(value.shape)}, expected ({k},)")
            setattr(self, name, value)
        self.decay = float(sd.get("decay", self.decay))
        self.unbiased = bool(sd.get("unbiased", self.unbiased))

    def __repr__(self) -> str:
        return (
            f"ClusterRewardStats(num_clusters={self.num_clusters}, decay={self.decay}, "
            f"total_count={float(self.count.sum()):g})"
        )


def pgrpo_advantages(
    rewards: torch.Tensor,
    cluster_ids: torch.Tensor,
    stats: ClusterRewardStats,
    group_size: int,
    eps: float = 1e-4,
    order: str = "after",
    warmup_min_count: int = 2,
) -> torch.Tensor:
    """P-GRPO advantage step of the trainer, A~_i = (R_i - mu_p) / (sigma_p + eps), [N].

    order="after" (default): update `stats` with this batch, then normalise; samples whose
    cluster still has n < 2 fall back to the GRPO group advantage.
    order="before": normalise with the history only, falling back to the GRPO group
    advantage where n < max(warmup_min_count, 2); then update `stats`.
    The fallback uses the same std estimator as `stats` (unbiased or population).
    """
    if order not in PGRPO_ORDERS:
        raise ValueError(f"order must be one of {PGRPO_ORDERS}, got {order!r}")
    grpo = group_advantages(rewards, group_size, "group", eps, unbiased=stats.unbiased)  # [N]
    min_count = 2.0
    if order == "after":
        stats.update(rewards, cluster_ids)
    else:
        min_count = max(float(warmup_min_count), 2.0)
    cluster_adv = stats.advantages(rewards, cluster_ids, eps=eps)  # [N], validates the ids
    ids = cluster_ids.detach().to("cpu", torch.long)  # [N]
    ready = (stats.count[ids] >= min_count).to(rewards.device)  # [N] bool
    adv = torch.where(ready, cluster_adv, grpo)  # [N]
    if order == "before":
        stats.update(rewards, cluster_ids)
    return adv


def corollary_decomposition(
    rewards: torch.Tensor,
    group_size: int,
    cluster_mean: torch.Tensor,
    cluster_std: torch.Tensor,
    unbiased: bool = True,
) -> torch.Tensor:
    """Corollary 3.1: (sigma_G / sigma_p) * A^_i + (mu_G - mu_p) / sigma_p, with eps = 0.

    rewards [N] in generation groups of `group_size`; cluster_mean/cluster_std [N] are the
    cluster statistics mu_p, sigma_p of each sample. A^ is the GRPO group advantage with
    eps = 0; in a group with sigma_G = 0 the first term is taken as its limit, 0.
    Equals (R_i - mu_p) / sigma_p exactly, whichever std estimator sigma_G uses.
    """
    grouped = _group_view(rewards, group_size)  # [num_groups, G]
    correction = 1 if unbiased else 0
    mu_g = grouped.mean(dim=1, keepdim=True).expand_as(grouped).reshape(-1)  # [N]
    sigma_g = grouped.std(dim=1, keepdim=True, correction=correction)  # [num_groups, 1]
    sigma_g = sigma_g.expand_as(grouped).reshape(-1)  # [N]
    a_hat = group_advantages(rewards, group_size, "group", 0.0, unbiased=unbiased)  # [N]
    scaled = torch.where(sigma_g > 0, sigma_g / cluster_std * a_hat, torch.zeros_like(a_hat))
    return scaled + (mu_g - cluster_mean) / cluster_std  # [N]


def cluster_statistics(stats) -> dict:
    """The final P-GRPO statistics per cluster (count, mean, sigma_p; null sigma below two
    rewards), the MLflow artifact ``cluster_stats.json`` of a training run."""
    rows = zip(stats.count.tolist(), stats.mean.tolist(), stats.std.tolist(), strict=True)
    return {
        "num_clusters": stats.num_clusters,
        "decay": stats.decay,
        "unbiased": stats.unbiased,
        "clusters": [
            {"cluster": k, "count": c, "mean": m, "std": None if math.isnan(s) else s}
            for k, (c, m, s) in enumerate(rows)
        ],
    }
