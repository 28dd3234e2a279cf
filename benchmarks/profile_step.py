"""Where a training step spends its time: ``torch.profiler`` over pgrpo's trainer, by phase
and by kind of work.

Runs pgrpo's Trainer on the step benchmark's workload (``workload.py``: MovieLens-100K
prompts, the same model, LoRA and settings), warm-up steps first, then profiles
``--repeats`` steps and prints two tables, both in seconds per step and shares of the step:

* phases, timed inside the step: generation (the prompts' prefill and the decode loop),
  scoring, advantages, log-prob passes (reference and policy), backward, optimiser;
* kinds of work, from the profiler's self CPU time of each operator: matrix products
  (``mm``, ``addmm``, ``bmm``, ...; the LM head's forward counted apart, as are attention's
  own kernels), attention, dtype casts and copies, elementwise and normalisation, the
  optimiser's kernels, the rest of the operators, and Python (the step's wall time that no
  operator accounts for: interpreter, module calls, autograd bookkeeping).

The default MovieLens step and the default text-task step (the personas' requests: 40 new
tokens, G = 8) are:

    ./with-venv python benchmarks/profile_step.py --precision bf16 --prompts 4 \\
        --group-size 16 --max-new-tokens 4 --history 5 --learning-rate 3e-4
    ./with-venv python benchmarks/profile_step.py --precision bf16 --task personas \\
        --prompts 4 --group-size 8 --max-new-tokens 40 --learning-rate 3e-4

(``--precision fp32`` for float32; ``--top 40 --by-shape`` also lists the 40 operators of
most self CPU time, per input shape.)
"""

from __future__ import annotations

import collections
import contextlib
import time

import torch
from torch.profiler import ProfilerActivity, profile, record_function
from workload import lora, machine, model_dir, parser, workload

from pgrpo.head import LM_HEAD_RANGE as LM_HEAD

PHASES = ("generate", "score", "advantages", "log_probs", "backward", "optimizer")
# Operators by kind (self CPU time; names as the profiler reports them).
KINDS = {
    "matmul": ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::addmv",
               "aten::mv", "aten::dot", "mkldnn::", "onednn::"),
    "attention": ("aten::_scaled_dot_product", "aten::_softmax", "aten::_softmax_backward",
                  "aten::scaled_dot_product"),
    "casts and copies": ("aten::copy_", "aten::_to_copy", "aten::to", "aten::clone",
                         "aten::contiguous", "aten::cat", "aten::index", "aten::gather",
                         "aten::scatter", "aten::index_select", "aten::embedding"),
    "optimiser": ("aten::_foreach", "aten::_fused_adam", "aten::addcdiv", "aten::lerp"),
}  # fmt: skip


def kind_of(name: str) -> str:
    for kind, prefixes in KINDS.items():
        if name.startswith(prefixes):
            return kind
    if name.startswith("aten::"):
        return "elementwise and other operators"
    return ""  # ranges of record_function, profiler bookkeeping: not operators


@contextlib.contextmanager
def lm_head_range(model):
    """Label the LM head's forward in the profile (its matmul is counted apart)."""
    head = model.get_output_embeddings()
    ranges = []

    def enter(module, args):
        ranges.append(record_function(LM_HEAD))
        ranges[-1].__enter__()

    def leave(module, args, output):
        ranges.pop().__exit__(None, None, None)

    handles = [head.register_forward_pre_hook(enter), head.register_forward_hook(leave)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def lm_head_matmul_seconds(events) -> float:
    """Self time of the matrix products under the LM head's range (its forward)."""

    def matmuls(event) -> float:
        own = event.self_cpu_time_total if kind_of(event.name) == "matmul" else 0.0
        return own + sum(matmuls(child) for child in event.cpu_children)

    return sum(matmuls(e) for e in events if e.name == LM_HEAD) / 1e6


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--top", type=int, default=0, help="also list the N costliest operators")
    p.add_argument("--by-shape", action="store_true", help="list operators per input shape")
    args = p.parse_args()
    from accelerate import Accelerator

    from pgrpo.models import add_lora, load_base_model, load_tokenizer, stop_token_ids
    from pgrpo.settings import TrainSettings
    from pgrpo.trainer import Trainer

    torch.set_num_threads(args.threads)
    task, per_step, clusters = workload(args)
    folder = model_dir(args)
    settings = TrainSettings(
        method="pgrpo", steps=len(per_step), prompts_per_step=args.prompts,
        group_size=args.group_size, max_new_tokens=args.max_new_tokens,
        temperature=args.temperature, learning_rate=args.learning_rate, beta=args.beta,
        seed=args.seed, precision=args.precision,
        balanced_steps=False,  # each step trains on the workload's prompts for it, in order
    )  # fmt: skip
    tokenizer = load_tokenizer(folder)
    policy = add_lora(load_base_model(folder, args.precision), lora(args))
    trainer = Trainer(policy, tokenizer, task, Accelerator(cpu=True), settings, 4,
                      stop_token_ids(tokenizer))  # fmt: skip
    for step in range(args.warmup):
        trainer.step(step, per_step[step], clusters)
    phases = collections.defaultdict(float)
    wall = 0.0
    with (
        lm_head_range(policy),
        profile(activities=[ProfilerActivity.CPU], record_shapes=args.by_shape) as prof,
    ):
        for step in range(args.warmup, args.warmup + args.repeats):
            start = time.perf_counter()
            metrics = trainer.step(step, per_step[step], clusters)
            wall += time.perf_counter() - start
            for phase in PHASES:
                phases[phase] += metrics[f"time/{phase}"]
    kinds = collections.defaultdict(float)
    for event in prof.key_averages():
        kind = kind_of(event.key)
        if kind:
            kinds[kind] += event.self_cpu_time_total / 1e6
    head = lm_head_matmul_seconds(prof.events())
    kinds["matmul"] -= head
    kinds["matmul: LM head (forward)"] = head
    kinds["Python and framework overhead"] = max(0.0, wall - sum(kinds.values()))
    n = args.repeats
    print(f"machine: {machine()}")
    prompts = f"history {args.history} titles" if args.task == "movielens" else "requests"
    print(f"workload: {args.model}, {args.task} ({prompts}), {args.prompts} prompts x "
          f"G={args.group_size}, {args.max_new_tokens} new tokens, {args.precision}, "
          f"{args.threads} threads; {n} profiled steps after {args.warmup} warm-up")  # fmt: skip
    print(f"step: {wall / n:.2f} s (profiled; the profiler itself adds a little)\n")
    print("| phase | s/step | share |\n|---|---:|---:|")
    for phase in PHASES:
        print(f"| {phase} | {phases[phase] / n:.3f} | {phases[phase] / wall:.0%} |")
    print("\n| kind of work | s/step | share |\n|---|---:|---:|")
    for kind, seconds in sorted(kinds.items(), key=lambda kv: -kv[1]):
        print(f"| {kind} | {seconds / n:.3f} | {seconds / wall:.0%} |")
    if args.top:
        print(f"\nThe {args.top} operators of most self CPU time, over the {n} profiled steps:")
        table = prof.key_averages(group_by_input_shape=args.by_shape)
        print(table.table(sort_by="self_cpu_time_total", row_limit=args.top))


if __name__ == "__main__":
    main()
