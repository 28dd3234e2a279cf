"""Tests for pgrpo.loss against direct elementwise / python-loop computations."""

from __future__ import annotations

import math

import pytest
import torch
from tolerances import assert_equal_up_to_rounding

from pgrpo.loss import aggregate, clipped_surrogate, k3_kl, policy_loss, token_log_probs

pytestmark = pytest.mark.numerics


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _padded_mask(lengths: list[int], seq: int) -> torch.Tensor:
    """Right-padded completion mask [batch, seq] with the given numbers of real tokens."""
    return torch.tensor([[1.0 if t < n else 0.0 for t in range(seq)] for n in lengths])


# ---------------------------------------------------------------- k3 and surrogate


def test_k3_nonnegative_and_zero_at_ref() -> None:
    g = _gen(0)
    logp = -torch.rand(4, 9, generator=g, dtype=torch.float64) * 5
    ref = -torch.rand(4, 9, generator=g, dtype=torch.float64) * 5
    kl = k3_kl(logp, ref)
    assert kl.shape == (4, 9)
    assert torch.all(kl >= 0)
    assert torch.all(k3_kl(logp, logp) == 0)
    d = (ref - logp)[1, 2].item()
    assert abs(kl[1, 2].item() - (math.exp(d) - d - 1)) < 1e-12


def test_clipped_surrogate_matches_direct() -> None:
    g = _gen(1)
    b, s, lo, hi = 6, 7, 0.2, 0.28
    logp = -torch.rand(b, s, generator=g, dtype=torch.float64) * 3
    old = logp + 0.4 * torch.randn(b, s, generator=g, dtype=torch.float64)
    adv = torch.randn(b, generator=g, dtype=torch.float64)
    loss, clipped = clipped_surrogate(logp, old, adv, lo, hi)
    assert clipped.dtype == torch.bool
    n_clipped = 0
    for i in range(b):
        for t in range(s):
            ratio = math.exp(logp[i, t].item() - old[i, t].item())
            a = adv[i].item()
            want = -min(ratio * a, min(max(ratio, 1 - lo), 1 + hi) * a)
            assert abs(loss[i, t].item() - want) < 1e-12
            want_clip = (a > 0 and ratio > 1 + hi) or (a < 0 and ratio < 1 - lo)
            assert bool(clipped[i, t]) == want_clip
            n_clipped += want_clip
    assert 0 < n_clipped < b * s  # the random draw exercises both branches


# ---------------------------------------------------------------- aggregate


def test_aggregate_modes_match_direct() -> None:
    g = _gen(2)
    lengths, seq = [5, 1, 0, 8, 3], 8
    x = torch.randn(len(lengths), seq, generator=g, dtype=torch.float64)
    mask = _padded_mask(lengths, seq)
    rows = [x[i, :n].tolist() for i, n in enumerate(lengths)]
    grpo = sum(sum(r) / len(r) if r else 0.0 for r in rows) / len(rows)
    tokens = [v for r in rows for v in r]
    token_mean = sum(tokens) / len(tokens)
    assert abs(aggregate(x, mask, "grpo").item() - grpo) < 1e-12
    assert abs(aggregate(x, mask.bool(), "dapo").item() - token_mean) < 1e-12
    assert abs(aggregate(x, mask, "bnpo").item() - token_mean) < 1e-12
    dr = aggregate(x, mask, "dr_grpo", max_completion_length=16).item()
    assert abs(dr - sum(tokens) / (len(lengths) * 16)) < 1e-12


def test_aggregate_validation() -> None:
    x, mask = torch.zeros(2, 3), torch.ones(2, 3)
    with pytest.raises(ValueError, match="grpo"):
        aggregate(x, mask, "mean")
    with pytest.raises(ValueError):
        aggregate(x, mask, "dr_grpo")
    with pytest.raises(ValueError):
        aggregate(x, torch.ones(2, 4))


# ---------------------------------------------------------------- policy_loss


def test_policy_loss_value_and_stats() -> None:
    g = _gen(3)
    b, s = 4, 6
    logp = -torch.rand(b, s, generator=g, dtype=torch.float64) * 3
    old = logp + 0.3 * torch.randn(b, s, generator=g, dtype=torch.float64)
    ref = logp + 0.3 * torch.randn(b, s, generator=g, dtype=torch.float64)
    adv = torch.randn(b, generator=g, dtype=torch.float64)
    mask = _padded_mask([6, 2, 4, 5], s)
    loss, stats = policy_loss(logp, old, ref, adv, mask, beta=0.1, mode="dapo")
    ratio = torch.exp(logp - old)
    surr = -torch.minimum(ratio * adv[:, None], ratio.clamp(0.8, 1.2) * adv[:, None])
    kl = torch.exp(ref - logp) - (ref - logp) - 1
    m = mask.bool()
    assert abs(loss.item() - (surr + 0.1 * kl)[m].mean().item()) < 1e-12
    assert abs(stats["kl"] - kl[m].mean().item()) < 1e-12
    assert abs(stats["ratio_mean"] - ratio[m].mean().item()) < 1e-12
    clipped = ((adv[:, None] > 0) & (ratio > 1.2)) | ((adv[:, None] < 0) & (ratio < 0.8))
    assert abs(stats["clip_fraction"] - clipped[m].double().mean().item()) < 1e-12
    assert all(isinstance(v, float) for v in stats.values())
    # beta = 0 or no reference: the KL term leaves the loss
    no_kl = surr[m].mean().item()
    assert (
        abs(policy_loss(logp, old, ref, adv, mask, beta=0.0, mode="dapo")[0].item() - no_kl) < 1e-12
    )
    loss_none, stats_none = policy_loss(logp, old, None, adv, mask, mode="dapo")
    assert abs(loss_none.item() - no_kl) < 1e-12 and stats_none["kl"] == 0.0


def test_gradient_zero_for_fully_clipped_tokens() -> None:
    # seq 0: A > 0, token 0 ratio 1.5 (clipped), token 1 ratio 1.0; seq 1: A < 0, token 0
    # ratio 0.5 (clipped), token 1 ratio 1.5 (A < 0, pushed down: not clipped)
    old = torch.zeros(2, 2, dtype=torch.float64)
    logp = torch.log(torch.tensor([[1.5, 1.0], [0.5, 1.5]], dtype=torch.float64))
    logp.requires_grad_(True)
    ref = logp.detach() - 0.3
    adv = torch.tensor([1.0, -2.0], dtype=torch.float64)
    mask = torch.ones(2, 2)
    loss, stats = policy_loss(logp, old, ref, adv, mask, beta=0.0)
    (grad,) = torch.autograd.grad(loss, logp)
    assert grad[0, 0] == 0 and grad[1, 0] == 0
    assert grad[0, 1] != 0 and grad[1, 1] != 0
    assert stats["clip_fraction"] == 0.5
    # with beta > 0 only the KL gradient is left on the clipped tokens
    beta = 0.5
    loss, _ = policy_loss(logp, old, ref, adv, mask, beta=beta)
    (grad,) = torch.autograd.grad(loss, logp)
    for i, t in ((0, 0), (1, 0)):
        d_k3 = 1 - math.exp(ref[i, t].item() - logp[i, t].item())  # d k3 / d logp
        assert abs(grad[i, t].item() - beta * d_k3 / (2 * 2)) < 1e-12


def test_on_policy_gradient_identity() -> None:
    """With old_logp = logp.detach(), d loss / d logp_it = -A_i / (len_i * batch) ("grpo")."""
    g = _gen(4)
    lengths, seq = [3, 7, 1, 5], 7
    logp = (-torch.rand(4, seq, generator=g, dtype=torch.float64)).requires_grad_(True)
    adv = torch.randn(4, generator=g, dtype=torch.float64)
    mask = _padded_mask(lengths, seq)
    loss, stats = policy_loss(logp, logp.detach(), None, adv, mask, beta=0.0, mode="grpo")
    (grad,) = torch.autograd.grad(loss, logp)
    for i, n in enumerate(lengths):
        for t in range(seq):
            want = -adv[i].item() / (n * len(lengths)) if t < n else 0.0
            assert abs(grad[i, t].item() - want) < 1e-12
    assert stats["clip_fraction"] == 0.0 and abs(stats["ratio_mean"] - 1.0) < 1e-12


# ---------------------------------------------------------------- token_log_probs


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_token_log_probs_matches_float64(dtype: torch.dtype) -> None:
    g = _gen(5)
    logits64 = 4 * torch.randn(3, 5, 50, generator=g, dtype=torch.float64)
    tokens = torch.randint(0, 50, (3, 5), generator=g)
    logits = logits64.to(dtype)
    got = token_log_probs(logits, tokens)
    expected = torch.float64 if dtype == torch.float64 else torch.float32
    assert got.dtype == expected and got.shape == (3, 5)
    ref = torch.log_softmax(logits.double(), -1).gather(-1, tokens[..., None]).squeeze(-1)
    # The same rounded logits in float64: only the log-sum-exp over the 50 logits rounds, at
    # float32 (bf16 and float32 inputs) or float64.
    assert_equal_up_to_rounding(got.double(), ref, terms=50, dtype=expected)


def test_token_log_probs_gradient_flows() -> None:
    logits = torch.randn(2, 3, 11, dtype=torch.bfloat16, requires_grad=True)
    token_log_probs(logits, torch.zeros(2, 3, dtype=torch.long)).sum().backward()
    assert logits.grad is not None and torch.all(torch.isfinite(logits.grad.float()))


def test_bf16_log_probs_keep_no_float32_copy_for_the_backward_pass() -> None:
    """Half-precision logits: the gradient is the float64 softmax gradient up to bfloat16
    rounding, and what autograd keeps for the backward pass is smaller than one float32
    copy of the logits (autograd's own logsumexp of a float32 copy kept every row's)."""
    g = _gen(6)
    logits64 = 4 * torch.randn(3, 7, 50, generator=g, dtype=torch.float64)
    tokens = torch.randint(0, 50, (3, 5), generator=g)
    positions = torch.randint(0, 7, (3, 5), generator=g)
    weights = torch.randn(3, 5, generator=g, dtype=torch.float64)
    logits = logits64.bfloat16().requires_grad_()
    saved = []

    def keep(t):
        saved.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
        got = token_log_probs(logits, tokens, positions)
    assert sum(saved) < logits.numel() * 4
    (got.double() * weights).sum().backward()
    exact = logits.detach().double().requires_grad_()
    ref = torch.log_softmax(exact, -1)[torch.arange(3)[:, None], positions, tokens]
    (ref * weights).sum().backward()
    # The gradient rounds once to bfloat16 after float32 work over 50 logits per row.
    assert_equal_up_to_rounding(logits.grad.double(), exact.grad, terms=2, dtype=torch.bfloat16)


# ---------------------------------------------------------------- optimisation


def test_loss_falls_when_optimised() -> None:
    torch.manual_seed(0)
    b, s, d, vocab = 6, 5, 16, 12
    g = _gen(6)
    feats = torch.randn(b, s, d, generator=g)
    tokens = torch.randint(0, vocab, (b, s), generator=g)
    mask = _padded_mask([5, 4, 5, 3, 5, 2], s)
    adv = torch.tensor([1.0, -1.0, 0.5, -0.5, 1.5, -1.0])
    policy = torch.nn.Linear(d, vocab)
    with torch.no_grad():
        old = token_log_probs(policy(feats), tokens)
    ref = old.clone()
    opt = torch.optim.Adam(policy.parameters(), lr=3e-3)
    losses = []
    for _ in range(6):
        logp = token_log_probs(policy(feats), tokens)
        loss, _ = policy_loss(logp, old, ref, adv, mask, beta=0.04)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    with torch.no_grad():
        new = token_log_probs(policy(feats), tokens)
    assert all(a > b for a, b in zip(losses[:-1], losses[1:], strict=True)), losses
    pos, neg = (adv > 0)[:, None] & mask.bool(), (adv < 0)[:, None] & mask.bool()
    assert new[pos].sum() > old[pos].sum()
    assert new[neg].sum() < old[neg].sum()
