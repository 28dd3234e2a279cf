"""Generation and completion log-probs over tree sequences (each prompt once, its G completions
side by side) equal the plain computation on G full copies of prompt + completion."""

from __future__ import annotations

import pytest
import torch
from tolerances import assert_equal_up_to_rounding
from transformers import LlamaConfig, LlamaForCausalLM

from pgrpo.models import LoraSettings, add_lora, attention_implementation
from pgrpo.rollout import (
    Completions,
    PromptBatch,
    completion_log_probs,
    full_sequence_log_probs,
    generate,
    prefill,
)

pytestmark = pytest.mark.numerics

PAD, STOP = 0, 1


def tiny_model(seed: int = 0, attention: str = "sdpa") -> LlamaForCausalLM:
    torch.manual_seed(seed)
    # Large initial weights, so that positions and attention visibly change the argmax.
    config = LlamaConfig(
        vocab_size=40, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, pad_token_id=PAD, eos_token_id=STOP,
        initializer_range=0.5, attn_implementation=attention_implementation(attention),
    )  # fmt: skip
    return LlamaForCausalLM(config)


def tiny_policy(seed: int = 0, attention: str = "sdpa"):
    model = tiny_model(seed, attention)
    model.requires_grad_(False)
    policy = add_lora(model, LoraSettings(r=4, alpha=8, target_modules=("q_proj", "v_proj")))
    # LoRA's B starts at zero; make the adapter non-trivial so its gradients are informative.
    for name, p in policy.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.1)
    return policy


def left_padded(prompts: list[list[int]]) -> PromptBatch:
    width = max(map(len, prompts))
    ids = torch.tensor([[PAD] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    return PromptBatch(ids, mask)


def some_completions(groups: int, group_size: int, steps: int, seed: int) -> Completions:
    """Random completions; some stop early (stop token, then masked padding)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(2, 40, (groups * group_size, steps), generator=g)
    mask = torch.ones_like(ids)
    for row, stop_at in enumerate(torch.randint(0, steps + 2, (groups * group_size,), generator=g)):
        if stop_at < steps:
            ids[row, stop_at] = STOP
            ids[row, stop_at + 1 :] = PAD
            mask[row, stop_at + 1 :] = 0
    return Completions(ids, mask)


PROMPTS = [[5, 6, 7, 8, 9, 10, 11], [12, 13, 14], [15, 16, 17, 18, 19]]


# sdpa and grouped (pgrpo.attention) take a boolean mask, eager an additive float one. sdpa and
# grouped run in float64, eager in float32, because transformers' own float64 eager mask turns
# left-padding rows into NaN in the plain reference computation. All round at float32: Llama's
# RMSNorm (and eager softmax) compute in float32 whatever the model's dtype.
DTYPES = {"sdpa": torch.float64, "grouped": torch.float64, "eager": torch.float32}
ATTENTIONS = list(DTYPES)
ROUNDS_AT = torch.float32


def reduction_terms(policy, completions: Completions) -> dict[str, int]:
    """How many terms feed one element (tests/tolerances.py): a log-prob comes through dot
    products of the model's width; a weight's gradient adds one such term per token position
    of the plain computation (G full copies of prompt + completion)."""
    width = policy.config.hidden_size
    positions = completions.ids.shape[0] * (max(map(len, PROMPTS)) + completions.ids.shape[1])
    return {"log_probs": width, "gradients": width * positions}


@pytest.mark.parametrize("attention", ATTENTIONS)
@pytest.mark.parametrize("group_size,steps", [(1, 1), (3, 1), (3, 4), (4, 6)])
def test_tree_log_probs_and_gradients_equal_full_sequences(group_size, steps, attention):
    policy = tiny_policy(attention=attention).to(DTYPES[attention])
    completions = some_completions(len(PROMPTS), group_size, steps, seed=steps)
    assert_tree_equals_full_sequences(policy, left_padded(PROMPTS), completions, group_size)


def assert_tree_equals_full_sequences(policy, prompts, completions, group_size):
    """Log-probs and the adapter's gradients of a weighted loss, from the tree pass and from
    G full copies of prompt + completion, agree up to rounding (on the policy's device)."""
    dtype, device = policy.dtype, completions.ids.device
    g = torch.Generator().manual_seed(1)
    weights = torch.randn(completions.ids.shape, generator=g, dtype=dtype).to(device)
    params = [p for p in policy.parameters() if p.requires_grad]

    def loss_and_grads(fn):
        logp = fn(policy, prompts, completions, group_size)
        loss = (logp * weights * completions.mask).sum()
        return logp.detach(), torch.autograd.grad(loss, params)

    shared, shared_grads = loss_and_grads(completion_log_probs)
    full, full_grads = loss_and_grads(full_sequence_log_probs)
    assert shared.device == device and all(g.device == device for g in shared_grads)
    mask = completions.mask.bool()
    terms = reduction_terms(policy, completions)
    assert_equal_up_to_rounding(shared[mask].cpu(), full[mask].cpu(), terms=terms["log_probs"],
                                dtype=ROUNDS_AT, msg="log-probs")  # fmt: skip
    for a, b in zip(shared_grads, full_grads, strict=True):
        assert b.abs().max() > 0
        assert_equal_up_to_rounding(a.cpu(), b.cpu(), terms=terms["gradients"], dtype=ROUNDS_AT,
                                    msg="gradient")  # fmt: skip


def test_one_prefill_serves_sampling_and_the_training_pass():
    """The trainer's fused step: prompts run once with gradients, sampled from, then trained
    on. Log-probs and gradients equal the plain computation, and sampling leaves the
    prefill's cache as it was."""
    policy = tiny_policy(seed=2).double()
    prompts = left_padded(PROMPTS)
    params = [p for p in policy.parameters() if p.requires_grad]
    prefilled = prefill(policy, prompts)
    lengths = [k.shape[-2] for k, _, *_ in prefilled.cache]
    g = torch.Generator().manual_seed(3)
    completions = generate(policy, prompts, 3, 4, [STOP], PAD, generator=g, prefilled=prefilled)
    assert [k.shape[-2] for k, _, *_ in prefilled.cache] == lengths
    assert completions.ids.shape[1] > 1  # the decoding steps ran on a copy of the cache
    fused = completion_log_probs(policy, prompts, completions, 3, prefilled)
    plain = full_sequence_log_probs(policy, prompts, completions, 3)
    mask = completions.mask.bool()
    terms = reduction_terms(policy, completions)
    assert_equal_up_to_rounding(fused[mask], plain[mask], terms=terms["log_probs"],
                                dtype=ROUNDS_AT, msg="log-probs")  # fmt: skip
    weights = torch.randn(completions.ids.shape, generator=g, dtype=torch.float64)
    fused_grads = torch.autograd.grad((fused * weights * mask).sum(), params)
    plain_grads = torch.autograd.grad((plain * weights * mask).sum(), params)
    for a, b in zip(fused_grads, plain_grads, strict=True):
        assert b.abs().max() > 0
        assert_equal_up_to_rounding(a, b, terms=terms["gradients"], dtype=ROUNDS_AT,
                                    msg="gradient")  # fmt: skip


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_sampling_log_probs_equal_full_sequences(attention):
    """Each sampled token's log-prob while decoding (G siblings side by side in one cache)
    equals its log-prob on its own full sequence: siblings never see each other."""
    policy = tiny_policy(seed=9, attention=attention).eval()
    prompts = left_padded(PROMPTS)
    g = torch.Generator().manual_seed(0)
    out = generate(policy, prompts, 4, 6, [STOP], PAD, generator=g)
    assert out.ids.shape[1] == 6
    with torch.no_grad():
        plain = full_sequence_log_probs(policy, prompts, out, 4)
    mask = out.mask.bool()
    assert len(set(map(tuple, out.ids.tolist()))) > len(PROMPTS)  # siblings differ
    terms = reduction_terms(policy, out)["log_probs"]
    assert_equal_up_to_rounding(out.log_probs[mask], plain[mask], terms=terms)
    assert (out.log_probs[~mask] == 0).all()


def test_bf16_autocast_log_probs_stay_close_to_float32():
    from pgrpo.models import autocast

    policy = tiny_policy(seed=10)
    prompts = left_padded(PROMPTS)
    completions = some_completions(len(PROMPTS), 3, 4, seed=4)
    with torch.no_grad():
        exact = completion_log_probs(policy, prompts, completions, 3)
        with autocast("bf16"):
            mixed = completion_log_probs(policy, prompts, completions, 3)
            plain = full_sequence_log_probs(policy, prompts, completions, 3)
    mask = completions.mask.bool()
    assert mixed.dtype == torch.float32
    assert not torch.equal(mixed[mask], exact[mask])  # bf16 really ran
    # Autocast rounds each matmul's inputs to bfloat16 and accumulates in float32 (with or
    # without AVX512-BF16/AMX): the error is a few bfloat16 ulps of the largest log-prob, not
    # a sum's worth. Measured: 1.3 ulps.
    bf16 = {"terms": 1, "ulps": 8, "dtype": torch.bfloat16}
    assert_equal_up_to_rounding(mixed[mask], exact[mask], **bf16, msg="bf16 vs float32")
    assert_equal_up_to_rounding(mixed[mask], plain[mask], **bf16, msg="tree vs plain in bf16")


def test_bf16_base_weights_log_probs_stay_close_to_float32(tmp_path):
    """``precision: bf16`` loads the frozen base in bfloat16 and keeps the adapter, its
    gradients and the log-probs float32; the log-probs stay within a bound of the float32
    model's (same weights, same adapter), and the reference pass (adapter off) too."""
    from pgrpo.models import autocast, load_base_model

    tiny_model(seed=10).save_pretrained(tmp_path)
    adapter = {n: p for n, p in tiny_policy(seed=10).named_parameters() if p.requires_grad}
    policies = {}
    for precision in ("fp32", "bf16"):
        policy = add_lora(load_base_model(tmp_path, precision), LoraSettings(r=4, alpha=8))
        policy.load_state_dict(adapter, strict=False)
        policies[precision] = policy
    base = policies["bf16"].get_base_model()
    assert {p.dtype for p in base.parameters() if not p.requires_grad} == {torch.bfloat16}
    trainable = [p for p in policies["bf16"].parameters() if p.requires_grad]
    assert trainable and {p.dtype for p in trainable} == {torch.float32}
    prompts = left_padded(PROMPTS)
    completions = some_completions(len(PROMPTS), 3, 4, seed=4)
    mask = completions.mask.bool()
    exact = completion_log_probs(policies["fp32"], prompts, completions, 3).detach()
    with autocast("bf16"):
        mixed = completion_log_probs(policies["bf16"], prompts, completions, 3)
        with torch.no_grad(), policies["bf16"].disable_adapter():
            reference = completion_log_probs(policies["bf16"], prompts, completions, 3)
    with torch.no_grad(), policies["fp32"].disable_adapter():
        exact_reference = completion_log_probs(policies["fp32"], prompts, completions, 3)
    assert mixed.dtype == reference.dtype == torch.float32
    grads = torch.autograd.grad((mixed * mask).sum(), trainable)
    assert all(g.dtype == torch.float32 and g.abs().max() > 0 for g in grads)
    assert not torch.equal(mixed.detach()[mask], exact[mask])  # bfloat16 weights really ran
    # Each of the two layers adds a bfloat16 rounding of the hidden state to the matmuls'
    # input rounding, so the bound is per layer. Measured: 1.8 (policy) and 2.4 (reference)
    # bfloat16 ulps of the largest log-prob, against 16 allowed.
    bound = {"terms": base.config.num_hidden_layers, "ulps": 8, "dtype": torch.bfloat16}
    assert_equal_up_to_rounding(mixed.detach()[mask], exact[mask], **bound, msg="policy")
    assert_equal_up_to_rounding(reference[mask], exact_reference[mask], **bound, msg="reference")


def test_sampling_draws_each_token_with_its_probability():
    """Inverse transform sampling: frequencies within 5 standard errors of the
    probabilities, zero-probability tokens never, and a prompt's draws (its own generator)
    the same alone or beside another prompt."""
    from pgrpo.rollout import _sample

    probs = torch.tensor([[0.5, 0.3, 0.2, 0.0, 0.0], [0.0, 0.0, 0.1, 0.0, 0.9]])
    n = 20000
    tokens = _sample(probs.repeat_interleave(n, 0), torch.Generator().manual_seed(0), n)
    for row, drawn in zip(probs, tokens.view(2, n), strict=True):
        freq = torch.bincount(drawn, minlength=5).double() / n
        assert (freq[row == 0] == 0).all()
        stderr = (row * (1 - row) / n).double().sqrt()
        assert ((freq - row).abs() <= 5 * stderr).all(), (freq, row)
    alone = _sample(probs[:1].expand(4, 5), [torch.Generator().manual_seed(7)], 4)
    both = _sample(
        probs.repeat_interleave(4, 0),
        [torch.Generator().manual_seed(7), torch.Generator().manual_seed(8)], 4,
    )  # fmt: skip
    assert torch.equal(alone, both[:4])


def test_left_padding_does_not_change_a_prompts_log_probs():
    policy = tiny_policy()
    completions = some_completions(1, 2, 3, seed=7)
    alone = completion_log_probs(policy, left_padded([PROMPTS[1]]), completions, 2)
    batch = left_padded(PROMPTS)
    padded = some_completions(3, 2, 3, seed=7)
    padded.ids[2:4], padded.mask[2:4] = completions.ids, completions.mask
    together = completion_log_probs(policy, batch, padded, 2)[2:4]
    mask = completions.mask.bool()
    terms = reduction_terms(policy, completions)["log_probs"]
    assert_equal_up_to_rounding(alone.detach()[mask], together.detach()[mask], terms=terms)


def test_greedy_generation_is_the_same_alone_or_in_a_padded_batch():
    policy = tiny_policy(seed=3).eval()
    batch = generate(policy, left_padded(PROMPTS), 2, 5, [STOP], PAD, greedy=True)
    for i, prompt in enumerate(PROMPTS):
        alone = generate(policy, left_padded([prompt]), 1, 5, [STOP], PAD, greedy=True)
        n = alone.ids.shape[1]
        for row in (2 * i, 2 * i + 1):  # greedy: the G copies are identical
            assert torch.equal(batch.ids[row, :n], alone.ids[0])
            assert torch.equal(batch.mask[row, :n], alone.mask[0])


def test_generation_matches_step_by_step_argmax_without_cache():
    policy = tiny_policy(seed=4).eval()
    out = generate(policy, left_padded([PROMPTS[0]]), 1, 8, [], PAD, greedy=True)
    tokens = list(PROMPTS[0])
    with torch.no_grad():
        for _ in range(8):
            tokens.append(int(policy(input_ids=torch.tensor([tokens])).logits[0, -1].argmax()))
    assert out.ids[0].tolist() == tokens[len(PROMPTS[0]) :]


def test_generation_stops_at_stop_token_and_masks_the_rest():
    policy = tiny_policy(seed=5).eval()
    # Make the stop token by far the likeliest after 2 tokens: bias the output layer.
    with torch.no_grad():
        policy.get_base_model().lm_head.weight[STOP] *= 0
    g = torch.Generator().manual_seed(0)
    out = generate(policy, left_padded(PROMPTS), 4, 6, [STOP], PAD, temperature=1.0, generator=g)
    assert out.ids.shape[0] == len(PROMPTS) * 4
    for ids, mask in zip(out.ids.tolist(), out.mask.tolist(), strict=True):
        if STOP in ids:
            k = ids.index(STOP)
            assert mask[: k + 1] == [1] * (k + 1)  # the stop token itself is scored
            assert mask[k + 1 :] == [0] * (len(ids) - k - 1)
            assert ids[k + 1 :] == [PAD] * (len(ids) - k - 1)
        else:
            assert mask == [1] * len(ids)


def test_stops_early_when_every_completion_has_stopped():
    policy = tiny_policy(seed=6).eval()
    every_token = list(range(40))  # whatever is sampled first ends each completion
    out = generate(policy, left_padded(PROMPTS), 2, 8, every_token, PAD, greedy=True)
    assert out.ids.shape == (len(PROMPTS) * 2, 1)
    assert out.mask.eq(1).all()


def test_per_prompt_generators_make_answers_independent_of_the_batch():
    """What the trainer relies on to sample the same answers on 1 or N processes."""
    policy = tiny_policy(seed=12).eval()

    def seeded(*seeds):
        return [torch.Generator().manual_seed(s) for s in seeds]

    together = generate(policy, left_padded(PROMPTS), 3, 5, [STOP], PAD, generator=seeded(1, 2, 3))
    for i, prompt in enumerate(PROMPTS):
        alone = generate(policy, left_padded([prompt]), 3, 5, [STOP], PAD, generator=seeded(i + 1))
        n = alone.ids.shape[1]
        assert torch.equal(together.ids[3 * i : 3 * i + 3, :n], alone.ids)
    other = generate(policy, left_padded(PROMPTS), 3, 5, [STOP], PAD, generator=seeded(1, 2, 4))
    assert torch.equal(other.ids[:6], together.ids[:6])
    assert not torch.equal(other.ids[6:], together.ids[6:])


def test_sampling_is_reproducible_with_a_seeded_generator():
    policy = tiny_policy(seed=8).eval()
    prompts = left_padded(PROMPTS)
    a = generate(policy, prompts, 3, 5, [STOP], PAD, generator=torch.Generator().manual_seed(9))
    b = generate(policy, prompts, 3, 5, [STOP], PAD, generator=torch.Generator().manual_seed(9))
    c = generate(policy, prompts, 3, 5, [STOP], PAD, generator=torch.Generator().manual_seed(10))
    assert torch.equal(a.ids, b.ids)
    assert not torch.equal(a.ids, c.ids)


def test_grpo_loss_falls_on_a_fixed_batch_and_moves_probability_to_good_answers():
    """The trainer's update (shared-prompt log-probs + clipped surrogate + KL) learns."""
    from pgrpo.loss import policy_loss

    policy = tiny_policy(seed=11)
    prompts = left_padded(PROMPTS)
    completions = some_completions(len(PROMPTS), 4, 3, seed=12)
    advantages = torch.tensor([1.0, -1.0, 0.5, -0.5] * len(PROMPTS))
    mask = completions.mask.float()
    params = [p for p in policy.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    with torch.no_grad():
        old = completion_log_probs(policy, prompts, completions, 4)
        with policy.disable_adapter():
            ref = completion_log_probs(policy, prompts, completions, 4)
    losses = []
    for _ in range(15):
        logp = completion_log_probs(policy, prompts, completions, 4)
        loss, _ = policy_loss(logp, old, ref, advantages, mask, beta=0.04)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.1
    with torch.no_grad():
        new = completion_log_probs(policy, prompts, completions, 4)
    seq_change = ((new - old) * mask).sum(1)  # [B] change of each completion's log-prob
    assert (seq_change[advantages > 0] > 0).all()
    assert (seq_change[advantages < 0] < 0).all()
