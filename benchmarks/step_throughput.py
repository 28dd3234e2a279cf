"""Training-step throughput: pgrpo's trainer (GRPO and P-GRPO) against TRL's GRPOTrainer.

Each trainer runs in a process of its own on the same workload (``workload.py``): warm-up
steps, then ``--repeats`` measured steps (medians reported), then one step whose FLOPs are
counted with ``torch.utils.flop_counter`` (not timed). Printed: step time split into
generation, scoring, log-prob passes + backward and optimiser; prompts/s and completion
tokens/s; the ratio to TRL; P-GRPO's overhead over GRPO (the cluster-statistics update, timed
inside the step); FLOPs per step against this machine's measured matmul throughput; peak
memory. TRL runs twice, with its own defaults (``trl``: gradient checkpointing on, which
trades compute for memory) and with gradient checkpointing off (``trl_no_gc``), so that no
ratio rests on TRL's memory-saving default alone. Defaults are the settings of the
performance issue's TRL reference point (SmolLM2-135M, 8 prompts x G=4, 10-title history, 4
new tokens, LoRA r=16 on q/v, beta 0.04, fp32, 2 threads):

    ./with-venv python benchmarks/step_throughput.py
    ./with-venv python benchmarks/step_throughput.py --precision bf16
    ./with-venv python benchmarks/step_throughput.py --model tiny --repeats 2 --trainers grpo,trl
    python benchmarks/step_throughput.py --device cuda --precision bf16   # on a GPU node

With ``--device cuda`` every trainer runs on the first GPU, step times wait for the GPU's
queued work (the parts inside a step are host-side times), the peak is an 8192^3 matmul on
the GPU and the table adds the peak GPU memory allocated.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode
from workload import (
    PEAK_SIZE,
    check_device,
    lora,
    machine,
    matmul_flops_per_second,
    model_dir,
    parser,
    peak_gpu_gb,
    peak_rss_gb,
    synchronize,
    workload,
)

HERE = Path(__file__).resolve().parent
PARTS = ("generate", "score", "train", "optimizer")


def run_pgrpo(args, method: str) -> dict:
    """pgrpo's Trainer, stepped by hand on the workload's prompts."""
    from accelerate import Accelerator

    from pgrpo.methods import BUILTIN
    from pgrpo.models import add_lora, load_base_model, load_tokenizer, stop_token_ids
    from pgrpo.rollout import encode_prompts
    from pgrpo.settings import TrainSettings
    from pgrpo.trainer import Trainer

    torch.set_num_threads(args.threads)
    task, per_step, clusters = workload(args)
    folder = model_dir(args)
    tokenizer = load_tokenizer(folder)
    settings = TrainSettings(
        method=method, advantage=BUILTIN[method]["advantage"], steps=len(per_step),
        prompts_per_step=args.prompts,
        group_size=args.group_size, max_new_tokens=args.max_new_tokens,
        temperature=args.temperature, learning_rate=args.learning_rate, beta=args.beta,
        seed=args.seed, precision=args.precision,
        balanced_steps=False,  # each step trains on the workload's prompts for it, in order
    )  # fmt: skip
    trainer = Trainer(
        add_lora(load_base_model(folder, args.precision), lora(args)), tokenizer, task,
        Accelerator(cpu=args.device == "cpu"), settings, 4, stop_token_ids(tokenizer),
    )  # fmt: skip
    records = []
    for step, batch in enumerate(per_step[:-1]):
        synchronize(args.device)
        start = time.perf_counter()
        m = trainer.step(step, batch, clusters)
        synchronize(args.device)
        wall = time.perf_counter() - start
        record = {
            "generate": m["time/generate"],
            "score": m["time/score"] + m["time/advantages"],
            "train": m["time/log_probs"] + m["time/backward"],
            "optimizer": m["time/optimizer"],
            "advantages": m["time/advantages"],
            "step": wall,
            "completion_tokens": m["completion_tokens"],
        }
        if step >= args.warmup:
            records.append(record)
    with FlopCounterMode(display=False) as counter:
        trainer.step(len(per_step) - 1, per_step[-1], clusters)
    lengths = [
        int(encode_prompts(tokenizer, [task.messages(e)]).lengths[0])
        for batch in per_step
        for e in batch
    ]
    return {
        "trainer": method,
        "label": f"pgrpo {'P-GRPO' if method == 'pgrpo' else 'GRPO'}",
        "steps": records,
        "flops_per_step": counter.get_total_flops(),
        "peak_rss_gb": peak_rss_gb(),
        "peak_gpu_gb": peak_gpu_gb(args.device),
        "prompt_tokens_mean": statistics.mean(lengths),
    }


TRAINERS = {
    "grpo": "pgrpo's GRPO",
    "pgrpo": "pgrpo's P-GRPO",
    "trl": "TRL's GRPOTrainer with its defaults (gradient checkpointing on)",
    "trl_no_gc": "TRL's GRPOTrainer with gradient checkpointing off",
}
TRL_OPTIONS = {"trl": [], "trl_no_gc": ["--trl-option", "gradient_checkpointing=false"]}


def run_child(name: str, argv: list[str], folder: Path) -> dict:
    """Run one trainer in a fresh process; its JSON result."""
    result = folder / f"{name}.json"
    script = HERE / ("trl_step.py" if name in TRL_OPTIONS else "step_throughput.py")
    extra = TRL_OPTIONS.get(name, [])
    cmd = [sys.executable, str(script), *argv, *extra, "--only", name, "--result", str(result)]
    print(f"running {name} ...", file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, stdout=sys.stderr)  # stdout is the report's
    return json.loads(result.read_text())


def median(result: dict, key: str) -> float:
    return statistics.median(r[key] for r in result["steps"])


def gpu_gb(result: dict) -> str:
    gb = result.get("peak_gpu_gb")
    return "-" if gb is None else f"{gb:.2f} GB"


def report(args, results: dict[str, dict], peak_flops: float) -> None:
    label = {name: r["label"] for name, r in results.items()}  # each run names itself
    print(f"machine: {machine()}")
    lengths = [r["prompt_tokens_mean"] for r in results.values() if "prompt_tokens_mean" in r]
    prompt_tokens = lengths[0] if lengths else None
    print(
        f"workload: {args.model}, {args.prompts} prompts x G={args.group_size}, "
        f"{args.max_new_tokens} new tokens, history {args.history} titles"
        + (f" (~{prompt_tokens:.0f} prompt tokens)" if prompt_tokens else "")
        + f", LoRA r={args.lora_r} q/v, beta {args.beta}, {args.precision}, "
        f"{args.threads} threads, {args.device}; median of {args.repeats} steps after "
        f"{args.warmup} warm-up"
    )
    size = PEAK_SIZE[args.device]
    print(f"measured matmul peak ({args.precision}, {size}^3): {peak_flops / 1e9:.0f} GFLOP/s")
    print()
    print(
        "| trainer | step (s) | prompts/s | completion tok/s | generate | score | "
        "log-probs + backward | optimiser | GFLOP/step | GFLOP/s | utilisation | peak RSS | "
        "peak GPU memory |"
    )
    print("|---|" + "---:|" * 12)
    for name, r in results.items():
        step = median(r, "step")
        tokens = median(r, "completion_tokens")
        flops = r["flops_per_step"] or 0.0
        parts = " | ".join(f"{median(r, p):.2f} s" for p in PARTS)
        print(
            f"| {label[name]} | {step:.3g} | {args.prompts / step:.3g} | {tokens / step:.3g} | "
            f"{parts} | {flops / 1e9:.3g} | {flops / step / 1e9:.3g} | "
            f"{flops / step / peak_flops:.0%} | {r['peak_rss_gb']:.2f} GB | {gpu_gb(r)} |"
        )
    print()
    for trl in (t for t in TRL_OPTIONS if t in results):
        for name in ("grpo", "pgrpo"):
            if name in results:
                ratio = median(results[trl], "step") / median(results[name], "step")
                print(f"{label[name]} vs {label[trl]}: {ratio:.1f}x the prompts/s")
    if "grpo" in results and "pgrpo" in results:
        extra = median(results["pgrpo"], "advantages") - median(results["grpo"], "advantages")
        step = median(results["pgrpo"], "step")
        print(
            f"P-GRPO overhead (cluster statistics + advantages, timed in the step): "
            f"{extra * 1e3:.2f} ms per step = {extra / step:.4%} of the step; "
            f"step medians {median(results['grpo'], 'step'):.2f} s (GRPO) vs {step:.2f} s (P-GRPO)"
        )


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument(
        "--trainers", default=",".join(TRAINERS),
        help="; ".join(f"{k}: {v}" for k, v in TRAINERS.items()),
    )  # fmt: skip
    p.add_argument("--only", default=None, help=argparse.SUPPRESS)
    p.add_argument("--result", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    check_device(args.device)
    if args.only:  # a child: run one of pgrpo's methods, write its result
        Path(args.result).write_text(json.dumps(run_pgrpo(args, args.only)))
        return
    names = [n for n in args.trainers.split(",") if n]
    unknown = set(names) - TRAINERS.keys()
    if unknown:
        allowed = ", ".join(TRAINERS)
        p.error(f"--trainers: unknown {', '.join(sorted(unknown))} (allowed: {allowed})")
    model_dir(args)  # convert the model once, before the children start
    with tempfile.TemporaryDirectory() as tmp:
        results = {n: run_child(n, sys.argv[1:], Path(tmp)) for n in names}
    report(args, results, matmul_flops_per_second(args.precision, args.threads, args.device))


if __name__ == "__main__":
    main()
