"""GDPO (pgrpo/dpo.py): the DPO loss against a hand computation and against TRL's
``DPOTrainer`` on a fixed batch, the pairs of a step, and the pair trainer on the tiny model
(pairs only from the training prompts it is given, the policy moving toward the chosen
answers)."""

from __future__ import annotations

import math

import pytest
import torch

from pgrpo.dpo import PairTrainer, dpo_loss, preference_pairs, sequence_log_probs
from pgrpo.rollout import Completions, PromptBatch
from pgrpo.settings import TrainSettings


def test_dpo_loss_against_a_hand_computation():
    """Two pairs, beta 0.5: log-ratio differences (-1 + 2) - (-3 + 2) = 2 and
    (-2 + 2) - (-1.8 + 2) = -0.2; loss = mean(-log sigmoid(1.0), -log sigmoid(-0.1))."""
    chosen, rejected = torch.tensor([-1.0, -2.0]), torch.tensor([-3.0, -1.8])
    ref_chosen, ref_rejected = torch.tensor([-2.0, -2.0]), torch.tensor([-2.0, -2.0])
    loss, stats = dpo_loss(chosen, rejected, ref_chosen, ref_rejected, beta=0.5)
    expected = (math.log1p(math.exp(-1.0)) + math.log1p(math.exp(0.1))) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert stats["dpo/margin"] == pytest.approx((1.0 - 0.1) / 2, rel=1e-6)
    assert stats["dpo/accuracy"] == 0.5


def test_a_prompts_best_and_worst_answers_make_its_pair_and_ties_make_none():
    rewards = torch.tensor([0.2, 0.9, 0.1, 0.9, 0.5, 0.5, 0.5, 0.5])  # two groups of 4
    best, worst, keep = preference_pairs(rewards, 4)
    assert best.tolist() == [1, 0] and worst.tolist() == [2, 0]  # the first of ties
    assert keep.tolist() == [True, False]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from tiny_training import tiny_training_inputs

    folder = tmp_path_factory.mktemp("model") / "tiny"
    return (folder, *tiny_training_inputs(folder))


@pytest.mark.slow
@pytest.mark.numerics
def test_the_dpo_step_matches_trls_loss_on_a_fixed_batch(tiny, tmp_path):
    """One prompt, a chosen answer of 3 tokens and a rejected one of 2, under a LoRA policy
    moved away from the base model: the loss of pgrpo.dpo (tree log-probs of both answers
    after one prompt pass, reference = the adapter disabled) equals TRL's DPOTrainer
    ``sigmoid`` loss on the same tokens laid out as TRL lays them out (each answer after its
    own copy of the prompt, reference = TRL's copy of the initial adapter)."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from pgrpo.models import LoraSettings, add_lora, load_base_model

    folder, tokenizer = tiny[0], tiny[1]
    torch.manual_seed(0)
    policy = add_lora(load_base_model(folder, "fp32"), LoraSettings(r=4, alpha=8))
    args = DPOConfig(output_dir=str(tmp_path / "trl"), beta=0.3, report_to=[], use_cpu=True,
                     per_device_train_batch_size=1, bf16=False)  # fmt: skip
    data = Dataset.from_list([{"prompt": "a", "chosen": " b", "rejected": " c"}])
    trl = DPOTrainer(model=policy, args=args, train_dataset=data, processing_class=tokenizer)
    with torch.no_grad():  # the policy's adapter moves; TRL's reference copy stays at zero
        for name, p in policy.named_parameters():
            if "lora_B.default" in name:
                p.normal_(std=0.05)
    prompt, chosen, rejected = [11, 12, 13, 14], [21, 22, 23], [31, 32]
    pad = tokenizer.pad_token_id
    ids = torch.tensor([prompt + chosen, prompt + rejected + [pad]])
    attention = torch.tensor([[1] * 7, [1] * 6 + [0]])
    completion = torch.tensor([[0] * 4 + [1] * 3, [0] * 4 + [1] * 2 + [0]])
    policy.train()
    trl_loss = trl.compute_loss(
        trl.model, {"input_ids": ids, "attention_mask": attention, "completion_mask": completion}
    )
    prompts = PromptBatch(torch.tensor([prompt]), torch.ones(1, 4, dtype=torch.long))
    pairs = Completions(torch.tensor([chosen, rejected + [pad]]),
                        torch.tensor([[1, 1, 1], [1, 1, 0]]))  # fmt: skip
    with torch.no_grad(), policy.disable_adapter():
        ref_chosen, ref_rejected = sequence_log_probs(policy, prompts, pairs)
    ours, _ = dpo_loss(*sequence_log_probs(policy, prompts, pairs), ref_chosen, ref_rejected,
                       beta=0.3)  # fmt: skip
    assert abs(trl_loss.item() - math.log(2)) > 1e-4  # the policy is not the reference
    tolerance = 1e-5 * max(1.0, trl_loss.abs().item())  # fp32 sums over a few tokens
    assert ours.item() == pytest.approx(trl_loss.item(), abs=tolerance)


@pytest.mark.slow
def test_the_pair_trainer_trains_on_its_training_prompts_toward_the_chosen_answers(tiny):
    """Steps of the tiny model with objective dpo: every prompt a step draws is one of the
    training examples it was given, never a held-out one; the logged pairs and margins are
    those of the step's base-model rewards; each update lowers the DPO loss of its own pairs
    (the policy starts at the reference: loss log 2)."""
    from accelerate import Accelerator

    from pgrpo.models import LoraSettings, add_lora, load_base_model

    folder, tokenizer, task, examples, clusters, stop_ids = tiny
    training, held_out = examples[:6], examples[6:]
    torch.manual_seed(0)
    policy = add_lora(load_base_model(folder, "fp32"), LoraSettings(r=4, alpha=8))
    settings = TrainSettings(
        method="gdpo", objective="dpo", prompts_per_step=4, group_size=4, max_new_tokens=3,
        learning_rate=0.01, precision="fp32", dpo_beta=0.5, balanced_steps=False,
    )  # fmt: skip
    trainer = PairTrainer(policy, tokenizer, task, Accelerator(cpu=True), settings, 2, stop_ids)
    updates = 0
    for step in range(4):
        metrics = trainer.step(step, training, clusters)
        batch = trainer.last_batch
        assert all(any(e is t for t in training) for e in batch["examples"])
        assert not any(e is h for e in batch["examples"] for h in held_out)
        grouped = batch["rewards"].view(-1, 4)
        high, low = grouped.max(1).values, grouped.min(1).values
        assert metrics["pairs"] == (high > low).sum().item() == sum(batch["pairs"])
        if not metrics["pairs"]:
            continue
        margin = (high - low)[high > low].mean().item()
        assert metrics["pair_reward_margin"] == pytest.approx(margin)
        prompts, pairs = batch["pair_batch"]
        with torch.no_grad():
            with policy.disable_adapter():
                reference = sequence_log_probs(policy, prompts, pairs)
            after, _ = dpo_loss(*sequence_log_probs(policy, prompts, pairs), *reference, 0.5)
        assert after.item() < metrics["loss"], step  # the step's loss was before its update
        if step == 0:
            assert metrics["loss"] == pytest.approx(math.log(2), rel=1e-6)
        updates += 1
    assert updates >= 2


def test_a_gdpo_run_reports_its_pairs_and_margin_and_no_training_reward(tmp_path):
    """Its metrics rows: 3 pairs of margin 0.5, then 1 of margin 0.9: 4 pairs, mean margin
    (1.5 + 0.9) / 4 = 0.6; its rewards are the base model's, so no final training reward
    and no figure-2 curve."""
    import json

    from pgrpo.plotting import step_curves
    from pgrpo.tables import cells, parse_runs

    rows = [{"pairs": 3, "pair_reward_margin": 0.5, "reward_mean": 0.4,
             "zero_std_group_fraction": 0.25},
            {"pairs": 1, "pair_reward_margin": 0.9, "reward_mean": 0.3,
             "zero_std_group_fraction": 0.75}]  # fmt: skip
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    runs = parse_runs([f"m/t/gdpo/0={path}"])
    got = {r["metric"]: r["mean"] for r in cells(runs)}
    assert got["dpo_pairs"] == 4 and got["dpo_pair_margin"] == pytest.approx(0.6)
    assert got["all_equal_share"] == pytest.approx(0.5) and "final_train_reward" not in got
    assert step_curves(runs, "reward_mean") == {}
