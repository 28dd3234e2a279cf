"""Entry point: train a LoRA adapter with GRPO or P-GRPO; launched by ``accelerate launch``.

    accelerate launch --num_processes 1 -m pgrpo.train --config config.yaml --method pgrpo \
        [--task movielens] --model resources/models/smollm2-135m --data resources/movielens \
        --clusters outputs/movielens/clusters/kmeans_k4.json [--seed 1] \
        --out outputs/smollm2-135m/movielens/kmeans_k4/seed1/pgrpo

``--seed`` is the training seed (prompt order, sampling, LoRA initialisation; default the
config's ``seed``); data and clusters always come from the config's seed. ``--group-size``
trains with that G instead of ``train.group_size`` (figure 7's runs).

``--task personas`` / ``--task reviews`` train on those tasks' prepared folders (reviews also
needs ``--reward-model``, the rating model); the task's overrides of the train section apply
(``personas.train`` over ``train``). The clusters file of reviews is the prepared
``groups.json`` (the rating groups).

Writes ``--out``/adapter (peft ``save_pretrained``, safetensors; the same bytes for the same
weights, :func:`pgrpo.models.save_adapter`) and ``--out``/metrics.jsonl (one line of metrics
per step; a multiple-choice task also scores its validation prompts' options before the first
step, keys ``val0/...``, and every ``train.eval_every`` updates, keys ``val/...`` with
``val/updates``), each only when training has finished; a write that runs out of room (there or in a
checkpoint) stops with one line naming the file. Every step is also
logged to MLflow (``MLFLOW_TRACKING_URI``, default ``sqlite:///mlflow.db``), with the adapter
and the final per-cluster statistics as artifacts; see :mod:`pgrpo.tracking` for the tags.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import signal
import sys
import time
from functools import partial
from pathlib import Path

import torch
from tqdm.auto import tqdm

from pgrpo import checkpoint, sharding
from pgrpo.config import TASKS, config_hash, load_config, task_config
from pgrpo.io import (
    PgrpoError,
    atomic_path,
    load_clusters,
    read_jsonl,
    run_cli,
    sha256_of,
    write_jsonl,
)
from pgrpo.launch import make_accelerator
from pgrpo.models import (
    LoraSettings,
    add_lora,
    context_length,
    load_base_model,
    load_tokenizer,
    save_adapter,
    stop_token_ids,
)
from pgrpo.rollout import prompt_lengths
from pgrpo.tasks import fit_to_context, load_task
from pgrpo.tracking import RUN_DIR_TAG, Tracker, check_store, git_commit, run_dir_tag
from pgrpo.trainer import Trainer, TrainSettings, seed_everything

# Settings that change how training runs, not what it computes: a checkpoint survives them
# (the validation scores read the policy, they do not change it).
OPERATIONAL = ("threads", "log_every", "checkpoint_every", "eval_every", "eval_prompts")


def run_fingerprint(config: dict, args, tags: dict) -> dict:
    """What identifies a training run; a checkpoint is resumed only when it is unchanged:
    method, seed, data, clusters, reward model and every setting it trains with (the number
    of processes is checked by :func:`pgrpo.checkpoint.resume` itself)."""
    train = {k: v for k, v in config["train"].items() if k not in OPERATIONAL}
    settings = {"train": train, "lora": config["lora"], "model": config["model"],
                "seed": config["seed"], "task": config.get(args.task)}  # fmt: skip
    keys = ("task", "method", "seed", "data_sha256", "clusters_sha256")
    fingerprint = {k: str(tags[k]) for k in keys}
    fingerprint["settings"] = config_hash(settings)
    if args.reward_model:
        fingerprint["reward_model"] = sha256_of(args.reward_model)
    return fingerprint


class Stopped(Exception):
    """SIGTERM received: the run checkpointed and stops (exit code 143)."""


def cluster_statistics(stats) -> dict:
    """The final P-GRPO statistics per cluster (count, mean, sigma_p; null sigma below two
    rewards), the MLflow artifact ``cluster_stats.json`` of a training run."""
    rows = zip(stats.count.tolist(), stats.mean.tolist(), stats.std.tolist(), strict=True)
    return {
        "num_clusters": stats.num_clusters,
        "decay": stats.decay,
        "unbiased": stats.unbiased,
        "clusters": [
            {"cluster": k, "count": c, "mean": m, "std": None if math.isnan(s) else s}
            for k, (c, m, s) in enumerate(rows)
        ],
    }


def validation_scorer(task, config: dict, data_dir: Path, tokenizer, precision: str):
    """A function of the policy giving its option scores on the validation prompts
    (``val/letter_accuracy``, ``val/correct_probability``), or None when the task is not
    multiple choice, ``train.eval_every`` is 0 or there is no validation split."""
    from pgrpo.choices import score_options
    from pgrpo.io import seeded_subset
    from pgrpo.models import autocast

    path = data_dir / "validation.jsonl"
    every = config["train"]["eval_every"]
    if not every or not path.is_file():
        return None
    examples = read_jsonl(path)
    if not examples or task.options(examples[0]) is None:
        return None
    examples = seeded_subset(examples, config["train"]["eval_prompts"], [config["seed"], 29])
    batch = config["evaluation"]["batch_size"]

    def score(model) -> dict:
        was_training = model.training
        model.eval()
        with autocast(precision):
            result = score_options(model, tokenizer, task, examples, batch)
        model.train(was_training)
        scores = {f"val/{m}": result[m]["all"] for m in ("letter_accuracy", "correct_probability")}
        return {**scores, "val/num_options": result["num_options"]}

    return score


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train GRPO or P-GRPO with LoRA.")
    parser.add_argument("--config", required=True)
    parser.add_argument("--method", required=True, choices=["grpo", "pgrpo"])
    parser.add_argument("--task", choices=TASKS, default="movielens")
    parser.add_argument("--model", required=True, help="materialised base model folder")
    parser.add_argument("--data", required=True, help="the task's prepared folder")
    parser.add_argument("--clusters", required=True)
    parser.add_argument("--reward-model", help="reviews: the rating model (.npz)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--seed", type=int, help="training seed (default: the config's seed)")
    parser.add_argument("--group-size", type=int, help="G, instead of the config's "
                        "train.group_size (figure 7's runs)")  # fmt: skip
    parser.add_argument("--eval-every", type=int, help="instead of train.eval_every (0: no "
                        "validation scores, as the ablation runs)")  # fmt: skip
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    config = task_config(load_config(args.config), args.task)
    # The config as the invocation resolved it; a run's own overrides below are tags of theirs.
    invocation_hash = config_hash(config)
    if args.group_size is not None:
        if args.group_size < 2:
            raise PgrpoError(f"--group-size: expected at least 2, got {args.group_size}")
        config["train"]["group_size"] = args.group_size
    if args.eval_every is not None:
        if args.eval_every < 0:
            raise PgrpoError(f"--eval-every: expected 0 or more, got {args.eval_every}")
        config["train"]["eval_every"] = args.eval_every
    check_store()  # an unreadable MLflow store stops the run before any work
    settings = TrainSettings.from_config(config, args.method)
    if args.seed is not None:
        settings = dataclasses.replace(settings, seed=args.seed)
    torch.set_num_threads(config["train"]["threads"])
    accelerator = make_accelerator(config["launch"])
    seed_everything(settings.seed + accelerator.process_index)

    data_dir = Path(args.data)
    examples = read_jsonl(data_dir / "train.jsonl")
    cluster_of_user, num_clusters = load_clusters(args.clusters)
    missing = {e["user_id"] for e in examples} - cluster_of_user.keys()
    if missing:
        raise PgrpoError(f"{args.clusters}: {len(missing)} training users have no cluster")
    tokenizer = load_tokenizer(args.model)
    task = load_task(args.task, data_dir, config, args.reward_model)
    examples = fit_to_context(
        task, examples, partial(prompt_lengths, tokenizer), context_length(args.model),
        settings.max_new_tokens, str(data_dir / "train.jsonl"),
    )  # fmt: skip
    policy = add_lora(
        load_base_model(args.model, settings.precision, config["model"]["attention"]),
        LoraSettings.from_config(config),
    )
    trainer = Trainer(
        policy, tokenizer, task, accelerator, settings, num_clusters, stop_token_ids(tokenizer)
    )

    tags = {
        "task": args.task, "method": args.method, "num_clusters": num_clusters,
        "partition": Path(args.clusters).stem,
        "seed": settings.seed, "group_size": settings.group_size,
        "git_commit": git_commit(), "config_hash": invocation_hash,
        "model": config["model"]["name"], "processes": accelerator.num_processes,
        "sharded": trainer.sharded,
        "data_sha256": sha256_of(data_dir / "train.jsonl"),
        "clusters_sha256": sha256_of(args.clusters), RUN_DIR_TAG: run_dir_tag(args.out),
    }  # fmt: skip
    # A checkpoint of this very run (same method, seed, config, data, clusters, model): resume.
    fingerprint = run_fingerprint(config, args, tags)
    resumed = checkpoint.resume(trainer, args.out, fingerprint)
    if os.environ.get("SLURM_JOB_ID"):  # submitted through SLURM: which job trained it
        tags["slurm_job_id"] = os.environ["SLURM_JOB_ID"]
    tracker = Tracker(enabled=accelerator.is_main_process)
    tracker.start(
        config["mlflow"]["experiment"],
        f"{args.task}-{args.method}-seed{settings.seed}",
        config,
        tags,
        resume_run_id=resumed.mlflow_run_id,
    )
    logged = tracker.last_logged_step("reward_mean")  # steps a killed process already logged
    if resumed.folder is not None:
        print(f"resuming from {resumed.folder} (step {resumed.next_step} of {settings.steps})")
    history = resumed.history
    stop = checkpoint.StopRequest()
    every = config["train"]["checkpoint_every"]
    bar = tqdm(
        initial=resumed.next_step,
        total=settings.steps,
        desc=f"{args.task} {args.method}",
        disable=args.no_progress or not accelerator.is_main_process,
    )
    started = time.perf_counter()
    scorer = validation_scorer(task, config, data_dir, tokenizer, settings.precision)
    every_eval = config["train"]["eval_every"]
    initial = scorer(trainer.policy) if scorer and resumed.next_step == 0 else {}

    def on_step(step: int, metrics: dict) -> None:
        if step == 0:  # the policy before any update: keys val0/...
            metrics.update({k.replace("val/", "val0/"): v for k, v in initial.items()})
        updates = step + 1
        if scorer and (updates % every_eval == 0 or updates == settings.steps):
            metrics.update(scorer(trainer.policy), **{"val/updates": updates})
        history.append({"step": step, **metrics})
        due = step % settings.log_every == 0 or step == settings.steps - 1
        if due and step > logged:
            tracker.log_metrics(metrics, step)
        bar.update(1)
        bar.set_postfix(reward=f"{metrics['reward_mean']:.3f}", kl=f"{metrics['kl']:.4f}")
        next_step = step + 1
        if next_step == settings.steps:
            return  # the last step: the outputs are written next
        stopping = stop.agreed(accelerator)
        if stopping or (every and next_step % every == 0):
            checkpoint.save(trainer, args.out, next_step, history, tracker.run_id, fingerprint)
        if stopping:
            raise Stopped(f"signal {stop.signal}: checkpoint of step {next_step} saved in "
                          f"{args.out}/{checkpoint.FOLDER}; run again to resume")  # fmt: skip

    try:
        trainer.train(examples, cluster_of_user, on_step, start=resumed.next_step)
    except Stopped as e:
        tracker.end("KILLED")
        print(f"stopped: {e}", file=sys.stderr)
        sys.exit(128 + signal.SIGTERM)
    except BaseException:
        tracker.end("FAILED")
        raise
    bar.close()
    elapsed = time.perf_counter() - started
    # Sharded: the adapter's full tensors, gathered by every process; else peft's own.
    adapter = sharding.full_trainable_state(trainer.policy) if trainer.sharded else None
    if accelerator.is_main_process:
        out = Path(args.out)
        with atomic_path(out / "adapter", is_dir=True) as tmp:
            save_adapter(accelerator.unwrap_model(trainer.policy), tmp, state_dict=adapter)
        write_jsonl(out / "metrics.jsonl", history)
        tracker.log_metrics({"train_seconds": elapsed}, settings.steps)
        tracker.log_artifacts(out / "adapter", "adapter")
        if args.method == "pgrpo":  # GRPO keeps no running statistics
            tracker.log_dict(cluster_statistics(trainer.cluster_stats), "cluster_stats.json")
        checkpoint.remove(out)
        print(f"{args.method}: {settings.steps} steps in {elapsed:.0f} s, adapter in {out}")
    tracker.end()
    accelerator.wait_for_everyone()


if __name__ == "__main__":
    run_cli(main)
