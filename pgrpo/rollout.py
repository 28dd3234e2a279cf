"""Rollouts: sample G completions per prompt, and score completion tokens under a policy.

Both run each prompt ONCE and share its key/value cache among its G completions
(``batch_repeat_interleave``), instead of G copies of the full sequence. For MovieLens
prompts of ~200 tokens and answers of a few tokens, that is most of the work saved, in
generation and in the training forward/backward alike; ``full_sequence_log_probs`` is the
plain computation kept as the reference the shared path is tested against.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pgrpo.loss import token_log_probs


@dataclass
class PromptBatch:
    """Left-padded prompt tokens: ``ids``/``mask`` [prompts, prompt_len]."""

    ids: torch.Tensor
    mask: torch.Tensor

    @property
    def lengths(self) -> torch.Tensor:  # [prompts]
        return self.mask.sum(-1)


@dataclass
class Completions:
    """Sampled completions, right-padded: ``ids``/``mask`` [prompts * G, new_tokens]."""

    ids: torch.Tensor
    mask: torch.Tensor


def encode_prompts(tokenizer, conversations: list[list[dict]], device="cpu") -> PromptBatch:
    """Apply the chat template (with the generation prompt) and left-pad to one batch."""
    texts = [
        tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False)
        for c in conversations
    ]
    enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    return PromptBatch(enc["input_ids"].to(device), enc["attention_mask"].to(device))


def _prefill(model, prompts: PromptBatch, group_size: int, logits_to_keep: int = 1):
    """Run the prompts once; return last-position logits and the cache, each repeated G times."""
    position_ids = (prompts.mask.cumsum(-1) - 1).clamp(min=0)  # [P, Lp]
    out = model(
        input_ids=prompts.ids,
        attention_mask=prompts.mask,
        position_ids=position_ids,
        use_cache=True,
        logits_to_keep=logits_to_keep,
    )
    cache = out.cache
    if group_size > 1:
        cache.batch_repeat_interleave(group_size)
    last_logits = out.logits[:, -1].repeat_interleave(group_size, 0)  # [P*G, V]
    return last_logits, cache


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
    generator: torch.Generator | None = None,
) -> Completions:
    """Sample ``group_size`` completions per prompt with a shared-prompt key/value cache.

    Stops a completion at its first stop token (kept, masked in) and the whole batch as soon
    as every completion has stopped, so one-letter answers cost one decoding step.
    """
    logits, cache = _prefill(model, prompts, group_size)
    attention = prompts.mask.repeat_interleave(group_size, 0)  # [B, Lp]
    position = prompts.lengths.repeat_interleave(group_size, 0)  # [B] next position id
    stop = torch.tensor(stop_ids, dtype=torch.long, device=logits.device)
    done = torch.zeros(attention.shape[0], dtype=torch.bool, device=logits.device)
    tokens, masks = [], []
    for step in range(max_new_tokens):
        if greedy:
            token = logits.argmax(-1)
        else:
            probs = torch.softmax(logits.float() / temperature, dim=-1)
            token = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        alive = ~done
        token = torch.where(alive, token, torch.full_like(token, pad_id))
        tokens.append(token)
        masks.append(alive.long())
        done = done | torch.isin(token, stop)
        if bool(done.all()) or step == max_new_tokens - 1:
            break
        attention = torch.cat([attention, alive.long()[:, None]], dim=1)
        out = model(
            input_ids=token[:, None],
            attention_mask=attention,
            position_ids=position[:, None],
            cache=cache,
            use_cache=True,
        )
        cache, logits = out.cache, out.logits[:, -1]
        position = position + 1
    return Completions(torch.stack(tokens, 1), torch.stack(masks, 1))


def completion_log_probs(
    model, prompts: PromptBatch, completions: Completions, group_size: int
) -> torch.Tensor:
    """Log-probs of completion tokens [P*G, T], each prompt run once for its G completions.

    Gradients flow through the shared prompt cache, so the result and its gradient equal
    ``full_sequence_log_probs`` (tested) at a fraction of the cost.
    """
    first_logits, cache = _prefill(model, prompts, group_size)  # [B, V]
    lengths = prompts.lengths.repeat_interleave(group_size, 0)  # [B]
    steps = completions.ids.shape[1]
    first = token_log_probs(first_logits[:, None], completions.ids[:, :1])  # [B, 1]
    if steps == 1:
        return first
    attention = torch.cat([prompts.mask.repeat_interleave(group_size, 0), completions.mask], 1)
    offsets = torch.arange(steps - 1, device=lengths.device)
    position_ids = lengths[:, None] + offsets[None]  # [B, T-1]
    out = model(
        input_ids=completions.ids[:, :-1],
        attention_mask=attention[:, :-1],
        position_ids=position_ids,
        cache=cache,
        use_cache=True,
    )
    rest = token_log_probs(out.logits, completions.ids[:, 1:])  # [B, T-1]
    return torch.cat([first, rest], dim=1)


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
