"""Entry point: test accuracy of a policy (base model, or base + adapter), overall and per cluster.

Greedy answers to the test prompts (the last interaction of each user, never seen in
training), parsed into a letter; an unparseable answer counts as wrong and is reported.

    python -m pgrpo.evaluate --config config.yaml --model resources/models/smollm2-135m \
        [--adapter outputs/movielens/pgrpo/adapter] --data resources/movielens \
        --clusters outputs/movielens/clusters/kmeans_k4.json --out eval.json
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from pgrpo.config import load_config
from pgrpo.io import read_jsonl, run_cli, write_json
from pgrpo.models import autocast, load_adapter, load_base_model, load_tokenizer, stop_token_ids
from pgrpo.rollout import encode_prompts, generate
from pgrpo.train import load_clusters, load_task


def select_examples(examples: list[dict], max_users: int | None, seed: int) -> list[dict]:
    """At most ``max_users`` test examples (one per user), a seeded choice kept in user order."""
    if max_users is None or len(examples) <= max_users:
        return examples
    keep = np.random.default_rng(seed).choice(len(examples), size=max_users, replace=False)
    return [examples[i] for i in sorted(keep)]


@torch.no_grad()
def answer_all(model, tokenizer, task, examples, batch_size, max_new_tokens, progress=True):
    """Greedy completion text for every example, in order."""
    stop_ids, texts = stop_token_ids(tokenizer), []
    batches = range(0, len(examples), batch_size)
    for start in tqdm(batches, desc="evaluate", disable=not progress):
        batch = examples[start : start + batch_size]
        prompts = encode_prompts(tokenizer, [task.messages(e) for e in batch])
        out = generate(
            model, prompts, 1, max_new_tokens, stop_ids, tokenizer.pad_token_id, greedy=True
        )
        texts += tokenizer.batch_decode(out.ids * out.mask, skip_special_tokens=True)
    return texts


def accuracy_report(correct, parsed, clusters, num_clusters: int) -> dict:
    """Accuracy overall and per cluster, worst-cluster accuracy, parse rate, counts."""
    correct, parsed, clusters = map(np.asarray, (correct, parsed, clusters))
    per_cluster = {}
    for k in range(num_clusters):
        in_k = clusters == k
        if in_k.any():
            per_cluster[str(k)] = {"accuracy": float(correct[in_k].mean()), "n": int(in_k.sum())}
    return {
        "accuracy": float(correct.mean()),
        "n": int(len(correct)),
        "parse_rate": float(parsed.mean()),
        "per_cluster": per_cluster,
        "worst_cluster_accuracy": min(c["accuracy"] for c in per_cluster.values()),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Evaluate test accuracy per cluster.")
    parser.add_argument("--config", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--adapter", default=None, help="saved adapter; omit for the base model")
    parser.add_argument("--data", required=True)
    parser.add_argument("--clusters", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    cfg = config["evaluation"]
    torch.set_num_threads(config["train"]["threads"])
    started = time.perf_counter()

    data_dir = Path(args.data)
    task = load_task(data_dir)
    cluster_of_user, num_clusters = load_clusters(args.clusters)
    examples = [e for e in read_jsonl(data_dir / "test.jsonl") if e["user_id"] in cluster_of_user]
    examples = select_examples(examples, cfg["max_users"], config["seed"])
    tokenizer = load_tokenizer(args.model)
    model = load_base_model(args.model)
    if args.adapter:
        model = load_adapter(model, args.adapter)
    model.eval()
    with autocast(config["model"]["precision"]):
        texts = answer_all(
            model, tokenizer, task, examples, cfg["batch_size"], cfg["max_new_tokens"],
            progress=not args.no_progress,
        )  # fmt: skip
    scores = [task.score(t, e) for t, e in zip(texts, examples, strict=True)]
    report = accuracy_report(
        [s[0] for s in scores],
        [s[1] for s in scores],
        [cluster_of_user[e["user_id"]] for e in examples],
        num_clusters,
    )
    report["seconds"] = time.perf_counter() - started
    report["num_candidates"] = cfg["num_candidates"]
    write_json(args.out, report)
    print(
        f"accuracy {report['accuracy']:.3f} on {report['n']} users, parse rate "
        f"{report['parse_rate']:.3f}, worst cluster {report['worst_cluster_accuracy']:.3f}"
    )


if __name__ == "__main__":
    run_cli(main)
