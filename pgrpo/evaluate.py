"""Entry point: test reward of a policy (base model, or base + adapter), overall, per cluster
and per true preference group.

Greedy answers to the task's test prompts (never seen in training), scored by the task's
reward: MovieLens, 1 for the right letter (its mean is the test accuracy; an unparseable
answer counts as wrong and is reported); personas, the style + genre score of the user's
persona (reported per persona as well); reviews, the rating model's probability of the
target rating group (reported per rating group). ``usable_rate`` is the share of answers the
task could use (parsed letter; non-degenerate text).

MovieLens, a multiple-choice task, is also scored by its options (:mod:`pgrpo.choices`): the
probability of each candidate letter as the answer's first token, read from the prompt pass
that starts the greedy answer (so it costs nothing more), giving the letter accuracy, the
right letter's probability and the mass on the letters (``choices`` in the report; each
answer keeps its option log-probs). All MovieLens means are position-balanced: a policy
that always answers one letter scores exactly 1/k.

    python -m pgrpo.evaluate --config config.yaml [--task movielens] \
        --model resources/models/smollm2-135m [--adapter outputs/movielens/pgrpo/adapter] \
        --data resources/movielens --clusters outputs/movielens/clusters/kmeans_k4.json \
        [--reward-model outputs/reviews/rating_model.npz] --out eval.json
"""

from __future__ import annotations

import argparse
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from pgrpo.choices import choice_metrics, option_log_probs, stratified_mean, token_ids_of_options
from pgrpo.config import load_task_config
from pgrpo.io import load_clusters, read_jsonl, run_cli, seeded_subset, write_json
from pgrpo.models import (
    autocast,
    context_length,
    load_adapter,
    load_base_model,
    load_tokenizer,
    stop_token_ids,
)
from pgrpo.rollout import encode_prompts, generate, prefill, prompt_lengths
from pgrpo.tasks import GroupInPrompt, fit_to_context, load_task
from pgrpo.tracking import check_store, log_evaluation


@torch.no_grad()
def answer_all(
    model, tokenizer, task, examples, batch_size, max_new_tokens, option_ids=None, progress=True
) -> tuple[list[str], np.ndarray | None]:
    """Greedy completion text for every example, in order, and with ``option_ids`` (each
    example's option tokens) the log-probabilities [n, k] of the options as the answer's
    first token, read from the same prompt pass that starts the greedy answer."""
    stop_ids, texts, scored = stop_token_ids(tokenizer), [], []
    batches = range(0, len(examples), batch_size)
    for start in tqdm(batches, desc="evaluate", disable=not progress):
        batch = examples[start : start + batch_size]
        prompts = encode_prompts(tokenizer, [task.messages(e) for e in batch])
        prefilled = prefill(model, prompts)
        out = generate(
            model, prompts, 1, max_new_tokens, stop_ids, tokenizer.pad_token_id, greedy=True,
            prefilled=prefilled,
        )  # fmt: skip
        texts += tokenizer.batch_decode(out.ids * out.mask, skip_special_tokens=True)
        if option_ids is not None:
            ids = option_ids[start : start + len(batch)]
            scored.append(option_log_probs(prefilled.logits, ids))
    return texts, (np.concatenate(scored) if scored else None)


def _per(values: np.ndarray, keys: np.ndarray, strata: np.ndarray) -> dict[str, dict]:
    return {
        str(k): {
            "reward": stratified_mean(values[keys == k], strata[keys == k]),
            "n": int((keys == k).sum()),
        }  # fmt: skip
        for k in sorted(set(keys.tolist()))
    }


def reward_report(rewards, usable, clusters, num_clusters: int, groups=None, strata=None) -> dict:
    """Mean reward overall, per cluster (and the worst), per true group when ``groups`` is
    given (and the worst), usable rate, counts. With ``strata`` (a multiple-choice task's
    right positions) every mean is the mean of the per-stratum means (:mod:`pgrpo.choices`)."""
    rewards, usable, clusters = map(np.asarray, (rewards, usable, clusters))
    strata = np.zeros(len(rewards), dtype=int) if strata is None else np.asarray(strata)
    per_cluster = _per(rewards, clusters, strata)
    missing = set(map(str, range(num_clusters))) - per_cluster.keys()
    report = {
        "reward": stratified_mean(rewards, strata),
        "n": int(len(rewards)),
        "usable_rate": stratified_mean(usable, strata),
        "per_cluster": per_cluster,
        "worst_cluster_reward": min(c["reward"] for c in per_cluster.values()),
        "clusters_without_test_users": sorted(missing, key=int),
    }
    if groups is not None:
        per_group = _per(rewards, np.asarray(groups), strata)
        worst = min(per_group, key=lambda g: per_group[g]["reward"])
        report.update(per_group=per_group, worst_group=worst,
                      worst_group_reward=per_group[worst]["reward"])  # fmt: skip
    return report


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Evaluate the test reward per cluster.")
    parser.add_argument("--config", required=True)
    parser.add_argument("--task", help="a task of the registry (default: the config's first)")
    parser.add_argument("--model", required=True)
    parser.add_argument("--adapter", default=None, help="saved adapter; omit for the base model")
    parser.add_argument("--data", required=True)
    parser.add_argument("--clusters", required=True)
    parser.add_argument(
        "--reward-model", help="a task with a fitted reward: its rating model (.npz)"
    )
    parser.add_argument("--test", help="test examples (default DATA/test.jsonl), e.g. "
                        "MovieLens test_c8.jsonl with 8 candidates")  # fmt: skip
    parser.add_argument("--group-in-prompt", action="store_true", help="prompts name the "
                        "user's cluster, as the adapter's method trained")  # fmt: skip
    parser.add_argument("--out", required=True)
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def test_examples(task, config: dict, path: Path, cluster_of_user: dict, model_dir, tokenizer):
    """The test examples of clustered users, a seeded subset of ``evaluation.max_users``,
    each fitted to the model's context."""
    cfg = config["evaluation"]
    examples = [e for e in read_jsonl(path) if e["user_id"] in cluster_of_user]
    examples = seeded_subset(examples, cfg["max_users"], config["seed"])
    return fit_to_context(
        task, examples, partial(prompt_lengths, tokenizer), context_length(model_dir),
        cfg["max_new_tokens"], str(path),
    )  # fmt: skip


def evaluation_report(model, tokenizer, task, examples, cluster_of_user, num_clusters,
                      config: dict, progress: bool = True) -> dict:  # fmt: skip
    """Greedy answers to ``examples``, their rewards overall, per cluster and per true group,
    each answer, and for a multiple-choice task the option scores (``choices``)."""
    cfg, precision = config["evaluation"], config["model"]["precision"]
    options = [task.options(e) for e in examples]
    choice = all(o is not None for o in options)
    option_ids = token_ids_of_options(tokenizer, [o for o, _ in options]) if choice else None
    with autocast(precision):
        texts, option_logp = answer_all(
            model, tokenizer, task, examples, cfg["batch_size"], cfg["max_new_tokens"],
            option_ids, progress=progress,
        )  # fmt: skip
    scores = task.checked_scores(texts, examples)
    groups = [task.group_of(e) for e in examples]
    clusters = [cluster_of_user[e["user_id"]] for e in examples]
    right = [r for _, r in options] if choice else None
    rewards, usable = [r for r, _ in scores], [u for _, u in scores]
    known = groups if all(g is not None for g in groups) else None
    report = reward_report(rewards, usable, clusters, num_clusters, known, right)
    report["task"] = task.name
    report["answers"] = [
        {"user_id": e["user_id"], "group": g, "answer": t, "reward": r}
        for e, g, t, (r, _) in zip(examples, groups, texts, scores, strict=True)
    ]
    if choice:
        probs = np.exp(option_logp)
        report["choices"] = choice_metrics(probs, right, clusters, probs.sum(1))
        for answer, row in zip(report["answers"], option_logp.tolist(), strict=True):
            answer["option_log_probs"] = row
        report["num_candidates"] = sorted({len(o) for o, _ in options})
    report["max_new_tokens"] = cfg["max_new_tokens"]
    return report


def summary_line(report: dict) -> str:
    worst = f", worst group {report['worst_group']}" if "worst_group" in report else ""
    scoring = ""
    if "choices" in report:
        c = report["choices"]
        scoring = (f"; option scoring: accuracy {c['letter_accuracy']['all']:.3f}, right option's "
                   f"probability {c['correct_probability']['all']:.3f}")  # fmt: skip
    return (
        f"{report['task']}: reward {report['reward']:.3f} on {report['n']} test examples, usable "
        f"{report['usable_rate']:.3f}, worst cluster {report['worst_cluster_reward']:.3f}{worst}"
        f"{scoring}"
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    args.task, config = load_task_config(args.config, args.task)
    if args.adapter:  # its metrics join the training run: the store must be readable
        check_store()
    torch.set_num_threads(config["train"]["threads"])
    started = time.perf_counter()
    data_dir = Path(args.data)
    task = load_task(args.task, data_dir, config, args.reward_model)
    cluster_of_user, num_clusters = load_clusters(args.clusters)
    if args.group_in_prompt:
        task = GroupInPrompt(task, cluster_of_user, num_clusters)
    tokenizer = load_tokenizer(args.model)
    path = Path(args.test or data_dir / "test.jsonl")
    examples = test_examples(task, config, path, cluster_of_user, args.model, tokenizer)
    model = load_base_model(args.model, config["model"]["precision"], config["model"]["attention"])
    if args.adapter:
        model = load_adapter(model, args.adapter)
    model.eval()
    report = evaluation_report(model, tokenizer, task, examples, cluster_of_user, num_clusters,
                               config, progress=not args.no_progress)  # fmt: skip
    report["group_in_prompt"] = args.group_in_prompt  # the prompts named the user's cluster
    report["seconds"] = time.perf_counter() - started
    write_json(args.out, report)
    log_evaluation(config, args.adapter, args.out, report, "eval")
    print(summary_line(report))


if __name__ == "__main__":
    run_cli(main)
