"""A few P-GRPO training steps of the tiny model; every process reports what it holds.

    accelerate launch --num_processes N [--multi_gpu] tests/train_steps.py \
        --model DIR --out DIR [--steps 2] [--save-after K --checkpoint F | --resume F] \
        [--sharding fsdp] [--precision bf16]

Each rank writes ``rank{r}.json``: the world size, the cluster statistics it holds, the
last global batch's rewards and advantages and the adapter after the last step. Used by
tests/test_multiprocess.py (1 against 2 processes) and tests/test_checkpoint.py (a run
stopped after K steps and resumed in a fresh process against an uninterrupted one).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.distributed as dist
from tiny_training import tiny_training_inputs

from pgrpo import checkpoint, sharding
from pgrpo.distributed import make_accelerator
from pgrpo.models import LoraSettings, add_lora, load_base_model
from pgrpo.settings import TrainSettings
from pgrpo.trainer import Trainer


def local_numel(p: torch.Tensor) -> int:
    return p.to_local().numel() if hasattr(p, "to_local") else p.numel()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--save-after", type=int, default=None, help="stop after K steps")
    parser.add_argument("--checkpoint", default=None, help="folder --save-after saves into")
    parser.add_argument("--resume", default=None, help="folder of a checkpoint to continue from")
    parser.add_argument("--sharding", default=None, choices=["fsdp"], help="launch.sharding")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    accelerator = make_accelerator()
    tokenizer, task, examples, clusters, stop_ids = tiny_training_inputs(Path(args.model))
    # Each process draws its own fresh adapter, as pgrpo.train does (seed + rank): the
    # Trainer gives every process rank 0's, which is the adapter of the one-process run.
    torch.manual_seed(accelerator.process_index)
    policy = add_lora(load_base_model(args.model, args.precision), LoraSettings(r=4, alpha=8))
    settings = TrainSettings(
        method="pgrpo", prompts_per_step=4, group_size=4, max_new_tokens=3,
        learning_rate=0.05, precision=args.precision, steps=args.steps, sharding=args.sharding,
    )  # fmt: skip
    trainer = Trainer(policy, tokenizer, task, accelerator, settings, 2, stop_ids)
    start = checkpoint.resume(trainer, args.resume, {}).next_step if args.resume else 0
    end = args.save_after if args.save_after is not None else args.steps
    begin = time.perf_counter()
    steps = [trainer.step(step, examples, clusters) for step in range(start, end)]
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    seconds = time.perf_counter() - begin
    if args.save_after is not None:
        checkpoint.save(trainer, args.checkpoint, end, [], None, {})
    report = {
        "rank": accelerator.process_index,
        "world": accelerator.num_processes,
        "stats": {k: v.tolist() for k, v in trainer.cluster_stats.state_dict().items()
                  if isinstance(v, torch.Tensor)},
        "rewards": trainer.last_batch["rewards"].tolist(),
        "advantages": trainer.last_batch["advantages"].tolist(),
        "adapter": {n: p.reshape(-1).tolist()
                    for n, p in sharding.full_trainable_state(policy).items()},
        "sharded": trainer.sharded,
        # What this process holds of the weights (its shards when sharded).
        "local_numel": sum(local_numel(p) for p in policy.parameters()),
        "reward_mean": [m["reward_mean"] for m in steps],
        "device": str(next(p for p in policy.parameters() if p.requires_grad).device),
        "backend": dist.get_backend() if dist.is_initialized() else None,
        "base_dtypes": sorted({str(p.dtype) for p in policy.parameters() if not p.requires_grad}),
        "seconds_per_step": seconds / max(1, end - start),
        "peak_gpu_gb": torch.cuda.max_memory_allocated() / 1024**3
        if torch.cuda.is_available() else None,
    }  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"rank{accelerator.process_index}.json").write_text(json.dumps(report))


if __name__ == "__main__":
    main()
