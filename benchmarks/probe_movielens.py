"""Can the policy learn MovieLens at all? A supervised probe, the upper end of what GRPO can
reach with the same model, adapter and number of prompts.

The same SmolLM2 and LoRA adapter as training, taught by cross-entropy on the right letter as
the answer's first token (teacher forcing, no sampling: every prompt gives a full gradient
toward the right letter, where GRPO gets one only from the sampled answers' reward spread).
Steps draw letter-balanced prompts from the prepared training split, as
``train.balanced_steps`` does. Before the first step and every ``--eval-every`` steps the
options of validation prompts are scored (position-balanced letter accuracy, chance 1/k), so
the printed curve says whether the model can read the preference out of the prompt with
this many examples. If even this probe stays at chance, GRPO's null result is the model's
and the budget's, not a bug of the trainer.

    python benchmarks/probe_movielens.py --data resources/movielens \\
        --model resources/models/smollm2-135m --steps 100 --prompts 8 --learning-rate 3e-4
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from pgrpo.choices import score_options, token_ids_of_options
from pgrpo.io import read_jsonl, seeded_subset
from pgrpo.models import LoraSettings, add_lora, autocast, load_base_model, load_tokenizer
from pgrpo.rollout import encode_prompts, prefill
from pgrpo.settings import TrainSettings, step_examples
from pgrpo.tasks import load_task


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="the prepared MovieLens folder")
    p.add_argument("--model", required=True, help="the materialised base model folder")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--prompts", type=int, default=8, help="prompts per step")
    p.add_argument("--learning-rate", type=float, default=3e-4)
    p.add_argument("--lora-r", type=int, default=16)
    p.add_argument("--lora-alpha", type=float, default=32)
    p.add_argument("--precision", default="bf16", choices=["fp32", "bf16"])
    p.add_argument("--eval-every", type=int, default=25)
    p.add_argument("--eval-prompts", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", help="write the curve as JSON here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    data = Path(args.data)
    config = {"movielens": {"truncate_history": False}}
    task = load_task("movielens", data, config)
    train = read_jsonl(data / "train.jsonl")
    # The validation prompts a training run of data seed ``--seed`` scores (pgrpo.train).
    validation = read_jsonl(data / "validation.jsonl")
    validation = seeded_subset(validation, args.eval_prompts, [args.seed, 29])
    tokenizer = load_tokenizer(args.model)
    model = add_lora(load_base_model(args.model, args.precision),
                     LoraSettings(args.lora_r, args.lora_alpha))  # fmt: skip
    params = [q for q in model.parameters() if q.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=args.learning_rate)
    settings = TrainSettings(prompts_per_step=args.prompts, seed=args.seed)
    strata = [task.options(e)[1] for e in train]
    curve, losses, started = [], [], time.perf_counter()

    def evaluate(step: int) -> None:
        model.eval()
        with autocast(args.precision):
            scores = score_options(model, tokenizer, task, validation, 16)
        model.train()
        point = {"step": step, "letter_accuracy": scores["letter_accuracy"]["all"],
                 "correct_probability": scores["correct_probability"]["all"],
                 "train_loss": float(np.mean(losses[-args.eval_every :])) if losses else None,
                 "seconds": time.perf_counter() - started}  # fmt: skip
        curve.append(point)
        print(json.dumps(point), flush=True)

    evaluate(0)
    model.train()
    for step in range(args.steps):
        batch = step_examples(train, settings, step, strata)
        options = [task.options(e) for e in batch]
        prompts = encode_prompts(tokenizer, [task.messages(e) for e in batch])
        with autocast(args.precision):
            logits = prefill(model, prompts).logits  # the answer's first token
        ids = token_ids_of_options(tokenizer, [o for o, _ in options])
        right = torch.tensor([ids[i][r] for i, (_, r) in enumerate(options)])
        loss = torch.nn.functional.cross_entropy(logits.float(), right)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if (step + 1) % args.eval_every == 0 or step + 1 == args.steps:
            evaluate(step + 1)
    if args.out:
        Path(args.out).write_text(json.dumps({"args": vars(args), "curve": curve}, indent=2))


if __name__ == "__main__":
    main()
