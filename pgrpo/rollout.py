"""Rollouts: sample G completions per prompt, and score completion tokens under a policy.

Both lay each prompt and its G completions out as ONE tree-shaped sequence: the prompt's
tokens once, then the G completions side by side, with an attention mask that lets every
completion see the prompt and its own earlier tokens but not its siblings, and position ids
that restart each completion right after the prompt. The prompt is therefore computed once
for its whole group, with no copy of its key/value cache per completion (a cache repeated G
times is G times the memory traffic of the prompt). For MovieLens prompts of ~250 tokens and
answers of a few tokens that is most of the work saved, in generation and in the training
forward/backward alike; ``full_sequence_log_probs`` is the plain computation (G full copies)
kept as the reference the tree path is tested against.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import DynamicCache

from pgrpo.attention import takes_boolean_mask
from pgrpo.head import decoder, fused_head, head_log_probs, output_layer
from pgrpo.loss import token_log_probs


@dataclass
class PromptBatch:
    """Left-padded prompt tokens: ``ids``/``mask`` [prompts, prompt_len]."""

    ids: torch.Tensor
    mask: torch.Tensor

    @property
    def lengths(self) -> torch.Tensor:  # [prompts]
        return self.mask.sum(-1)

    @property
    def positions(self) -> torch.Tensor:  # [prompts, prompt_len]; pads get 0
        return (self.mask.cumsum(-1) - 1).clamp(min=0)


@dataclass
class Completions:
    """Sampled completions, right-padded: ``ids``/``mask`` [prompts * G, new_tokens].

    ``log_probs`` (from :func:`generate`) are the sampled tokens' log-probabilities under the
    policy that sampled them (logits at temperature 1), 0 where masked.
    """

    ids: torch.Tensor
    mask: torch.Tensor
    log_probs: torch.Tensor | None = None


def _chat_texts(tokenizer, conversations: list[list[dict]]) -> list[str]:
    return [
        tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False)
        for c in conversations
    ]


def encode_prompts(tokenizer, conversations: list[list[dict]], device="cpu") -> PromptBatch:
    """Apply the chat template (with the generation prompt) and left-pad to one batch."""
    texts = _chat_texts(tokenizer, conversations)
    enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    return PromptBatch(enc["input_ids"].to(device), enc["attention_mask"].to(device))


def prompt_lengths(tokenizer, conversations: list[list[dict]]) -> list[int]:
    """How many tokens each conversation's prompt takes, exactly as :func:`encode_prompts`
    encodes it."""
    enc = tokenizer(_chat_texts(tokenizer, conversations), add_special_tokens=False)
    return [len(ids) for ids in enc["input_ids"]]


@dataclass
class Prefill:
    """The prompts run once: last-position ``logits`` [P, V] and their key/value ``cache``;
    ``hidden`` [P, H], the last position's hidden state, where the output layer is fused with
    the log-probs (:func:`pgrpo.head.fused_head`; None where it is not).

    Made with gradients enabled, it serves both the sampling (through a detached copy) and
    the training pass (which backpropagates into it): the prompt is computed once per step.
    """

    logits: torch.Tensor
    cache: DynamicCache
    hidden: torch.Tensor | None = None

    def cache_copy(self, model, detach: bool) -> DynamicCache:
        """A new cache holding the prompts' keys and values (a forward pass appends to it)."""
        layers = [
            (k.detach(), v.detach()) if detach else (k, v)
            for k, v, *_ in self.cache  # type: ignore[misc]
        ]
        return DynamicCache(layers, config=model.config)


def prefill(model, prompts: PromptBatch) -> Prefill:
    """Run the prompts once (with or without gradients, as the caller's context says).

    The output layer runs at the last position only, named by index rather than by
    ``logits_to_keep=1``: that slice is a strided view, which ``matmul`` cannot fold into one
    matrix product, so it copied the output layer's weight once per prompt (forward and
    backward), a quarter of a MovieLens step's matrix time in bf16.
    """
    inputs = {"input_ids": prompts.ids, "attention_mask": prompts.mask,
              "position_ids": prompts.positions, "use_cache": True}  # fmt: skip
    weight = fused_head(model)
    if weight is not None:
        out = decoder(model)(**inputs)
        hidden = out.last_hidden_state[:, -1].contiguous()  # [P, H]
        return Prefill(output_layer(model)(hidden), out.cache, hidden)  # its hooks see it
    last = torch.tensor([prompts.ids.shape[1] - 1], device=prompts.ids.device)
    out = model(**inputs, logits_to_keep=last)
    return Prefill(out.logits[:, -1], out.cache)


def tree_attention_mask(
    model, valid: torch.Tensor, segment: torch.Tensor, query_index: torch.Tensor
) -> torch.Tensor:
    """The 4D attention mask of tree-shaped sequences, in the form ``model``'s attention takes.

    ``valid`` [P, K]: which keys are real tokens; ``segment`` [K], or [P, K] when the layout
    differs per prompt: 0 for prompt keys (seen by every query), g + 1 for keys of completion
    g (seen only by that completion's later tokens); ``query_index`` [Q]: each query's own
    index on the key axis. A query sees a key when the key is real, not after the query, and
    in the prompt or in the query's own completion. Every query sees itself, so that no row is
    empty (padding rows are computed but never read).
    """
    keys = torch.arange(segment.shape[-1], device=segment.device)
    query = query_index[:, None]  # [Q, 1]
    segment = segment.expand(valid.shape)  # [P, K]
    own = segment[:, query_index][:, :, None]  # [P, Q, 1]
    same = (segment[:, None] == 0) | (segment[:, None] == own)  # [P, Q, K]
    allowed = (keys[None] <= query)[None] & same & valid[:, None].bool()
    allowed = allowed | (keys[None] == query)[None]  # [P, Q, K]
    allowed = allowed[:, None]  # [P, 1, Q, K], shared by all heads
    if takes_boolean_mask(model):
        return allowed
    dtype = model.get_input_embeddings().weight.dtype
    bias = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    return bias.masked_fill_(~allowed, torch.finfo(dtype).min)


@torch.no_grad()
def generate(
    model,
    prompts: PromptBatch,
    group_size: int,
    max_new_tokens: int,
    stop_ids: list[int],
    pad_id: int,
    temperature: float = 1.0,
    greedy: bool = False,
    generator: torch.Generator | list[torch.Generator] | None = None,
    prefilled: Prefill | None = None,
) -> Completions:
    """Sample ``group_size`` completions per prompt; each prompt is computed once.

    The key/value cache holds each prompt once (batch = prompts); decoding step t feeds the G
    new tokens of every prompt as G queries with a tree mask. Stops a completion at its first
    stop token (kept, masked in) and the whole batch as soon as every completion has stopped,
    so one-letter answers cost one decoding step. ``prefilled``: the prompts already run by
    :func:`prefill` (left untouched, so that the training pass can reuse them).
    ``generator``: one for the batch, or one per prompt (then a prompt's answers do not depend
    on which other prompts share the batch, e.g. on how many processes split it).
    """
    n_prompts, g = prompts.ids.shape[0], group_size
    if prefilled is None:
        prefilled = prefill(model, prompts)
    cache = prefilled.cache_copy(model, detach=True)
    logits = prefilled.logits.detach().repeat_interleave(g, 0)  # [B, V]
    valid, segment = prompts.mask.bool(), torch.zeros_like(prompts.ids[0])
    own_segment = torch.arange(1, g + 1, device=segment.device)
    stop = torch.tensor(stop_ids, dtype=torch.long, device=logits.device)
    done = torch.zeros(logits.shape[0], dtype=torch.bool, device=logits.device)
    tokens, masks, log_probs = [], [], []
    for step in range(max_new_tokens):
        logits = logits.float()
        if greedy:
            token = logits.argmax(-1)
        else:
            probs = torch.softmax(logits / temperature, dim=-1)
            token = _sample(probs, generator, g)
        alive = ~done
        token = torch.where(alive, token, torch.full_like(token, pad_id))
        tokens.append(token)
        masks.append(alive.long())
        log_probs.append(token_log_probs(logits[:, None], token[:, None])[:, 0] * alive)
        done = done | torch.isin(token, stop)
        if bool(done.all()) or step == max_new_tokens - 1:
            break
        valid = torch.cat([valid, alive.view(n_prompts, g)], dim=1)
        segment = torch.cat([segment, own_segment])
        query_index = torch.arange(valid.shape[1] - g, valid.shape[1], device=valid.device)
        out = model(
            input_ids=token.view(n_prompts, g),
            attention_mask=tree_attention_mask(model, valid, segment, query_index),
            position_ids=(prompts.lengths + step)[:, None].expand(n_prompts, g),
            cache=cache,
            use_cache=True,
        )
        cache, logits = out.cache, out.logits.reshape(n_prompts * g, -1)
    return Completions(torch.stack(tokens, 1), torch.stack(masks, 1), torch.stack(log_probs, 1))


def _sample(probs: torch.Tensor, generator, group_size: int) -> torch.Tensor:
    """One token per row of ``probs`` [B, V] by inverse transform sampling: a uniform draw
    per row, located in the row's cumulative probabilities (float64). ``torch.multinomial``
    draws one exponential variate per vocabulary entry instead (49k per answer token for
    SmolLM2), which cost more than the rest of a decoding step's sampling. Per-prompt
    generators draw for their G rows."""
    shape = {"device": probs.device, "dtype": torch.float64}
    if isinstance(generator, list | tuple):
        u = torch.cat([torch.rand(group_size, generator=g, **shape) for g in generator])
    else:
        u = torch.rand(probs.shape[0], generator=generator, **shape)
    cdf = probs.double().cumsum(-1)  # [B, V]; a zero-probability token is never drawn
    token = torch.searchsorted(cdf, (u * cdf[:, -1])[:, None], right=True).squeeze(-1)
    return token.clamp_(max=probs.shape[-1] - 1)  # [B]


def completion_log_probs(
    model,
    prompts: PromptBatch,
    completions: Completions,
    group_size: int,
    prefilled: Prefill | None = None,
) -> torch.Tensor:
    """Log-probs of completion tokens [P*G, T]; each prompt is computed once for its group.

    After the prompts (``prefilled``, or run here), one forward pass feeds every prompt's G
    completions side by side as tree sequences. Gradients reach the prompt's keys and values
    from every completion, so the result and its gradient equal ``full_sequence_log_probs``
    (tested) at a fraction of the cost. The tree holds only the completions' real tokens:
    each completion's tokens up to its end, the G completions one after the other, padded at
    the end to the prompt with the most (a one-letter answer in a batch whose longest answer
    has 4 tokens takes 2 positions, not 4). The output layer runs only at the positions whose
    next token is scored: not at a completion's last token. Masked tokens get log-prob 0.
    """
    if prefilled is None:
        prefilled = prefill(model, prompts)
    n_prompts, prompt_len = prompts.ids.shape
    g, steps = group_size, completions.ids.shape[1]
    device = prompts.ids.device
    real = completions.mask.reshape(n_prompts, g * steps).bool()  # right-padded per answer
    # The tree's slots, per prompt: the real tokens in order (completion by completion), then
    # the other entries, cut to the longest prompt's count of real tokens.
    order = torch.sort((~real).int(), dim=1, stable=True).indices
    order = order[:, : max(int(real.sum(1).max()), 1)]  # [P, W]
    tree_ids = completions.ids.reshape(n_prompts, g * steps).gather(1, order)
    tree_real = real.gather(1, order)
    offset = torch.arange(steps, device=device).repeat(g)[order]  # token t of its answer
    completion = torch.arange(1, g + 1, device=device).repeat_interleave(steps)[order]
    segment = torch.cat([completion.new_zeros(n_prompts, prompt_len), completion], 1)
    valid = torch.cat([prompts.mask.bool(), tree_real], 1)
    # Token t > 0 is predicted by the slot before it (token t - 1 of the same answer), token 0
    # by the prompt's last position. The slots kept for the output layer are those whose next
    # slot is such a token, listed per prompt (padded with slot 0 to the longest list);
    # ``source`` says which row of ``logits`` (row 0: the prompt's) scores each slot's token.
    needed = torch.zeros_like(tree_real)
    needed[:, :-1] = tree_real[:, 1:] & (offset[:, 1:] > 0)
    kept = torch.sort(needed.int(), dim=1, descending=True, stable=True).indices
    kept = kept[:, : int(needed.sum(1).max())]  # [P, M]
    rank = needed.cumsum(1)  # slot q of prompt p is logits row rank[p, q] (1-based)
    previous = torch.cat([rank.new_zeros(n_prompts, 1), rank[:, :-1]], 1)  # slot q - 1
    source = torch.where((offset > 0) & tree_real, previous, 0)  # [P, W]
    inputs = {
        "input_ids": tree_ids,
        "attention_mask": tree_attention_mask(
            model, valid, segment, torch.arange(prompt_len, segment.shape[1], device=device)
        ),
        "position_ids": prompts.lengths[:, None] + offset,
        "cache": prefilled.cache_copy(model, detach=False),
    }
    weight = fused_head(model)
    if weight is not None and prefilled.hidden is not None:
        hidden = decoder(model)(**inputs).last_hidden_state  # [P, W, H]
        kept_hidden = hidden.gather(1, kept[..., None].expand(-1, -1, hidden.shape[-1]))
        rows = torch.cat([prefilled.hidden[:, None], kept_hidden], dim=1)  # [P, 1 + M, H]
        first = torch.arange(n_prompts, device=device)[:, None] * rows.shape[1]
        scored = head_log_probs(
            rows.reshape(-1, rows.shape[-1]), weight, (first + source).reshape(-1),
            tree_ids.reshape(-1),
        ).view(n_prompts, -1) * tree_real  # fmt: skip
    else:
        out = model(**inputs, logits_to_keep=kept)
        logits = torch.cat([prefilled.logits[:, None], out.logits], dim=1)  # [P, 1 + M, V]
        scored = token_log_probs(logits, tree_ids, source) * tree_real  # [P, W]
    log_probs = scored.new_zeros(n_prompts, g * steps).scatter(1, order, scored)
    return log_probs.reshape(n_prompts * g, steps)


def full_sequence_log_probs(
    model, prompts: PromptBatch, completions: Completions, group_size: int
) -> torch.Tensor:
    """Reference computation: G full copies of prompt + completion, one plain forward."""
    ids = torch.cat([prompts.ids.repeat_interleave(group_size, 0), completions.ids], 1)
    mask = torch.cat([prompts.mask.repeat_interleave(group_size, 0), completions.mask], 1)
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=position_ids).logits
    steps = completions.ids.shape[1]
    return token_log_probs(logits[:, -steps - 1 : -1], completions.ids)
