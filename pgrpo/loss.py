"""GRPO / P-GRPO policy loss: clipped surrogate, k3 KL penalty, token aggregation.

Per token t of completion i (DeepSeekMath GRPO, docs/method.md, section 2):

    rho = exp(logp - old_logp)
    L_it = -min(rho * A_i, clip(rho, 1 - clip_low, 1 + clip_high) * A_i) + beta * k3_it
    k3_it = exp(ref_logp - logp) - (ref_logp - logp) - 1

aggregated per sequence then over the batch ("grpo"), or token-level ("dapo"/"bnpo"),
or by a constant (batch * max_completion_length, "dr_grpo").

Pure tensor code: imports only torch and typing.
"""

from __future__ import annotations

import torch

AGGREGATION_MODES = ("grpo", "dapo", "bnpo", "dr_grpo")


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """k3 estimator of KL(pi_theta || pi_ref) per token: exp(d) - d - 1, d = ref - logp.

    Always >= 0, and 0 where logp == ref_logp. Shapes [batch, seq] -> [batch, seq].
    """
    diff = ref_logp - logp  # [batch, seq]
    return torch.exp(diff) - diff - 1.0


def clipped_surrogate(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    clip_low: float,
    clip_high: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO/GRPO clipped surrogate as a loss: -min(rho * A, clip(rho, 1-cl, 1+ch) * A).

    logp, old_logp [batch, seq]; advantages [batch] (broadcast over seq).
    Returns (loss [batch, seq], clipped [batch, seq] bool), where `clipped` marks tokens on
    which the clipped term is the active one (rho > 1 + ch with A > 0, or rho < 1 - cl with
    A < 0); those tokens have zero surrogate gradient.
    """
    ratio = torch.exp(logp - old_logp)  # [batch, seq]
    adv = advantages.unsqueeze(-1)  # [batch, 1]
    unclipped = ratio * adv  # [batch, seq]
    clipped_obj = torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high) * adv  # [batch, seq]
    loss = -torch.minimum(unclipped, clipped_obj)  # [batch, seq]
    clipped = ((adv > 0) & (ratio > 1.0 + clip_high)) | ((adv < 0) & (ratio < 1.0 - clip_low))
    return loss, clipped


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `values` over tokens where mask is set ([batch, seq] -> scalar); 0 if none."""
    m = mask.to(values.dtype)  # [batch, seq]
    return (values * m).sum() / m.sum().clamp(min=1.0)


def aggregate(
    per_token: torch.Tensor,
    mask: torch.Tensor,
    mode: str = "grpo",
    max_completion_length: int | None = None,
) -> torch.Tensor:
    """Reduce a per-token loss [batch, seq] with completion mask [batch, seq] to a scalar.

    "grpo"          : mean over each sequence's masked tokens, then mean over the batch; a
                      sequence with no masked token contributes 0 and still counts in the
                      batch mean (the batch size is the denominator).
    "dapo" / "bnpo" : token level, sum over all masked tokens / number of masked tokens.
    "dr_grpo"       : sum over masked tokens / (batch * max_completion_length).
    """
    if mode not in AGGREGATION_MODES:
        raise ValueError(f"mode must be one of {AGGREGATION_MODES}, got {mode!r}")
    if mask.shape != per_token.shape:
        raise ValueError(f"mask {tuple(mask.shape)} and loss {tuple(per_token.shape)} differ")
    m = mask.to(per_token.dtype)  # [batch, seq]
    masked = per_token * m  # [batch, seq]
    if mode == "grpo":
        per_seq = masked.sum(-1) / m.sum(-1).clamp(min=1.0)  # [batch]
        return per_seq.mean()
    if mode in ("dapo", "bnpo"):
        return masked.sum() / m.sum().clamp(min=1.0)
    if max_completion_length is None or max_completion_length < 1:
        raise ValueError("mode 'dr_grpo' needs a positive max_completion_length")
    return masked.sum() / (per_token.shape[0] * max_completion_length)


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    ref_logp: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    beta: float = 0.04,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    mode: str = "grpo",
    max_completion_length: int | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """GRPO objective as a loss: aggregate(clipped_surrogate + beta * k3_kl).

    logp, old_logp, ref_logp, mask [batch, seq]; advantages [batch]. The KL term is left
    out of the loss when beta == 0 or ref_logp is None. Returns (scalar loss, stats) with
    stats the detached floats "kl" (masked token mean of k3; 0.0 without ref_logp, logged
    even when beta == 0), "clip_fraction" and "ratio_mean" (masked token means).
    """
    surrogate, clipped = clipped_surrogate(logp, old_logp, advantages, clip_low, clip_high)
    per_token = surrogate  # [batch, seq]
    kl_mean = 0.0
    if ref_logp is not None:
        if beta != 0.0:
            kl = k3_kl(logp, ref_logp)  # [batch, seq]
            per_token = per_token + beta * kl
            kl_mean = float(_masked_mean(kl.detach(), mask))
        else:
            with torch.no_grad():
                kl_mean = float(_masked_mean(k3_kl(logp, ref_logp), mask))
    loss = aggregate(per_token, mask, mode=mode, max_completion_length=max_completion_length)
    with torch.no_grad():
        ratio = torch.exp(logp - old_logp)  # [batch, seq]
        stats = {
            "kl": kl_mean,
            "clip_fraction": float(_masked_mean(clipped.to(logp.dtype), mask)),
            "ratio_mean": float(_masked_mean(ratio, mask)),
        }
    return loss, stats


def token_log_probs(
    logits: torch.Tensor, tokens: torch.Tensor, positions: torch.Tensor | None = None
) -> torch.Tensor:
    """log pi(token | context) = logits[token] - logsumexp(logits), in at least float32.

    logits [batch, seq, vocab], tokens [batch, n] -> [batch, n] float32 (float64 for float64
    logits). Token i is scored with the logits at ``positions[i]`` ([n], or [batch, n] to
    differ per row; several tokens may share one position), or at position i when
    ``positions`` is None (then n = seq). No float32 copy of half-precision logits is held
    for more than one sequence at a time.
    """
    if positions is None:
        positions = torch.arange(tokens.shape[1], device=tokens.device)
    positions = positions.expand(tokens.shape)  # [batch, n]
    rows = torch.arange(tokens.shape[0], device=tokens.device)[:, None]
    picked = logits[rows, positions, tokens]  # [batch, n]
    if logits.dtype in (torch.float32, torch.float64):
        normaliser = torch.logsumexp(logits, dim=-1)  # [batch, seq]
    else:
        normaliser = _HalfLogSumExp.apply(logits)
        picked = picked.float()
    return picked - normaliser.gather(1, positions)


class _HalfLogSumExp(torch.autograd.Function):
    """logsumexp over the last axis of half-precision logits [batch, seq, vocab], in float32,
    one sequence at a time, forward and backward. Autograd's own ``logsumexp(row.float())``
    would keep every row's float32 copy until the backward pass (twice the bf16 logits: 240
    MB for a text-task step); this keeps the logits as they are and recomputes the softmax
    per row in the backward pass, with the same float32 operations."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor) -> torch.Tensor:
        out = torch.stack([torch.logsumexp(row.float(), dim=-1) for row in logits])
        ctx.save_for_backward(logits, out)
        return out  # [batch, seq] float32

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        logits, out = ctx.saved_tensors
        rows = [
            (torch.exp(row.float() - lse[:, None]) * g[:, None]).to(logits.dtype)
            for row, lse, g in zip(logits, out, grad, strict=True)
        ]
        return torch.stack(rows)
