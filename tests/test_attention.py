"""Grouped attention (pgrpo.attention) computes what torch's scaled_dot_product_attention
computes, with its key/value heads shared by groups of query heads, and picks itself only
where it should."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from tolerances import assert_equal_up_to_rounding

from pgrpo.attention import grouped_attention_forward
from pgrpo.io import PgrpoError
from pgrpo.models import attention_implementation

pytestmark = pytest.mark.numerics

BATCH, HEADS, KV_HEADS, WIDTH = 2, 6, 2, 8


class Layer(torch.nn.Module):
    is_causal = True


def qkv(queries: int, keys: int, dtype=torch.float64, seed: int = 0):
    """Every head different, so that a query head paired with the wrong key head shows."""
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(BATCH, HEADS, queries, WIDTH, generator=g, dtype=dtype)
    k = torch.randn(BATCH, KV_HEADS, keys, WIDTH, generator=g, dtype=dtype)
    v = torch.randn(BATCH, KV_HEADS, keys, WIDTH, generator=g, dtype=dtype)
    return q, k, v


def reference(q, k, v, mask=None, is_causal=False):
    """sdpa with the key/value heads repeated per query head (transformers' repeat_kv):
    output [B, Q, H, D] as transformers' attention functions return it."""
    group = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(group, 1), v.repeat_interleave(group, 1)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal)
    return out.transpose(1, 2)


def random_mask(queries: int, keys: int, seed: int = 1) -> torch.Tensor:
    """A boolean mask per batch row, shared by the heads; every query sees at least one key."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(BATCH, 1, queries, keys, generator=g) < 0.6
    mask[..., 0] = True
    return mask


@pytest.mark.parametrize("queries,keys", [(5, 5), (3, 7), (1, 4)])
def test_grouped_attention_equals_sdpa_under_a_mask_with_its_gradients(queries, keys):
    q, k, v = (t.requires_grad_() for t in qkv(queries, keys))
    mask = random_mask(queries, keys)
    out, weights = grouped_attention_forward(Layer(), q, k, v, mask)
    expected = reference(q, k, v, mask)
    assert weights is None and out.is_contiguous()
    assert_equal_up_to_rounding(out, expected, terms=keys * WIDTH, msg="output")
    cotangent = torch.randn(out.shape, generator=torch.Generator().manual_seed(2), dtype=out.dtype)
    grads = torch.autograd.grad((out * cotangent).sum(), (q, k, v))
    expected_grads = torch.autograd.grad((expected * cotangent).sum(), (q, k, v))
    for name, a, b in zip("qkv", grads, expected_grads, strict=True):
        assert_equal_up_to_rounding(a, b, terms=keys * WIDTH * HEADS, msg=f"d{name}")


def test_no_mask_means_causal_aligned_to_the_last_key():
    """Queries that follow a cache (3 new tokens after 4 cached ones) see every cached key
    and the new keys up to their own."""
    q, k, v = qkv(3, 7)
    out, _ = grouped_attention_forward(Layer(), q, k, v, None)
    causal = torch.ones(3, 7, dtype=torch.bool).tril(4)
    assert_equal_up_to_rounding(out, reference(q, k, v, causal), terms=7 * WIDTH)
    square, _ = grouped_attention_forward(Layer(), *qkv(5, 5), None)
    assert_equal_up_to_rounding(square, reference(*qkv(5, 5), is_causal=True), terms=5 * WIDTH)
    full, _ = grouped_attention_forward(Layer(), q, k, v, None, is_causal=False)
    assert_equal_up_to_rounding(full, reference(q, k, v), terms=7 * WIDTH)


def test_a_query_with_nothing_to_attend_stays_finite():
    """A left-padding query row may see no key at all: finite output, never NaN."""
    q, k, v = qkv(4, 4)
    mask = torch.ones(BATCH, 1, 4, 4, dtype=torch.bool).tril()
    mask[0, :, :2] = False  # batch row 0: its first two queries see nothing
    out, _ = grouped_attention_forward(Layer(), q, k, v, mask)
    assert out.isfinite().all()
    assert_equal_up_to_rounding(out[0, 2:], reference(q, k, v, mask)[0, 2:], terms=4 * WIDTH)


def test_bfloat16_stays_within_bfloat16_rounding_of_float64():
    q, k, v = qkv(16, 16, seed=3)
    mask = random_mask(16, 16)
    low, _ = grouped_attention_forward(Layer(), *(t.bfloat16() for t in (q, k, v)), mask)
    assert low.dtype == torch.bfloat16
    # Inputs, scores, probabilities and output each round once in bfloat16.
    assert_equal_up_to_rounding(low.double(), reference(q, k, v, mask), terms=16 * WIDTH,
                                dtype=torch.bfloat16, ulps=4)  # fmt: skip


def test_additive_masks_are_refused():
    q, k, v = qkv(2, 2)
    with pytest.raises(TypeError, match="boolean mask"):
        grouped_attention_forward(Layer(), q, k, v, torch.zeros(BATCH, 1, 2, 2, dtype=q.dtype))


def test_auto_is_grouped_without_a_gpu_and_names_are_checked():
    assert attention_implementation("auto") == ("sdpa" if torch.cuda.is_available() else "grouped")
    assert attention_implementation("eager") == "eager"
    with pytest.raises(PgrpoError, match="model.attention: 'flash' is not one of"):
        attention_implementation("flash")
