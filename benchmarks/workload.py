"""The workload every trainer of the step benchmark runs: model, prompts, LoRA and settings.

``--task movielens`` (the default): MovieLens-100K next-item prompts from the recbole wheel;
``--task personas``: the seven-personas task's requests (generated from ``config.yaml``'s
``personas`` section), whose answers are free text of up to ``--max-new-tokens`` tokens.

Shared by ``step_throughput.py`` (which runs pgrpo's trainer and starts the others) and
``trl_step.py`` (TRL's GRPOTrainer), so that both sides see the same prompts in the same
order, the same model, LoRA configuration, group size, completion length, sampling settings,
beta and precision.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
from pathlib import Path

import numpy as np
import torch

from pgrpo.config import model_dir_name
from pgrpo.data.movielens import build_examples, default_raw_dir, load_movielens
from pgrpo.models import LoraSettings, materialize_model
from pgrpo.tasks import Task
from pgrpo.tasks.movielens import MovieLensTask

ROOT = Path(__file__).resolve().parents[1]


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--model", default="smollm2-135m", help="smollm2-135m or tiny")
    p.add_argument("--task", default="movielens", choices=["movielens", "personas"])
    p.add_argument("--models-dir", default="resources/models", help="materialised models")
    p.add_argument("--prompts", type=int, default=8, help="prompts per step")
    p.add_argument("--group-size", type=int, default=4)
    p.add_argument("--max-new-tokens", type=int, default=4)
    p.add_argument("--history", type=int, default=10, help="titles of history per prompt")
    p.add_argument("--candidates", type=int, default=4)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--beta", type=float, default=0.04)
    p.add_argument("--learning-rate", type=float, default=1e-5)
    p.add_argument("--lora-r", type=int, default=16)
    p.add_argument("--lora-alpha", type=float, default=32)
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    p.add_argument(
        "--device", default="cpu", choices=["cpu", "cuda"],
        help="where every trainer runs (cuda: the first visible GPU)",
    )  # fmt: skip
    p.add_argument("--warmup", type=int, default=1, help="steps run before measuring")
    p.add_argument("--repeats", type=int, default=5, help="steps measured (medians reported)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--trl-option", action="append", default=[], metavar="KEY=VALUE",
        help="override a GRPOConfig field of the TRL run (JSON value), e.g. "
        "gradient_checkpointing=false; TRL's own defaults are kept otherwise",
    )  # fmt: skip
    return p


def lora(args) -> LoraSettings:
    return LoraSettings(args.lora_r, args.lora_alpha, 0.0, ("q_proj", "v_proj"))


def model_dir(args) -> Path:
    """The materialised checkpoint folder, converted once (as the workflow's rule does)."""
    folder = Path(args.models_dir) / model_dir_name(args.model)
    if not (folder / "config.json").is_file():
        materialize_model(args.model, folder, seed=args.seed)
    return folder


def workload(args) -> tuple[Task, list[list[dict]], dict[int, int]]:
    """(task, the prompts of every step in order, a cluster id per user).

    MovieLens-100K (inside the recbole wheel), one training example per user, or the
    personas task's requests; a seeded sample; four random preference clusters (their
    values do not change the work done).
    """
    if args.task == "personas":
        task, examples = personas_examples(args.seed)
    else:
        ml = load_movielens("ml-100k", default_raw_dir("ml-100k"))
        task = MovieLensTask.from_items_frame(ml.items)
        examples = build_examples(
            ml, history_length=args.history, num_candidates=args.candidates,
            max_train_examples_per_user=1, min_ratings=args.history + 3, seed=args.seed,
        )["train"]  # fmt: skip
    steps = args.warmup + args.repeats + 1  # + 1: the step whose FLOPs are counted
    rng = np.random.default_rng(args.seed)
    picked = rng.choice(len(examples), size=steps * args.prompts, replace=False)
    chosen = [examples[i] for i in picked]
    per_step = [chosen[i * args.prompts : (i + 1) * args.prompts] for i in range(steps)]
    clusters = {int(e["user_id"]): int(rng.integers(4)) for e in examples}
    return task, per_step, clusters


def personas_examples(seed: int) -> tuple[Task, list[dict]]:
    """The personas task and its training requests, as ``config.yaml`` generates them."""
    from pgrpo.config import load_config
    from pgrpo.data.personas import generate_users
    from pgrpo.tasks.personas import PersonasTask, split_examples

    config = load_config(ROOT / "config.yaml")["personas"]
    task = PersonasTask(config["max_words"])
    return task, split_examples(generate_users(config, seed))["train"]


def check_device(device: str) -> None:
    """A one-line error when ``--device cuda`` meets a torch that sees no GPU."""
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit(
            f"--device cuda: torch {torch.__version__} sees no CUDA device "
            f"(built with CUDA {torch.version.cuda or 'none'})"
        )


def synchronize(device: str) -> None:
    """Wait for the GPU's queued work, so that a wall-clock time covers it."""
    if device == "cuda":
        torch.cuda.synchronize()


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def peak_gpu_gb(device: str) -> float | None:
    """Peak GPU memory allocated by this process's tensors (None on the CPU)."""
    return torch.cuda.max_memory_allocated() / 1024**3 if device == "cuda" else None


def machine() -> str:
    """CPU model, usable cores and torch build, e.g. for the README's tables."""
    cpu = platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cpu}, {cores} cores, torch {torch.__version__}"


# Square matmul sizes of the measured peak: 1024 keeps a CPU busy; a GPU needs 8192 to
# approach its peak (1024^3 is a few microseconds of an H100).
PEAK_SIZE = {"cpu": 1024, "cuda": 8192}


def matmul_flops_per_second(precision: str, threads: int, device: str = "cpu") -> float:
    """Measured dense matmul throughput of this machine (the utilisation denominator)."""
    import time

    torch.set_num_threads(threads)
    size = PEAK_SIZE[device]
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a, b = (torch.randn(size, size, dtype=dtype, device=device) for _ in range(2))
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(5):
        synchronize(device)
        start = time.perf_counter()
        for _ in range(10):
            a @ b
        synchronize(device)
        best = min(best, (time.perf_counter() - start) / 10)
    return 2 * size**3 / best
