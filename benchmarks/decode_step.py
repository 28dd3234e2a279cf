"""What one decoding step of the text tasks costs, and what bounds it.

A text-task training step is about half generation: 40 decoding steps, each feeding the G
new tokens of every prompt (4 prompts x G = 8: 32 rows) through the model with the prompts'
key/value cache. This script runs that decoding step on the step benchmark's workload
(``workload.py``: the personas' requests by default, the same model, LoRA and precision),
one thread as the pipeline's training jobs run, and prints:

* the median decoding step with the LoRA adapter and with it disabled (what merging the
  adapter into the weights for sampling could save at most);
* the adapter's decoding steps by kind of work (``torch.profiler``, the kinds of
  ``profile_step.py``; the cache's concatenation is counted apart from other copies);
* the products of every weight matrix of the model with a batch of 32 rows, as a decoding
  step runs them (each weight read from memory once, none of them in cache), with
  ``torch``'s own kernels and with oneDNN weights packed once beforehand (as inference
  engines keep them), and whether the two agree;
* the machine's read bandwidth (the sum of a 512 MB tensor) and the time in which the
  model's weights could stream from memory at it.

    ./with-venv python benchmarks/decode_step.py
"""

from __future__ import annotations

import contextlib
import statistics
import time

import torch
from profile_step import kind_of
from torch.profiler import profile
from workload import lora, machine, model_dir, parser, workload

from pgrpo.models import add_lora, autocast, load_base_model, load_tokenizer
from pgrpo.rollout import encode_prompts, prefill, tree_attention_mask


def decode_steps(model, prompts, group_size: int, steps: int, prof=None) -> list[float]:
    """Seconds of each of ``steps`` decoding steps after the prompts' prefill, feeding fixed
    tokens (every answer runs all steps) with the tree mask of :func:`pgrpo.rollout.generate`."""
    n, g = prompts.ids.shape[0], group_size
    cache = prefill(model, prompts).cache_copy(model, detach=True)
    valid, segment = prompts.mask.bool(), torch.zeros_like(prompts.ids[0])
    own = torch.arange(1, g + 1)
    tokens = torch.full((n, g), 1000)
    times = []
    with prof or contextlib.nullcontext():
        for step in range(steps):
            start = time.perf_counter()
            valid = torch.cat([valid, torch.ones(n, g, dtype=torch.bool)], dim=1)
            segment = torch.cat([segment, own])
            index = torch.arange(valid.shape[1] - g, valid.shape[1])
            out = model(
                input_ids=tokens,
                attention_mask=tree_attention_mask(model, valid, segment, index),
                position_ids=(prompts.lengths + step)[:, None].expand(n, g),
                cache=cache,
                use_cache=True,
            )
            cache = out.cache
            times.append(time.perf_counter() - start)
    return times


def by_kind(prof, steps: int) -> dict[str, float]:
    seconds: dict[str, float] = {}
    for event in prof.key_averages():
        kind = "cache concatenation" if event.key == "aten::cat" else kind_of(event.key)
        if kind:
            seconds[kind] = seconds.get(kind, 0.0) + event.self_cpu_time_total / 1e6 / steps
    return seconds


def sweep(weights, rows: int, packed: bool, repeats: int = 5) -> tuple[float, list]:
    """Median seconds of one product with each weight (in model order), and the outputs."""
    generator = torch.Generator().manual_seed(0)  # the same inputs for both kernels
    inputs = {n: torch.randn(rows, n, generator=generator).to(weights[0].dtype)
              for n in sorted({w.shape[1] for w in weights})}  # fmt: skip
    if packed:
        pack = torch.ops.mkldnn._reorder_linear_weight
        shapes = [w.shape[1] for w in weights]
        weights = [pack(w, rows) for w in weights]

        def product(i, w):
            return torch.ops.mkldnn._linear_pointwise(inputs[shapes[i]], w, None, "none", [], "")
    else:

        def product(i, w):
            return torch.nn.functional.linear(inputs[w.shape[1]], w)

    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        outs = [product(i, w) for i, w in enumerate(weights)]
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:]), outs


def read_bandwidth() -> float:
    data = torch.ones(2**28, dtype=torch.bfloat16)  # 512 MB
    data.sum()
    start = time.perf_counter()
    for _ in range(5):
        data.sum()
    return 5 * data.numel() * data.element_size() / (time.perf_counter() - start)


def main() -> None:
    p = parser(__doc__.split("\n\n")[0])
    p.set_defaults(task="personas", prompts=4, group_size=8, max_new_tokens=40,
                   precision="bf16", threads=1)  # fmt: skip
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    folder = model_dir(args)
    model = add_lora(load_base_model(folder, args.precision), lora(args))
    task, per_step, _ = workload(args)
    tokenizer = load_tokenizer(folder)
    prompts = encode_prompts(tokenizer, [task.messages(e) for e in per_step[0]])
    rows = args.prompts * args.group_size
    print(f"machine: {machine()}")
    print(f"workload: {args.model}, {args.task}, {args.prompts} prompts x G={args.group_size} "
          f"({rows} rows per decoding step), {args.max_new_tokens} decoding steps, "
          f"prompts padded to {prompts.ids.shape[1]} tokens, {args.precision}, "
          f"{args.threads} thread(s)\n")  # fmt: skip
    steps = args.max_new_tokens
    with torch.no_grad(), autocast(args.precision):
        decode_steps(model, prompts, args.group_size, 3)  # warm-up
        adapter = statistics.median(decode_steps(model, prompts, args.group_size, steps))
        with model.disable_adapter():
            plain = statistics.median(decode_steps(model, prompts, args.group_size, steps))
        prof = profile()
        decode_steps(model, prompts, args.group_size, steps, prof)
    print(f"decoding step (median of {steps}): {adapter * 1e3:.1f} ms with the LoRA adapter, "
          f"{plain * 1e3:.1f} ms with it disabled (the adapter's modules: "
          f"{(adapter - plain) / adapter:.0%} of the step)\n")  # fmt: skip
    kinds = by_kind(prof, steps)
    print("| kind of work (profiled, with the adapter) | ms/step |\n|---|---:|")
    for kind, seconds in sorted(kinds.items(), key=lambda kv: -kv[1]):
        print(f"| {kind} | {seconds * 1e3:.1f} |")

    base = model.get_base_model()
    weights = [m.weight for name, m in base.named_modules()
               if isinstance(m, torch.nn.Linear) and "lora" not in name]  # fmt: skip
    size = sum(w.numel() * w.element_size() for w in weights)
    plain_s, plain_out = sweep(weights, rows, packed=False)
    print(f"\nproducts of all {len(weights)} weight matrices ({size / 1e6:.0f} MB, the output "
          f"layer among them) with {rows} rows: {plain_s * 1e3:.1f} ms")  # fmt: skip
    if hasattr(torch.ops.mkldnn, "_linear_pointwise") and torch.backends.mkldnn.is_available():
        packed_s, packed_out = sweep(weights, rows, packed=True)
        pairs = list(zip(plain_out, packed_out, strict=True))
        equal = sum(torch.equal(a, b) for a, b in pairs)
        worst = max(((a.float() - b.float()).abs().max() / a.float().abs().max()).item()
                    for a, b in pairs)  # fmt: skip
        print(f"the same with oneDNN weights packed beforehand: {packed_s * 1e3:.1f} ms "
              f"({equal} of {len(pairs)} outputs bit for bit equal; largest difference "
              f"{worst:.1e} of the output's largest value)")  # fmt: skip
    bandwidth = read_bandwidth()
    print(f"read bandwidth (sum of 512 MB): {bandwidth / 1e9:.1f} GB/s: the weights stream from "
          f"memory in {size / bandwidth * 1e3:.1f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
