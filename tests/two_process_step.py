"""One P-GRPO training step through the workflow's launch path; every process reports.

    accelerate launch --num_processes N [--multi_gpu] tests/two_process_step.py \
        --model DIR --out DIR

Each rank writes ``rank{r}.json``: the world size, the cluster statistics it holds, the
global batch's rewards and advantages, the adapter after the step, and its own slice of the
batch. Used by tests/test_multiprocess.py to compare 1 and 2 processes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from tiny_training import tiny_training_inputs

from pgrpo.launch import make_accelerator
from pgrpo.models import LoraSettings, add_lora, load_base_model
from pgrpo.trainer import Trainer, TrainSettings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    accelerator = make_accelerator()
    tokenizer, task, examples, clusters, stop_ids = tiny_training_inputs(Path(args.model))
    torch.manual_seed(0)  # the same fresh adapter on every process and in every run
    policy = add_lora(load_base_model(args.model), LoraSettings(r=4, alpha=8))
    settings = TrainSettings(
        method="pgrpo", prompts_per_step=4, group_size=4, max_new_tokens=3,
        learning_rate=0.05, precision="fp32",
    )  # fmt: skip
    trainer = Trainer(policy, tokenizer, task, accelerator, settings, 2, stop_ids)
    steps = [trainer.step(step, examples, clusters) for step in range(args.steps)]
    report = {
        "rank": accelerator.process_index,
        "world": accelerator.num_processes,
        "stats": {k: v.tolist() for k, v in trainer.cluster_stats.state_dict().items()
                  if isinstance(v, torch.Tensor)},
        "rewards": trainer.last_batch["rewards"].tolist(),
        "advantages": trainer.last_batch["advantages"].tolist(),
        "adapter": {n: p.detach().reshape(-1).tolist() for n, p in policy.named_parameters()
                    if p.requires_grad},
        "reward_mean": [m["reward_mean"] for m in steps],
    }  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"rank{accelerator.process_index}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main()
