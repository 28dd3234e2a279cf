"""The paper's Figure 1 / Example 1.1 as a simulation: a majority and a minority preference
cluster, one shared policy, trained with GRPO (group and batch scale), with the batch-mean
normalisation the paper's Figure 1(b) describes, and with P-GRPO.

    python -m pgrpo.simulate --config config.yaml --table results/tables/simulation.csv \
        --figure results/figures/fig1_simulation.png

The world: ``num_items`` items with random feature vectors; users in two clusters (a
fraction ``minority_fraction`` in the minority), each user a context vector near its
cluster's centre. The policy is a softmax over items with logits ``phi(a)^T W x_u`` (one W
shared by all users). A sampled item earns a Bernoulli reward with probability
``sigmoid(scale * phi(a).v_c + b_c)``: a linear reward model with a preference direction v_c
per cluster, b_c set so that the untrained (uniform) policy earns ``reward_means`` on
average (about 0.8 for the majority and 0.3 for the minority, as in the paper's figure).
Every step samples ``users_per_step`` users (in population proportions), G items each, and
takes one policy-gradient step with the method's advantages (the same functions the
trainer uses, from ``pgrpo.advantages``). Recorded per step, cluster and method: the
policy's exact expected reward and the mean advantage its samples received; over
``seeds`` seeds, mean and 95% interval (t distribution).
"""

from __future__ import annotations

import argparse
import csv
import math

import numpy as np
import torch

from pgrpo.advantages import (
    ClusterRewardStats,
    batch_advantages,
    group_advantages,
    pgrpo_advantages,
)
from pgrpo.config import load_config
from pgrpo.io import atomic_path, run_cli

METHODS = {
    "grpo_group": "GRPO (group)",
    "grpo_batch": "GRPO (batch std)",
    "batch_mean": "batch mean (Fig. 1b)",
    "pgrpo": "P-GRPO",
}
CLUSTERS = ("majority", "minority")


def make_world(cfg: dict, rng: np.random.Generator) -> dict:
    """Items, users, clusters and each (user, item) reward probability [users, items]."""
    d, n_items, n_users = cfg["dimension"], cfg["num_items"], cfg["num_users"]
    items = rng.normal(size=(n_items, d)) / math.sqrt(d)  # [A, d]
    cluster = (rng.random(n_users) < cfg["minority_fraction"]).astype(np.int64)  # [U]
    centres = rng.normal(size=(2, d))  # [2, d]
    contexts = centres[cluster] + 0.3 * rng.normal(size=(n_users, d))  # [U, d]
    prefs = rng.normal(size=(2, d))  # [2, d] v_c
    prob = np.empty((n_users, n_items))
    for c, target in enumerate(cfg["reward_means"]):
        score = cfg["reward_scale"] * items @ prefs[c]  # [A]
        bias = _bias_for_mean(score, target)
        prob[cluster == c] = 1 / (1 + np.exp(-(score + bias)))
    return {"items": items, "cluster": cluster, "contexts": contexts, "prob": prob}


def _bias_for_mean(score: np.ndarray, target: float) -> float:
    """b with mean(sigmoid(score + b)) = target (bisection; the uniform policy's reward)."""
    low, high = -30.0, 30.0
    for _ in range(100):
        mid = (low + high) / 2
        if np.mean(1 / (1 + np.exp(-(score + mid)))) < target:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def advantages(method: str, rewards, clusters, stats, group_size: int, eps: float):
    if method == "grpo_group":
        return group_advantages(rewards, group_size, "group", eps)
    if method == "grpo_batch":
        return group_advantages(rewards, group_size, "batch", eps)
    if method == "batch_mean":  # the normalisation of the paper's Figure 1(b)
        return batch_advantages(rewards, eps)
    return pgrpo_advantages(rewards, clusters, stats, group_size, eps)


def run(cfg: dict, method: str, seed: int) -> dict[str, np.ndarray]:
    """One training run; [steps, 2] arrays of expected reward and mean advantage per cluster."""
    rng = np.random.default_rng([seed, 1])  # the same world for every method of a seed
    world = make_world(cfg, rng)
    sampler = np.random.default_rng([seed, 2])  # the same user draws for every method
    torch.manual_seed(seed)
    items = torch.tensor(world["items"], dtype=torch.float64)
    contexts = torch.tensor(world["contexts"], dtype=torch.float64)
    prob = torch.tensor(world["prob"], dtype=torch.float64)
    cluster = torch.tensor(world["cluster"])
    weights = torch.zeros(
        items.shape[1], contexts.shape[1], dtype=torch.float64, requires_grad=True
    )
    optimizer = torch.optim.SGD([weights], lr=cfg["learning_rate"])
    stats = ClusterRewardStats(2)
    g, steps = cfg["group_size"], cfg["steps"]
    reward = np.zeros((steps, 2))
    advantage = np.full((steps, 2), np.nan)
    for step in range(steps):
        logits = contexts @ weights.T @ items.T  # [U, A]
        policy = torch.softmax(logits, dim=-1)
        with torch.no_grad():
            expected = (policy * prob).sum(-1)  # [U]
            for c in range(2):
                reward[step, c] = expected[cluster == c].mean().item()
        users = torch.tensor(sampler.choice(len(cluster), size=cfg["users_per_step"]))
        picks = torch.multinomial(policy[users].detach(), g, replacement=True)  # [B, G]
        draws = torch.tensor(sampler.random(size=picks.shape))
        rewards = (draws < prob[users[:, None], picks]).to(torch.float64).reshape(-1)
        ids = cluster[users].repeat_interleave(g)  # [B*G]
        adv = advantages(method, rewards, ids, stats, g, cfg["advantage_eps"])
        for c in range(2):
            if (ids == c).any():
                advantage[step, c] = adv[ids == c].mean().item()
        log_policy = torch.log_softmax(logits[users], dim=-1).gather(1, picks).reshape(-1)
        loss = -(adv * log_policy).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return {"reward": reward, "advantage": advantage}


def mean_and_interval(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean over axis 0 and the half-width of its 95% t interval."""
    from scipy import stats as scipy_stats

    n = values.shape[0]
    mean = np.nanmean(values, axis=0)
    if n < 2:
        return mean, np.zeros_like(mean)
    sem = np.nanstd(values, axis=0, ddof=1) / math.sqrt(n)
    return mean, scipy_stats.t.ppf(0.975, n - 1) * sem


def simulate(cfg: dict) -> dict[str, dict[str, np.ndarray]]:
    """Every method over every seed: {method: {"reward"/"advantage": [seeds, steps, 2]}}."""
    out = {}
    for method in METHODS:
        runs = [run(cfg, method, seed) for seed in range(cfg["seeds"])]
        out[method] = {k: np.stack([r[k] for r in runs]) for k in ("reward", "advantage")}
    return out


def summary_rows(results: dict, tail: int) -> list[dict]:
    """Per method and cluster: mean advantage over training, reward at the start and over
    the last ``tail`` steps, each with the 95% interval over seeds."""
    rows = []
    for method, arrays in results.items():
        per_seed_adv = np.nanmean(arrays["advantage"], axis=1)  # [seeds, 2]
        start = arrays["reward"][:, 0]  # [seeds, 2]
        final = arrays["reward"][:, -tail:].mean(axis=1)  # [seeds, 2]
        adv, adv_ci = mean_and_interval(per_seed_adv)
        fin, fin_ci = mean_and_interval(final)
        gain, gain_ci = mean_and_interval(final - start)
        for c, name in enumerate(CLUSTERS):
            rows.append({
                "method": METHODS[method], "cluster": name,
                "mean_advantage": adv[c], "mean_advantage_ci95": adv_ci[c],
                "initial_reward": start[:, c].mean(),
                "final_reward": fin[c], "final_reward_ci95": fin_ci[c],
                "reward_gain": gain[c], "reward_gain_ci95": gain_ci[c],
                "seeds": arrays["reward"].shape[0],
            })  # fmt: skip
    return rows


def write_table(rows: list[dict], path: str) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        for row in rows:
            writer.writerow({k: f"{v:.4f}" if isinstance(v, float) else v for k, v in row.items()})


def plot(results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    colours = dict(zip(METHODS, ("tab:blue", "tab:green", "tab:red", "tab:orange"), strict=True))
    for method, arrays in results.items():
        mean, ci = mean_and_interval(arrays["reward"])  # [steps, 2]
        steps = np.arange(mean.shape[0])
        for c, style in enumerate(("-", "--")):
            left.plot(steps, mean[:, c], style, color=colours[method],
                      label=f"{METHODS[method]}, {CLUSTERS[c]}")  # fmt: skip
            left.fill_between(steps, mean[:, c] - ci[:, c], mean[:, c] + ci[:, c],
                              color=colours[method], alpha=0.15)  # fmt: skip
    left.set(xlabel="training step", ylabel="expected reward of the policy",
             title="(a) reward per cluster (mean, 95% interval over seeds)")  # fmt: skip
    left.legend(fontsize=7)
    width = 0.2
    for i, (method, arrays) in enumerate(results.items()):
        adv, ci = mean_and_interval(np.nanmean(arrays["advantage"], axis=1))
        right.bar(np.arange(2) + (i - 1.5) * width, adv, width, yerr=ci, capsize=3,
                  color=colours[method], label=METHODS[method])  # fmt: skip
    right.axhline(0, color="black", linewidth=0.8)
    right.set_xticks(range(2), CLUSTERS)
    right.set(ylabel="mean advantage of the cluster's samples",
              title="(b) advantage each cluster receives")  # fmt: skip
    right.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Figure 1 of the paper as a simulation.")
    parser.add_argument("--config", required=True)
    parser.add_argument("--table", required=True, help="CSV output")
    parser.add_argument("--figure", required=True, help="PNG output")
    args = parser.parse_args(argv)
    cfg = load_config(args.config)["simulation"]
    torch.set_num_threads(1)
    results = simulate(cfg)
    rows = summary_rows(results, tail=max(1, cfg["steps"] // 10))
    write_table(rows, args.table)
    plot(results, args.figure)
    for row in rows:
        print(
            f"{row['method']:<18} {row['cluster']:<9} advantage {row['mean_advantage']:+.3f}"
            f" ± {row['mean_advantage_ci95']:.3f}, reward {row['initial_reward']:.3f} -> "
            f"{row['final_reward']:.3f} ± {row['final_reward_ci95']:.3f}"
        )


if __name__ == "__main__":
    run_cli(main)
