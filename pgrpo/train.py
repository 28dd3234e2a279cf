"""Entry point: train a LoRA adapter with one of the config's ``train.methods`` (GRPO, P-GRPO,
the baselines of :mod:`pgrpo.methods`); launched by ``accelerate launch``.

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
import signal
import sys
import time
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import torch
from tqdm.auto import tqdm

from pgrpo import checkpoint, sharding
from pgrpo.advantages import cluster_statistics
from pgrpo.choices import validation_scorer
from pgrpo.config import config_hash, load_task_config
from pgrpo.distributed import make_accelerator
from pgrpo.dpo import PairTrainer
from pgrpo.io import PgrpoError, atomic_path, load_clusters, read_jsonl, run_cli, write_jsonl
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
from pgrpo.settings import TrainSettings, seed_everything
from pgrpo.tasks import GroupInPrompt, fit_to_context, load_task
from pgrpo.tracking import Tracker, check_store, training_tags
from pgrpo.trainer import Trainer


class Stopped(Exception):
    """SIGTERM received: the run checkpointed and stops (exit code 143)."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train a method of train.methods with LoRA.")
    parser.add_argument("--config", required=True)
    parser.add_argument("--method", required=True, help="a name of the config's train.methods")
    parser.add_argument("--task", help="a task of the registry (default: the config's first)")
    parser.add_argument("--model", required=True, help="materialised base model folder")
    parser.add_argument("--data", required=True, help="the task's prepared folder")
    parser.add_argument("--clusters", required=True)
    parser.add_argument(
        "--reward-model", help="a task with a fitted reward: its rating model (.npz)"
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--seed", type=int, help="training seed (default: the config's seed)")
    parser.add_argument("--group-size", type=int, help="G, instead of the config's "
                        "train.group_size (figure 7's runs)")  # fmt: skip
    parser.add_argument("--eval-every", type=int, help="instead of train.eval_every (0: no "
                        "validation scores, as the ablation runs)")  # fmt: skip
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def run_config(args) -> tuple[dict, str]:
    """The task's config with this run's own flags applied, and the hash of the config as
    the invocation resolved it (the run's flags are tags of their own, not a new config)."""
    args.task, config = load_task_config(args.config, args.task)
    invocation_hash = config_hash(config)
    if args.group_size is not None:
        if args.group_size < 2:
            raise PgrpoError(f"--group-size: expected at least 2, got {args.group_size}")
        config["train"]["group_size"] = args.group_size
    if args.eval_every is not None:
        if args.eval_every < 0:
            raise PgrpoError(f"--eval-every: expected 0 or more, got {args.eval_every}")
        config["train"]["eval_every"] = args.eval_every
    return config, invocation_hash


def setup(config: dict, args) -> SimpleNamespace:
    """Seeds, accelerator, training examples and their clusters, task, policy and trainer."""
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
    if settings.group_in_prompt:
        task = GroupInPrompt(task, cluster_of_user, num_clusters)
    examples = fit_to_context(
        task, examples, partial(prompt_lengths, tokenizer), context_length(args.model),
        settings.max_new_tokens, str(data_dir / "train.jsonl"),
    )  # fmt: skip
    policy = add_lora(
        load_base_model(args.model, settings.precision, config["model"]["attention"]),
        LoraSettings.from_config(config),
    )
    loop = PairTrainer if settings.objective == "dpo" else Trainer
    trainer = loop(
        policy, tokenizer, task, accelerator, settings, num_clusters, stop_token_ids(tokenizer)
    )
    return SimpleNamespace(
        settings=settings, accelerator=accelerator, data_dir=data_dir, examples=examples,
        clusters=cluster_of_user, tokenizer=tokenizer, task=task, trainer=trainer,
    )  # fmt: skip


def step_hook(run, config: dict, args, tracker, resumed, fingerprint, bar):
    """The function the trainer calls after each step: validation scores, the history, MLflow,
    the progress bar, periodic checkpoints and a checkpoint then :class:`Stopped` on SIGTERM."""
    settings, accelerator, trainer = run.settings, run.accelerator, run.trainer
    scorer = validation_scorer(run.task, config, run.data_dir, run.tokenizer, settings.precision)
    every_eval, every = config["train"]["eval_every"], config["train"]["checkpoint_every"]
    initial = scorer(trainer.policy) if scorer and resumed.next_step == 0 else {}
    logged = tracker.last_logged_step("reward_mean")  # steps a killed process already logged
    stop = checkpoint.StopRequest()

    def on_step(step: int, metrics: dict) -> None:
        if step == 0:  # the policy before any update: keys val0/...
            metrics.update({k.replace("val/", "val0/"): v for k, v in initial.items()})
        updates = step + 1
        if scorer and (updates % every_eval == 0 or updates == settings.steps):
            metrics.update(scorer(trainer.policy), **{"val/updates": updates})
        resumed.history.append({"step": step, **metrics})
        due = step % settings.log_every == 0 or step == settings.steps - 1
        if due and step > logged:
            tracker.log_metrics(metrics, step)
        bar.update(1)
        shown = {"reward": f"{metrics['reward_mean']:.3f}"}
        shown |= {k: f"{metrics[k]:.4f}" for k in ("kl", "dpo/margin") if k in metrics}
        bar.set_postfix(shown)
        next_step = step + 1
        if next_step == settings.steps:
            return  # the last step: the outputs are written next
        stopping = stop.agreed(accelerator)
        if stopping or (every and next_step % every == 0):
            checkpoint.save(trainer, args.out, next_step, resumed.history, tracker.run_id,
                            fingerprint)  # fmt: skip
        if stopping:
            raise Stopped(f"signal {stop.signal}: checkpoint of step {next_step} saved in "
                          f"{args.out}/{checkpoint.FOLDER}; run again to resume")  # fmt: skip

    return on_step


def write_outputs(run, args, tracker, history: list[dict], elapsed: float) -> None:
    """The adapter, metrics.jsonl and the MLflow artifacts (main process), then the
    checkpoint goes; every process waits for the others."""
    trainer, accelerator, steps = run.trainer, run.accelerator, run.settings.steps
    # Sharded: the adapter's full tensors, gathered by every process; else peft's own.
    adapter = sharding.full_trainable_state(trainer.policy) if trainer.sharded else None
    if accelerator.is_main_process:
        out = Path(args.out)
        with atomic_path(out / "adapter", is_dir=True) as tmp:
            save_adapter(accelerator.unwrap_model(trainer.policy), tmp, state_dict=adapter)
        write_jsonl(out / "metrics.jsonl", history)
        tracker.log_metrics({"train_seconds": elapsed}, steps)
        tracker.log_artifacts(out / "adapter", "adapter")
        if run.settings.advantage == "cluster":  # only P-GRPO keeps running statistics
            tracker.log_dict(cluster_statistics(trainer.cluster_stats), "cluster_stats.json")
        checkpoint.remove(out)
        print(f"{args.method}: {steps} steps in {elapsed:.0f} s, adapter in {out}")
    tracker.end()
    accelerator.wait_for_everyone()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    config, invocation_hash = run_config(args)
    check_store()  # an unreadable MLflow store stops the run before any work
    run = setup(config, args)
    tags = training_tags(args, run, config, invocation_hash)
    # A checkpoint of this very run (same method, seed, config, data, clusters, model): resume.
    fingerprint = checkpoint.run_fingerprint(config, tags, args.reward_model)
    resumed = checkpoint.resume(run.trainer, args.out, fingerprint)
    tracker = Tracker(enabled=run.accelerator.is_main_process)
    name = f"{args.task}-{args.method}-seed{run.settings.seed}"
    tracker.start(config["mlflow"]["experiment"], name, config, tags, resumed.mlflow_run_id)
    if resumed.folder is not None:
        print(f"resuming from {resumed.folder} (step {resumed.next_step} of {run.settings.steps})")
    quiet = args.no_progress or not run.accelerator.is_main_process
    bar = tqdm(initial=resumed.next_step, total=run.settings.steps,
               desc=f"{args.task} {args.method}", disable=quiet)  # fmt: skip
    on_step = step_hook(run, config, args, tracker, resumed, fingerprint, bar)
    started = time.perf_counter()
    try:
        run.trainer.train(run.examples, run.clusters, on_step, start=resumed.next_step)
    except Stopped as e:
        tracker.end("KILLED")
        print(f"stopped: {e}", file=sys.stderr)
        sys.exit(128 + signal.SIGTERM)
    except BaseException:
        tracker.end("FAILED")
        raise
    bar.close()
    write_outputs(run, args, tracker, resumed.history, time.perf_counter() - started)


if __name__ == "__main__":
    run_cli(main)
