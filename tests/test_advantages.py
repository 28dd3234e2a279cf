"""Tests for pgrpo.advantages against direct numpy / python computations."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
import torch

from pgrpo.advantages import (
    ClusterRewardStats,
    corollary_decomposition,
    group_advantages,
    pgrpo_advantages,
)

pytestmark = pytest.mark.numerics


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _numpy_cluster_stats(rewards: np.ndarray, ids: np.ndarray, k: int):
    """Per-cluster (count, mean, unbiased std) computed directly with numpy."""
    out = []
    for c in range(k):
        r = rewards[ids == c]
        std = float(np.std(r, ddof=1)) if r.size >= 2 else math.nan
        out.append((r.size, float(r.mean()) if r.size else 0.0, std))
    return out


def _direct_group_adv(rewards: list[float], g: int, scale: str, eps: float) -> list[float]:
    batch_std = statistics.stdev(rewards)
    out = []
    for start in range(0, len(rewards), g):
        grp = rewards[start : start + g]
        mu, sd = statistics.fmean(grp), statistics.stdev(grp)
        for r in grp:
            if scale == "group":
                out.append((r - mu) / (sd + eps))
            elif scale == "batch":
                out.append((r - mu) / (batch_std + eps))
            else:
                out.append(r - mu)
    return out


# ---------------------------------------------------------------- group_advantages


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
@pytest.mark.parametrize("group_size", [2, 3, 4, 8])
def test_group_advantages_matches_direct(scale: str, group_size: int) -> None:
    rewards = _rng(group_size).normal(size=group_size * 5).tolist()
    got = group_advantages(torch.tensor(rewards, dtype=torch.float64), group_size, scale, 1e-4)
    want = _direct_group_adv(rewards, group_size, scale, 1e-4)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-12)


def test_group_advantages_keeps_dtype_and_zero_for_constant_group() -> None:
    r = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0], dtype=torch.float32)
    adv = group_advantages(r, 4)
    assert adv.dtype == torch.float32
    assert torch.all(adv[:4] == 0)
    assert adv[5] > 0 > adv[4]


def test_group_advantages_validation() -> None:
    with pytest.raises(ValueError):
        group_advantages(torch.zeros(7), 4)
    with pytest.raises(ValueError, match="group"):
        group_advantages(torch.zeros(8), 4, scale="population")


# ---------------------------------------------------------------- ClusterRewardStats


def _random_chunks(n: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    bounds, start = [], 0
    while start < n:
        size = int(rng.choice([1, 1, 2, 5, 17]))
        bounds.append((start, min(n, start + size)))
        start += size
    return bounds


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stream_any_chunking_equals_numpy(seed: int) -> None:
    rng = _rng(seed)
    k, n = 7, 300
    # cluster 5 never appears, cluster 6 appears exactly once
    ids = rng.choice([0, 1, 2, 3, 4], size=n, p=[0.5, 0.2, 0.15, 0.1, 0.05])
    ids[rng.integers(n)] = 6
    rewards = rng.normal(loc=ids * 0.3, scale=1.0 + ids * 0.1)
    want = _numpy_cluster_stats(rewards, ids, k)
    for chunking in (_random_chunks(n, rng), [(i, i + 1) for i in range(n)], [(0, n)]):
        stats = ClusterRewardStats(k)
        for a, b in chunking:
            stats.update(torch.tensor(rewards[a:b]), torch.tensor(ids[a:b]))
        for c, (cnt, mu, sd) in enumerate(want):
            assert stats.count[c].item() == cnt
            if cnt:
                assert abs(stats.mean[c].item() - mu) < 1e-10
            if cnt >= 2:
                assert abs(stats.std[c].item() - sd) < 1e-10
            else:
                assert math.isnan(stats.std[c].item())
    assert stats.count.dtype == torch.float64


def test_merge_two_halves_equals_whole() -> None:
    rng = _rng(3)
    k, n = 4, 200
    ids, rewards = rng.integers(0, k, size=n), rng.random(n)
    ids[:100][ids[:100] == 3] = 2  # cluster 3 only in the second half
    whole, left, right = ClusterRewardStats(k), ClusterRewardStats(k), ClusterRewardStats(k)
    whole.update(torch.tensor(rewards), torch.tensor(ids))
    left.update(torch.tensor(rewards[:100]), torch.tensor(ids[:100]))
    for a in range(100, n, 30):
        right.update(torch.tensor(rewards[a : a + 30]), torch.tensor(ids[a : a + 30]))
    left.merge(right)
    torch.testing.assert_close(left.count, whole.count, rtol=0, atol=1e-12)
    torch.testing.assert_close(left.mean, whole.mean, rtol=0, atol=1e-12)
    torch.testing.assert_close(left.std, whole.std, rtol=0, atol=1e-12)
    with pytest.raises(ValueError):
        left.merge(ClusterRewardStats(k + 1))


def test_state_dict_round_trip() -> None:
    rng = _rng(4)
    stats = ClusterRewardStats(3, decay=0.9)
    stats.update(torch.tensor(rng.random(20)), torch.tensor(rng.integers(0, 3, 20)))
    sd = stats.state_dict()
    fresh = ClusterRewardStats(3)
    fresh.load_state_dict(sd)
    assert fresh.decay == 0.9
    for name in ("count", "mean", "m2"):
        assert torch.equal(getattr(fresh, name), getattr(stats, name))
    r, c = torch.tensor(rng.random(15)), torch.tensor(rng.integers(0, 3, 15))
    stats.update(r, c)
    fresh.update(r, c)
    for name in ("count", "mean", "m2"):
        assert torch.equal(getattr(fresh, name), getattr(stats, name))
    sd["count"][0] = -1.0  # the state dict holds copies, not views
    assert stats.count[0] >= 0
    with pytest.raises(ValueError):
        ClusterRewardStats(4).load_state_dict(stats.state_dict())


def test_decay_matches_exponential_weighting() -> None:
    rng = _rng(5)
    k, decay, num_batches = 3, 0.7, 6
    batches = [(rng.normal(size=8), rng.integers(0, k, size=8)) for _ in range(num_batches)]
    stats = ClusterRewardStats(k, decay=decay)
    for r, c in batches:
        stats.update(torch.tensor(r), torch.tensor(c))
    for cluster in range(k):
        w, x = [], []
        for b, (r, c) in enumerate(batches):
            for value in r[c == cluster]:
                w.append(decay ** (num_batches - 1 - b))
                x.append(value)
        w_arr, x_arr = np.array(w), np.array(x)
        mean = float((w_arr * x_arr).sum() / w_arr.sum())
        assert abs(stats.mean[cluster].item() - mean) < 1e-10
        assert abs(stats.count[cluster].item() - w_arr.sum()) < 1e-10
        m2 = float((w_arr * (x_arr - mean) ** 2).sum())
        assert abs(stats.m2[cluster].item() - m2) < 1e-10


@pytest.mark.parametrize("decay", [0.0, -0.5, 1.5, float("nan")])
def test_bad_decay_raises(decay: float) -> None:
    with pytest.raises(ValueError):
        ClusterRewardStats(3, decay=decay)


def test_ids_out_of_range_raise() -> None:
    stats = ClusterRewardStats(3)
    with pytest.raises(ValueError):
        stats.update(torch.ones(2), torch.tensor([0, 3]))
    with pytest.raises(ValueError):
        stats.update(torch.ones(2), torch.tensor([-1, 0]))
    with pytest.raises(ValueError):
        stats.advantages(torch.ones(2), torch.tensor([0, 5]))
    with pytest.raises(ValueError):
        stats.update(torch.ones(3), torch.tensor([0, 1]))
    assert torch.all(stats.count == 0)


def test_cluster_advantages_direct() -> None:
    rng = _rng(6)
    k = 4
    hist_r, hist_c = rng.random(60), rng.integers(0, k, size=60)
    stats = ClusterRewardStats(k)
    stats.update(torch.tensor(hist_r), torch.tensor(hist_c))
    r, c = rng.random(10).astype(np.float32), rng.integers(0, k, size=10)
    got = stats.advantages(torch.tensor(r), torch.tensor(c), eps=1e-3)
    assert got.dtype == torch.float32
    for i in range(10):
        h = hist_r[hist_c == c[i]].tolist()
        want = (float(r[i]) - statistics.fmean(h)) / (statistics.stdev(h) + 1e-3)
        assert abs(got[i].item() - want) < 1e-5


# ---------------------------------------------------------------- pgrpo_advantages


def test_pgrpo_after_includes_current_batch() -> None:
    rng = _rng(7)
    k, g = 3, 4
    hist_r, hist_c = rng.random(30), rng.integers(0, 2, size=30)  # cluster 2 has no history
    stats = ClusterRewardStats(k)
    stats.update(torch.tensor(hist_r), torch.tensor(hist_c))
    r = rng.random(12)
    c = np.array([0] * 4 + [1] * 4 + [2] * 3 + [0])
    adv = pgrpo_advantages(torch.tensor(r), torch.tensor(c), stats, g, eps=1e-4)
    all_r, all_c = np.concatenate([hist_r, r]), np.concatenate([hist_c, c])
    for i in range(12):
        pool = all_r[all_c == c[i]]
        want = (r[i] - pool.mean()) / (pool.std(ddof=1) + 1e-4)
        assert abs(adv[i].item() - want) < 1e-10
    assert stats.count.sum().item() == 42


def test_pgrpo_after_falls_back_for_single_reward_cluster() -> None:
    stats = ClusterRewardStats(2)
    r = torch.tensor([0.1, 0.5, 0.9, 0.3], dtype=torch.float64)
    c = torch.tensor([0, 0, 0, 1])
    adv = pgrpo_advantages(r, c, stats, group_size=4)
    grp = _direct_group_adv(r.tolist(), 4, "group", 1e-4)
    assert abs(adv[3].item() - grp[3]) < 1e-12  # cluster 1 has one reward: GRPO fallback
    want0 = (0.1 - 0.5) / (statistics.stdev([0.1, 0.5, 0.9]) + 1e-4)
    assert abs(adv[0].item() - want0) < 1e-12


def test_pgrpo_before_uses_history_and_warmup() -> None:
    rng = _rng(8)
    k, g, warm = 3, 4, 5
    # history: cluster 0 has 10 rewards, cluster 1 has 3 (< warm), cluster 2 none
    hist_c = np.array([0] * 10 + [1] * 3)
    hist_r = rng.random(13)
    stats = ClusterRewardStats(k)
    stats.update(torch.tensor(hist_r), torch.tensor(hist_c))
    r = rng.random(12)
    c = np.array([0, 0, 1, 1, 1, 1, 2, 2, 0, 2, 1, 0])
    adv = pgrpo_advantages(
        torch.tensor(r), torch.tensor(c), stats, g, order="before", warmup_min_count=warm
    )
    grp = _direct_group_adv(r.tolist(), g, "group", 1e-4)
    h0 = hist_r[hist_c == 0]
    for i in range(12):
        if c[i] == 0:
            want = (r[i] - h0.mean()) / (h0.std(ddof=1) + 1e-4)
        else:
            want = grp[i]
        assert abs(adv[i].item() - want) < 1e-10
    assert stats.count.tolist() == [14.0, 8.0, 3.0]  # updated afterwards
    with pytest.raises(ValueError, match="after"):
        pgrpo_advantages(torch.tensor(r), torch.tensor(c), stats, g, order="during")


def test_constant_group_zero_grpo_but_nonzero_pgrpo() -> None:
    stats = ClusterRewardStats(2)
    stats.update(torch.tensor([0.0, 1.0, 0.0, 1.0, 0.5, 0.5]), torch.zeros(6, dtype=torch.long))
    r = torch.ones(8, dtype=torch.float64)  # two groups of 4, every reward 1
    c = torch.zeros(8, dtype=torch.long)
    assert torch.all(group_advantages(r, 4) == 0)
    for order in ("after", "before"):
        s = ClusterRewardStats(2)
        s.load_state_dict(stats.state_dict())
        adv = pgrpo_advantages(r, c, s, 4, order=order)
        assert torch.all(adv > 0.1)


# ---------------------------------------------------------------- Corollary 3.1


@pytest.mark.parametrize("seed", [0, 1])
def test_corollary_3_1(seed: int) -> None:
    rng = _rng(seed)
    g, n = 4, 24
    r = torch.tensor(rng.normal(size=n))
    mu_p = torch.tensor(rng.normal(size=n))
    sigma_p = torch.tensor(rng.uniform(0.2, 2.0, size=n))
    direct = (r - mu_p) / sigma_p
    torch.testing.assert_close(corollary_decomposition(r, g, mu_p, sigma_p), direct)
    a_hat = group_advantages(r, g, "group", eps=0.0)
    grouped = r.view(-1, g)
    mu_g = grouped.mean(1).repeat_interleave(g)
    sigma_g = torch.tensor([statistics.stdev(row) for row in grouped.tolist()], dtype=r.dtype)
    sigma_g = sigma_g.repeat_interleave(g)
    composed = (sigma_g / sigma_p) * a_hat + (mu_g - mu_p) / sigma_p
    torch.testing.assert_close(composed, direct, rtol=1e-10, atol=1e-10)


def test_corollary_constant_group_is_bias_term_only() -> None:
    r = torch.tensor([0.3, 0.3, 0.3, 0.3], dtype=torch.float64)
    out = corollary_decomposition(r, 4, torch.full((4,), 0.8), torch.full((4,), 0.5))
    torch.testing.assert_close(out, torch.full((4,), -1.0, dtype=torch.float64))


# ---------------------------------------------------------------- population std option


@pytest.mark.parametrize("scale", ["group", "batch"])
def test_group_advantages_population_std(scale: str) -> None:
    rewards = _rng(3).normal(size=12)
    got = group_advantages(torch.tensor(rewards), 4, scale, eps=0.0, unbiased=False)
    grouped = rewards.reshape(-1, 4)
    centred = grouped - grouped.mean(1, keepdims=True)
    std = grouped.std(1, ddof=0, keepdims=True) if scale == "group" else rewards.std(ddof=0)
    np.testing.assert_allclose(got.numpy(), (centred / std).reshape(-1), rtol=1e-12)
    unbiased = group_advantages(torch.tensor(rewards), 4, scale, eps=0.0)
    assert not torch.allclose(got, unbiased)  # the option changes the result


def test_cluster_stats_population_std_and_fallback() -> None:
    rng = _rng(4)
    ids = rng.integers(0, 3, size=40)
    rewards = rng.normal(size=40)
    stats = ClusterRewardStats(3, unbiased=False)
    stats.update(torch.tensor(rewards), torch.tensor(ids))
    for c in range(3):
        assert abs(stats.std[c].item() - np.std(rewards[ids == c], ddof=0)) < 1e-12
    assert ClusterRewardStats(3, unbiased=False).state_dict()["unbiased"] is False
    restored = ClusterRewardStats(3)
    restored.load_state_dict(stats.state_dict())
    torch.testing.assert_close(restored.std, stats.std)
    # The GRPO fallback (a cluster seen for the first time, order="before") uses the same
    # estimator as the statistics.
    fresh = ClusterRewardStats(2, unbiased=False)
    r = torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    adv = pgrpo_advantages(r, torch.zeros(4, dtype=torch.long), fresh, 4, eps=0.0, order="before")
    torch.testing.assert_close(adv, group_advantages(r, 4, eps=0.0, unbiased=False))


@pytest.mark.parametrize("unbiased", [True, False])
def test_corollary_holds_for_the_trainers_pgrpo_advantages(unbiased: bool) -> None:
    """With live cluster statistics and eps = 0, pgrpo_advantages equals the Corollary 3.1
    decomposition into a rescaled GRPO advantage and a bias term."""
    rng = _rng(5)
    stats = ClusterRewardStats(3, unbiased=unbiased)
    history = torch.tensor(rng.integers(0, 3, size=60))
    stats.update(torch.tensor(rng.uniform(size=60)), history)
    g = 4
    rewards = torch.tensor(rng.integers(0, 2, size=6 * g), dtype=torch.float64)
    ids = torch.tensor(rng.integers(0, 3, size=6)).repeat_interleave(g)
    adv = pgrpo_advantages(rewards, ids, stats, g, eps=0.0)  # order "after": stats updated
    mu_p, sigma_p = stats.mean[ids], stats.std[ids]
    decomposed = corollary_decomposition(rewards, g, mu_p, sigma_p, unbiased=unbiased)
    torch.testing.assert_close(adv, decomposed, rtol=1e-12, atol=1e-12)
