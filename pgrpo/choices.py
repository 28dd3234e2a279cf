"""Multiple-choice scoring that a content-blind policy cannot pass.

A multiple-choice task (MovieLens: the letter of the movie watched next) is also evaluated
by *scoring the options*: one forward pass over the prompt, the next-token distribution read
at the k option tokens (the letters "A", "B", ...). From it:

* ``letter_accuracy``: the right option has the most probability (ties share the credit);
* ``correct_probability``: the right option's probability, renormalised over the k options;
* ``letter_mass``: the probability the model puts on the k option tokens at all, out of its
  whole vocabulary (how much it answers with a letter).

Every mean here is *position-balanced*: the mean, over the k positions of the right option,
of the per-position means (the balanced accuracy of scikit-learn, with the right position as
the class). A policy that always picks the same position, or any content-blind policy,
scores exactly ``1 / k`` whatever the share of each position among the test prompts; with
the test set's positions balanced (:func:`pgrpo.data.movielens.balance_positions`) it equals
the plain mean up to one prompt per position.

The per-position table says, for each position, how often it was right and how often it was
chosen: a policy collapsed onto one letter shows as one position chosen nearly always.
"""

from __future__ import annotations

import numpy as np
import torch

from pgrpo.io import PgrpoError

METRICS = ("letter_accuracy", "correct_probability", "letter_mass")


def option_token_ids(tokenizer, options: list[str]) -> list[int]:
    """The token each option starts an assistant answer with; an option that is not one
    token there raises PgrpoError (it could not be scored by one next-token distribution)."""
    from pgrpo.rollout import _chat_texts

    prompt = _chat_texts(tokenizer, [[{"role": "user", "content": "?"}]])[0]
    before = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    ids = []
    for option in options:
        after = tokenizer(prompt + option, add_special_tokens=False)["input_ids"]
        extra = after[len(before) :]
        if after[: len(before)] != before or len(extra) != 1:
            raise PgrpoError(
                f"option {option!r}: the tokenizer writes it as {len(extra)} tokens at the start "
                "of an answer, expected 1 (option scoring reads one next-token distribution)"
            )
        ids.append(extra[0])
    return ids


def token_ids_of_options(tokenizer, options: list[list[str]]) -> list[list[int]]:
    """:func:`option_token_ids` of each example's options (each distinct list tokenised once)."""
    known: dict[tuple, list[int]] = {}
    for row in map(tuple, options):
        if row not in known:
            known[row] = option_token_ids(tokenizer, list(row))
    return [known[tuple(row)] for row in options]


def option_log_probs(first_logits: torch.Tensor, option_ids: list[list[int]]) -> np.ndarray:
    """Log-probabilities [B, k] of each row's options under the next-token distribution
    ``first_logits`` [B, V] (float32 log-softmax over the whole vocabulary)."""
    ids = torch.tensor(option_ids, dtype=torch.long, device=first_logits.device)
    log_probs = torch.log_softmax(first_logits.float(), dim=-1)
    return log_probs.gather(1, ids).double().cpu().numpy()


def stratified_mean(values, strata) -> float:
    """Mean over the strata present of each stratum's mean."""
    values, strata = np.asarray(values, dtype=float), np.asarray(strata)
    if values.size == 0:
        raise PgrpoError("no values to average")
    return float(np.mean([values[strata == s].mean() for s in np.unique(strata)]))


def _balanced(values, right, clusters) -> dict:
    """Position-balanced mean overall, per cluster, and the worst cluster."""
    per_cluster = {
        str(c): stratified_mean(values[clusters == c], right[clusters == c])
        for c in sorted(set(clusters.tolist()))
    }
    return {
        "all": stratified_mean(values, right),
        "per_cluster": per_cluster,
        "worst_cluster": min(per_cluster.values()),
    }


def option_credit(probs, right) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per example: the credit of the top option (1 when the right option alone has the most
    probability, ``1 / m`` when it ties with m - 1 others, else 0), the right option's
    renormalised probability, and the share of the pick each option gets [n, k]."""
    probs = np.asarray(probs, dtype=float)
    probs = probs / probs.sum(1, keepdims=True)
    rows = np.arange(len(probs))
    top = probs >= probs.max(1, keepdims=True) * (1 - 1e-9)  # ties share the credit
    return top[rows, right] / top.sum(1), probs[rows, right], top / top.sum(1, keepdims=True)


def choice_metrics(probs, right, clusters, mass=None) -> dict:
    """The position-balanced scores of option distributions.

    ``probs`` [n, k]: each example's probability of each option (rows need not sum to 1:
    they are renormalised); ``right`` [n]: the right option's index; ``clusters`` [n]: each
    example's cluster; ``mass`` [n]: the probability of the k options out of the whole
    vocabulary (1 when None: a heuristic that always names an option).
    """
    probs = np.asarray(probs, dtype=float)
    right, clusters = np.asarray(right), np.asarray(clusters)
    n, k = probs.shape
    if right.shape != (n,) or clusters.shape != (n,) or ((right < 0) | (right >= k)).any():
        raise PgrpoError(f"choice metrics: expected {n} right answers in [0, {k}) and clusters")
    credit, correct, chosen = option_credit(probs, right)
    mass = np.ones(n) if mass is None else np.asarray(mass, dtype=float)
    return {
        "n": n,
        "num_options": k,
        "letter_accuracy": _balanced(credit, right, clusters),
        "correct_probability": _balanced(correct, right, clusters),
        "letter_mass": _balanced(mass, right, clusters),
        "per_position": {
            str(p): {
                "n": int((right == p).sum()),
                "accuracy": float(credit[right == p].mean()) if (right == p).any() else None,
                "chosen": float(chosen[:, p].mean()),
            }
            for p in range(k)
        },
    }


@torch.no_grad()
def score_options(model, tokenizer, task, examples, batch_size) -> dict:
    """Option scoring alone (one prompt pass per batch, no answer generated) of multiple-choice
    ``examples``: :func:`choice_metrics` over all of them as one cluster."""
    from pgrpo.rollout import encode_prompts, prefill

    options = [task.options(e) for e in examples]
    option_ids = token_ids_of_options(tokenizer, [o for o, _ in options])
    scored = []
    for start in range(0, len(examples), batch_size):
        batch = examples[start : start + batch_size]
        prompts = encode_prompts(tokenizer, [task.messages(e) for e in batch])
        ids = option_ids[start : start + len(batch)]
        scored.append(option_log_probs(prefill(model, prompts).logits, ids))
    probs = np.exp(np.concatenate(scored))
    return choice_metrics(probs, [r for _, r in options], np.zeros(len(examples)), probs.sum(1))


def validation_scorer(task, config: dict, data_dir, tokenizer, precision: str):
    """A function of the policy giving its option scores on the validation prompts
    (``val/letter_accuracy``, ``val/correct_probability``), or None when the task is not
    multiple choice, ``train.eval_every`` is 0 or there is no validation split."""
    from pgrpo.io import read_jsonl, seeded_subset
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
