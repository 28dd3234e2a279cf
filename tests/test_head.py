"""The output layer fused with the log-probs (pgrpo/head.py): the values and hidden-state
gradients of the plain computation (full logits, then token_log_probs), chunk by chunk; the
rollout's fused pass against the model's own output layer; and which models qualify."""

from __future__ import annotations

import pytest
import torch
from test_rollout import PROMPTS, left_padded, some_completions, tiny_policy
from tolerances import assert_equal_up_to_rounding

import pgrpo.head
import pgrpo.rollout
from pgrpo.head import fused_head, head_log_probs
from pgrpo.loss import token_log_probs
from pgrpo.models import LoraSettings, add_lora, autocast
from pgrpo.rollout import completion_log_probs

pytestmark = pytest.mark.numerics


def plain(hidden, weight, rows, tokens):
    """The unfused computation: every row's logits, then token_log_probs."""
    logits = torch.nn.functional.linear(hidden, weight)[None]  # [1, R, V]
    return token_log_probs(logits, tokens[None], rows[None])[0]


def example(dtype, rows=11, vocab=50, width=8, tokens=17, seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(rows, width, generator=g, dtype=torch.float64).to(dtype)
    weight = torch.randn(vocab, width, generator=g, dtype=torch.float64).to(dtype)
    row_of = torch.randint(0, rows, (tokens,), generator=g)
    row_of[:2] = row_of[2]  # several tokens scored at one row
    token = torch.randint(0, vocab, (tokens,), generator=g)
    return hidden.requires_grad_(), weight, row_of, token


@pytest.mark.parametrize("chunk", [1, 4, 64])
def test_fused_log_probs_and_their_gradient_equal_the_full_logits(chunk, monkeypatch):
    """float64, chunks of 1, 4 (a chunk boundary inside the rows) and more than all rows."""
    monkeypatch.setattr(pgrpo.head, "CHUNK_ROWS", chunk)
    hidden, weight, rows, tokens = example(torch.float64)
    upstream = torch.randn(tokens.shape, generator=torch.Generator().manual_seed(1),
                           dtype=torch.float64)  # fmt: skip
    fused = head_log_probs(hidden, weight, rows, tokens)
    (fused_grad,) = torch.autograd.grad((fused * upstream).sum(), hidden)
    expected = plain(hidden, weight, rows, tokens)
    (expected_grad,) = torch.autograd.grad((expected * upstream).sum(), hidden)
    assert fused.dtype == torch.float64 and fused.shape == tokens.shape
    terms = weight.shape[0]  # a log-sum-exp and a softmax-weighted sum over the vocabulary
    assert_equal_up_to_rounding(fused.detach(), expected.detach(), terms=terms,
                                dtype=torch.float64, msg="log-probs")  # fmt: skip
    assert expected_grad.abs().max() > 0
    assert_equal_up_to_rounding(fused_grad, expected_grad, terms=terms, dtype=torch.float64,
                                msg="gradient")  # fmt: skip


def test_fused_bf16_log_probs_are_those_of_the_bf16_logits(monkeypatch):
    """Under bf16 autocast the chunk's logits are the bfloat16 logits the model's output layer
    gives, reduced in float32: the same values as token_log_probs on them; the gradient
    (rounded to bfloat16 once, where the plain backward rounds the logits' gradient) within
    a few bfloat16 ulps."""
    monkeypatch.setattr(pgrpo.head, "CHUNK_ROWS", 4)
    hidden, weight, rows, tokens = example(torch.bfloat16)
    with autocast("bf16"):
        fused = head_log_probs(hidden, weight, rows, tokens)
        expected = plain(hidden, weight, rows, tokens)
    assert fused.dtype == expected.dtype == torch.float32
    assert_equal_up_to_rounding(fused.detach(), expected.detach(), terms=weight.shape[0],
                                dtype=torch.float32, msg="log-probs")  # fmt: skip
    (fused_grad,) = torch.autograd.grad(fused.sum(), hidden)
    (expected_grad,) = torch.autograd.grad(expected.sum(), hidden)
    assert fused_grad.dtype == torch.bfloat16
    assert_equal_up_to_rounding(fused_grad.float(), expected_grad.float(), terms=weight.shape[1],
                                ulps=8, dtype=torch.bfloat16, msg="gradient")  # fmt: skip


def test_without_gradients_nothing_is_kept_for_a_backward_pass():
    hidden, weight, rows, tokens = example(torch.float64)
    with torch.no_grad():
        out = head_log_probs(hidden, weight, rows, tokens)
    assert not out.requires_grad and out.grad_fn is None


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_rollout_fused_pass_equals_the_models_own_output_layer(precision, monkeypatch):
    """completion_log_probs with the fused output layer against the model's own logits
    (pgrpo.rollout's fallback), values and adapter gradients."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    policy = tiny_policy(seed=3)
    policy.get_base_model().to(dtype)
    for p in policy.parameters():
        if p.requires_grad:
            p.data = p.data.float()
    prompts, completions = left_padded(PROMPTS), some_completions(len(PROMPTS), 3, 4, seed=6)
    params = [p for p in policy.parameters() if p.requires_grad]
    mask = completions.mask.bool()

    def log_probs_and_grads():
        with autocast(precision):
            logp = completion_log_probs(policy, prompts, completions, 3)
        return logp.detach(), torch.autograd.grad((logp * mask).sum(), params)

    assert fused_head(policy) is not None
    fused, fused_grads = log_probs_and_grads()
    monkeypatch.setattr(pgrpo.rollout, "fused_head", lambda model: None)
    own, own_grads = log_probs_and_grads()
    assert_equal_up_to_rounding(fused[mask], own[mask], terms=policy.config.vocab_size,
                                dtype=torch.float32, msg="log-probs")  # fmt: skip
    # fp32: sums in another order. bf16: the hidden state's gradient is rounded to bfloat16
    # once here and once (as the logits' gradient) there, then goes down every layer; the
    # bound is per layer, as for the bf16 log-probs (measured: 1.5-2.6 bfloat16 ulps).
    bound = {"terms": policy.config.hidden_size * mask.numel(), "dtype": torch.float32}
    if precision == "bf16":
        bound = {"terms": policy.config.num_hidden_layers, "ulps": 8, "dtype": dtype}
    for a, b in zip(fused_grads, own_grads, strict=True):
        assert b.abs().max() > 0
        assert_equal_up_to_rounding(a, b, msg="gradient", **bound)


@pytest.mark.parametrize("fused", [True, False])
def test_the_tree_holds_real_tokens_and_the_output_layer_runs_where_one_is_scored(
    fused, monkeypatch
):
    """The tree pass feeds only the completions' real tokens (per prompt, padded to the
    prompt with the most) and projects onto the vocabulary only the positions whose next
    token is a real token of the same completion (per prompt, padded to the longest list):
    the fused output layer's rows (pgrpo.head), or the model's own output layer where the
    model does not qualify for it."""
    policy = tiny_policy(seed=5)
    prompts = left_padded(PROMPTS)
    completions = some_completions(len(PROMPTS), 3, 4, seed=3)
    fed, seen = [], []
    embed, head = policy.get_input_embeddings(), policy.get_output_embeddings()
    handles = [
        embed.register_forward_hook(lambda module, args, out: fed.append(args[0].shape)),
        head.register_forward_hook(lambda module, args, out: seen.append(args[0].shape)),
    ]
    if fused:
        fused_rows = pgrpo.rollout.head_log_probs

        def counted(hidden, *args):
            seen.append(hidden.shape)
            return fused_rows(hidden, *args)

        monkeypatch.setattr(pgrpo.rollout, "head_log_probs", counted)
    else:
        monkeypatch.setattr(pgrpo.rollout, "fused_head", lambda model: None)
    completion_log_probs(policy, prompts, completions, 3)
    for handle in handles:
        handle.remove()
    mask = completions.mask.view(len(PROMPTS), 3, 4)
    real, scored = mask.sum((1, 2)), mask[:, :, 1:].sum((1, 2))  # per prompt
    assert real.max() < 3 * 4  # some completions end early: the test shows the saving
    assert [tuple(s) for s in fed] == [(3, max(map(len, PROMPTS))), (3, int(real.max()))]
    if fused:  # the prompts' last positions (prefill), then those and the tree's scored ones
        assert [tuple(s[:-1]) for s in seen] == [(3,), (3 * (1 + int(scored.max())),)]
    else:
        assert [tuple(s[:-1]) for s in seen] == [(3, 1), (3, int(scored.max()))]  # prefill, tree


def test_a_model_qualifies_only_with_a_frozen_plain_output_layer():
    policy = tiny_policy(seed=0)
    assert fused_head(policy) is policy.get_output_embeddings().weight
    assert fused_head(policy.get_base_model()) is not None  # without peft too
    policy.get_output_embeddings().weight.requires_grad_(True)
    assert fused_head(policy) is None  # a trained output layer: its gradient is needed
    on_head = add_lora(tiny_policy(seed=0).get_base_model().requires_grad_(False),
                       LoraSettings(r=2, alpha=4, target_modules=("lm_head",)))  # fmt: skip
    assert fused_head(on_head) is None
    capped = tiny_policy(seed=0)
    capped.config.final_logit_softcapping = 30.0
    assert fused_head(capped) is None
