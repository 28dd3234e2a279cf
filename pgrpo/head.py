"""The output layer fused with the log-probs of the tokens it scores, a few rows at a time.

A training or reference pass needs, for each scored token, ``logits[token] - logsumexp(logits)``
over the whole vocabulary (49k entries for SmolLM2). Computed the plain way, the output layer
writes every scored row's logits at once ([rows, vocab]: 120 MB in bfloat16 for a text-task
step, twice that as the float32 copy the log-sum-exp reads), and each pass over them (cast,
max, subtract, exponentiate, sum; the softmax again in the backward pass) streams that much
memory. :func:`head_log_probs` takes the hidden states instead and runs the output layer on
``CHUNK_ROWS`` rows at a time, so that a chunk's logits stay in the processor's cache while
they are reduced:

* forward: the chunk's logits (the output layer's matrix product, in the compute dtype as
  the model's own output layer computes them), their log-sum-exp in float32 (float64 for
  float64 weights), and the scored tokens' logits picked from the same chunk: the values of
  :func:`pgrpo.loss.token_log_probs` over the full logits;
* with gradients: the softmax-weighted mean of the output weights, ``softmax(logits) @ W``
  ([rows, hidden], the matrix product the backward pass would do anyway), kept instead of the
  logits. The gradient of ``log p(token)`` with respect to the hidden state is
  ``W[token] - softmax @ W``, so the backward pass needs no logits at all.

The output weight must be frozen (it gets no gradient), a plain bias-free linear layer, and
the last operation of the model (no soft-capping or scaling after it): :func:`fused_head`
says whether a model qualifies, and the rollout falls back to the model's own logits where it
does not (a sharded model, an adapter on the output layer).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.distributed.tensor import DTensor

from pgrpo.models import base_model

# Rows of logits per chunk: 64 x 49,152 float32 logits are 12.6 MB, within the last-level
# cache. Measured on 2 cores (1,200 rows of SmolLM2, bf16, forward and backward): 16 rows 589
# ms, 32 rows 403, 64 rows 333 (the two matrix products at the machine's matmul peak), 128
# rows 342; the full logits 719 ms.
CHUNK_ROWS = 64
# The profiler range of the output layer's forward product (benchmarks/profile_step.py counts
# the matrix time under it apart; the model's own output layer gets it there from a hook).
LM_HEAD_RANGE = "pgrpo::lm_head"


def fused_head(model) -> torch.Tensor | None:
    """The output layer's weight [vocab, hidden] when :func:`head_log_probs` computes the
    model's log-probs exactly, else None."""
    head, config = output_layer(model), base_model(model).config
    if type(head) is not torch.nn.Linear or head.bias is not None:
        return None  # e.g. a LoRA layer on the output layer: let the model compute it
    weight = head.weight
    if weight.requires_grad or isinstance(weight, DTensor):
        return None
    if getattr(config, "final_logit_softcapping", None) or hasattr(config, "logit_scale"):
        return None
    return weight


def output_layer(model) -> torch.nn.Module:
    """The model's output layer (the module, so that its hooks run)."""
    return base_model(model).get_output_embeddings()


def decoder(model):
    """The model without its output layer: hidden states after the final norm."""
    return base_model(model).get_decoder()


def head_log_probs(
    hidden: torch.Tensor, weight: torch.Tensor, rows: torch.Tensor, tokens: torch.Tensor
) -> torch.Tensor:
    """log p(tokens[i] | hidden[rows[i]]) under the output layer ``weight``.

    hidden [R, H] (its gradient is computed), weight [V, H] (frozen), rows and tokens [n]
    (several tokens may share a row) -> [n] float32 (float64 for float64 hidden states).
    """
    grad = hidden.requires_grad and torch.is_grad_enabled()
    return _HeadLogProbs.apply(hidden, weight, rows, tokens, grad)


class _HeadLogProbs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, rows, tokens, grad):
        acc = torch.float64 if hidden.dtype == torch.float64 else torch.float32
        n_rows, width = hidden.shape
        picked = torch.empty(tokens.shape[0], dtype=acc, device=hidden.device)
        lse = torch.empty(n_rows, dtype=acc, device=hidden.device)
        expected = torch.empty(n_rows, width, dtype=acc, device=hidden.device) if grad else None
        for start in range(0, n_rows, CHUNK_ROWS):
            stop = min(start + CHUNK_ROWS, n_rows)
            with torch.profiler.record_function(LM_HEAD_RANGE):
                logits = F.linear(hidden[start:stop], weight)  # [C, V], the compute dtype
            wide = logits.to(acc)
            lse[start:stop] = torch.logsumexp(wide, dim=-1)
            here = ((rows >= start) & (rows < stop)).nonzero().squeeze(-1)
            picked[here] = wide[rows[here] - start, tokens[here]]
            if grad:
                probs = torch.exp(wide.sub_(lse[start:stop, None]))
                expected[start:stop] = (probs.to(logits.dtype) @ weight).to(acc)
        ctx.save_for_backward(weight, rows, tokens, expected)
        ctx.hidden_dtype = hidden.dtype
        return picked - lse[rows]

    @staticmethod
    def backward(ctx, grad):
        weight, rows, tokens, expected = ctx.saved_tensors
        grad = grad.to(expected.dtype)
        per_row = torch.zeros(expected.shape[0], dtype=expected.dtype, device=grad.device)
        per_row.index_add_(0, rows, grad)  # each row's summed upstream gradient
        hidden_grad = expected * -per_row[:, None]
        hidden_grad.index_add_(0, rows, weight[tokens].to(expected.dtype) * grad[:, None])
        return hidden_grad.to(ctx.hidden_dtype), None, None, None, None
