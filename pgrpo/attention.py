"""Grouped attention: scaled dot-product attention written as two matrix products per key
head, for CPUs, registered with transformers as ``attn_implementation="grouped"``.

PyTorch's CPU kernels for ``scaled_dot_product_attention`` are slow at this project's shapes
(a few hundred positions, head width 64): the flash kernel runs at about a tenth of the
machine's matrix throughput, its backward slower still, and the math kernel computes bfloat16
in float32. On a MovieLens training step they took a quarter of the time. Here:

* the query heads that share a key/value head (grouped-query attention) are stacked into one
  matrix, so keys and values are never repeated per query head (``repeat_kv``) and each key
  head costs one ``matmul`` for the scores and one for the output;
* scores are in the compute dtype; softmax accumulates in float32 and rounds its output to
  the compute dtype, as eager attention's ``softmax(dtype=float32).to(dtype)`` does;
* masks are boolean (True = may attend), the form ``sdpa`` takes, so every mask this project
  builds serves both; masked scores get the dtype's lowest value, not ``-inf``, so that a row
  with nothing to attend to (a left-padding query) is finite, never read, and not NaN.

It materialises the [queries, keys] scores per head, as eager attention does, which costs
memory for long sequences: on GPUs ``sdpa`` (flash and memory-efficient kernels) is the
choice (``model.attention: auto``).
"""

from __future__ import annotations

import torch
from transformers import AttentionInterface
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

NAME = "grouped"


def grouped_attention_forward(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    is_causal: bool | None = None,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """transformers' attention signature: ``query`` [B, H, Q, D], ``key``/``value``
    [B, KV, K, D], ``attention_mask`` boolean [B or 1, 1, Q, K] or None; returns the output
    [B, Q, H, D] and no attention weights."""
    batch, heads, queries, width = query.shape
    kv_heads, keys = key.shape[1], key.shape[2]
    group = heads // kv_heads
    scale = width**-0.5 if scaling is None else scaling
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    if attention_mask is None and queries > 1 and causal:
        # No mask given: causal, aligned to the end of the keys (a cache may precede).
        attention_mask = torch.ones(queries, keys, dtype=torch.bool, device=query.device).tril(
            keys - queries
        )[None, None]
    # Query head h uses key head h // group: stack each key head's queries into one matrix.
    # The scale goes on the queries, D values per query rather than K scores (the same
    # numbers when it is a power of two, as 64**-0.5 is).
    stacked = (query * scale).reshape(batch, kv_heads, group * queries, width)
    scores = torch.matmul(stacked, key.transpose(-1, -2))  # [B, KV, G*Q, K]
    if attention_mask is not None:
        if attention_mask.dtype != torch.bool:
            raise TypeError("grouped attention takes a boolean mask (True = may attend)")
        # In place: the product's backward does not need its output. Shared by the heads.
        scores.view(batch, kv_heads, group, queries, keys).masked_fill_(
            attention_mask.logical_not()[:, :, None], torch.finfo(scores.dtype).min
        )
    probs = torch.softmax(scores.view(batch, kv_heads, group * queries, keys), dim=-1)
    if dropout > 0.0 and module.training:
        probs = torch.nn.functional.dropout(probs, p=dropout)
    out = torch.matmul(probs, value)  # [B, KV, G*Q, D]
    return out.view(batch, heads, queries, width).transpose(1, 2).contiguous(), None


def register() -> None:
    """Make ``attn_implementation="grouped"`` known to transformers (idempotent)."""
    AttentionInterface.register(NAME, grouped_attention_forward)
    ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, sdpa_mask)


def takes_boolean_mask(model) -> bool:
    """Whether ``model``'s attention takes boolean masks (sdpa, grouped) rather than additive
    float ones (eager)."""
    return model.config._attn_implementation in ("sdpa", NAME)


register()
