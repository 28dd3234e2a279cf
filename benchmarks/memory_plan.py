"""Print the GPU memory plan of a config's training jobs: how many GPUs each model needs.

For every training job of the config (the main model on each task, the compared models on
MovieLens) and every accelerate file of workflow/accelerate/, the bytes one GPU holds:
weights, LoRA adapter with its gradients and AdamW state, activations, logits and the
generation cache (pgrpo/memory.py says how each is computed). Computed from the models'
``config.json``, not measured on a GPU:

    ./with-venv python benchmarks/memory_plan.py [--config profiles/paper/paper.yaml]
        [--prompt-tokens 512] [--gpu-memory 80] [--out plan.md] [--json plan.json]

``--config`` is merged over config.yaml, as ``snakemake --profile profiles/paper`` merges
it. A model's ``config.json`` is looked up as ``--model-config NAME=PATH`` (a model folder or
the file), else ``model.name`` as a local folder, else ``<models-dir>/<Org>--<Name>.json``
(the paper's three models ship in profiles/paper/models/).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pgrpo import memory
from pgrpo.config import load_configs
from pgrpo.distributed import ACCELERATE_CONFIGS
from pgrpo.io import PgrpoError, run_cli, write_json, write_text

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="profiles/paper/paper.yaml",
                   help="config file merged over config.yaml")  # fmt: skip
    p.add_argument(
        "--prompt-tokens", type=int, default=memory.PROMPT_TOKENS,
        help="tokens of a step's longest prompt (the others are padded to it), chat template "
        "included; MovieLens with 5 watched titles: about 235 (docs/performance.md)",
    )  # fmt: skip
    p.add_argument("--gpu-memory", type=float, default=memory.GPU_MEMORY_GIB, help="GiB per GPU")
    p.add_argument("--margin", type=float, default=memory.MARGIN, help="added share of the sum")
    p.add_argument("--models-dir", default="profiles/paper/models", help="config.json files")
    p.add_argument("--model-config", action="append", default=[], metavar="NAME=PATH",
                   help="config.json (or its folder) of model NAME")  # fmt: skip
    p.add_argument("--out", default=None, help="also write the tables to this file")
    p.add_argument("--json", default=None, help="also write the numbers as JSON")
    return p.parse_args(argv)


def gib(n: float) -> str:
    return f"{n / memory.GIB:.1f}"


def model_configs(pairs: list[str]) -> dict[str, Path]:
    given = {}
    for pair in pairs:
        name, sep, path = pair.partition("=")
        if not sep or not name or not path:
            raise PgrpoError(f"--model-config {pair!r}: expected NAME=PATH")
        given[name] = Path(path)
    return given


def job_label(job) -> list[str]:
    w = job.work
    return [job.model, job.task, f"{w.prompts_per_step} x {w.group_size} x {w.max_new_tokens}"]


def cell(est: memory.Estimate | None, gpu: float) -> str:
    if est is None:
        return "n/a"
    return gib(est.needed) + (" ok" if est.needed <= gpu * memory.GIB else "")


def tables(config, rows, layouts, shapes, chosen, args, sources: str) -> str:
    gpu = args.gpu_memory
    lora = config["lora"]
    lines = [
        f"config: {sources}; model.precision {config['model']['precision']}; LoRA r="
        f"{lora['r']} on {', '.join(lora['target_modules'])}",
        f"assumed: prompts of {args.prompt_tokens} tokens; margin {args.margin:.0%} of the "
        f"sum + {memory.CUDA_CONTEXT_GIB:g} GiB CUDA context; {gpu:g} GiB per GPU",
        "",
        f"GiB per GPU with the margin, per accelerate file (ok = fits in {gpu:g} GiB; "
        "n/a = the step's prompts do not split evenly):",
        "",
        "| model | task | prompts x G x new tokens | " + " | ".join(x.name for x in layouts) + " |",
        "|---|---|---|" + "---:|" * len(layouts),
    ]
    for job, estimates in rows:
        cells = [cell(est, gpu) for _, est in estimates]
        lines.append("| " + " | ".join(job_label(job) + cells) + " |")
    lines += [
        "",
        "Per GPU under each model's fewest-GPU file (GiB; the sum before the margin):",
        "",
        "| model | task | prompts x G x new tokens | file | weights | LoRA + grads + AdamW | "
        "activations | logits | KV cache | sum | with margin |",
        "|---|---|---|---|" + "---:|" * 7,
    ]
    for job, estimates in rows:
        layout = chosen[job.model]
        est: memory.Estimate | None = dict(estimates).get(layout) if layout else None
        if est is not None:
            parts = [est.weights, est.adapter, est.activations, est.logits, est.kv_cache]
            cells = [gib(x) for x in [*parts, est.total, est.needed]]
            lines.append("| " + " | ".join([*job_label(job), layout.name, *cells]) + " |")
    lines += [
        "",
        "| model | parameters | LoRA parameters | fewest GPUs that fit |",
        "|---|---:|---:|---|",
    ]
    for model, shape in shapes.items():
        adapter = memory.lora_parameter_count(shape, lora["r"], lora["target_modules"])
        layout = chosen[model]
        fits = layout.name if layout else f"none fits {gpu:g} GiB"
        lines.append(f"| {model} | {memory.parameter_count(shape):,} | {adapter:,} | {fits} |")
    every = memory.fewest_gpus(rows, None, gpu)
    lines += ["", f"launch.accelerate_config: {every.name if every else 'none fits'} "
              "(the fewest GPUs that fit every training job of the config)"]  # fmt: skip
    return "\n".join(lines) + "\n"


def as_json(rows, args, chosen) -> dict:
    jobs = []
    for job, estimates in rows:
        layouts = {}
        for layout, est in estimates:
            layouts[layout.name] = None if est is None else {
                "processes": layout.processes, "sharded": layout.sharded,
                "weights": est.weights, "adapter": est.adapter, "activations": est.activations,
                "logits": est.logits, "kv_cache": est.kv_cache, "sum": est.total,
                "needed": round(est.needed), "fits": est.needed <= args.gpu_memory * memory.GIB,
            }  # fmt: skip
        jobs.append({"model": job.model, "task": job.task, **vars(job.work), "layouts": layouts})
    return {
        "prompt_tokens": args.prompt_tokens, "margin": args.margin,
        "cuda_context_gib": memory.CUDA_CONTEXT_GIB, "gpu_memory_gib": args.gpu_memory,
        "fewest_gpus": {m: (x.name if x else None) for m, x in chosen.items()}, "jobs": jobs,
    }  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.prompt_tokens < 1 or args.gpu_memory <= 0 or args.margin < 0:
        raise PgrpoError("--prompt-tokens, --gpu-memory must be positive, --margin not negative")
    paths = [ROOT / "config.yaml", Path(args.config)]
    config = load_configs(paths)
    given = model_configs(args.model_config)
    names = [config["model"]["name"], *config["model"]["compare"]]
    shapes = {name: memory.find_model_shape(name, Path(args.models_dir), given) for name in names}
    layouts = memory.accelerate_layouts(ACCELERATE_CONFIGS)
    rows = memory.memory_plan(config, shapes, layouts, args.prompt_tokens, args.margin)
    chosen = {model: memory.fewest_gpus(rows, model, args.gpu_memory) for model in shapes}
    text = tables(config, rows, layouts, shapes, chosen, args, f"config.yaml + {args.config}")
    print(text, end="")
    if args.out:
        write_text(args.out, text)
    if args.json:
        write_json(args.json, as_json(rows, args, chosen))


if __name__ == "__main__":
    run_cli(main)
