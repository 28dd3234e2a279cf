"""Prompts against the model's context: a prompt whose tokens plus the answer budget do not fit
is one line naming the task, the example and the lengths, before training or evaluation
starts; with ``movielens.truncate_history`` the oldest watched titles are dropped instead."""

from __future__ import annotations

import json
import re

import pytest
import yaml
from entrypoints import one_error_line, run_entry

from pgrpo.io import PgrpoError
from pgrpo.rollout import encode_prompts, prompt_lengths
from pgrpo.tasks import fit_to_context
from pgrpo.tasks.movielens import MovieLensTask

ITEMS = {i: {"item_id": i, "title": f"Movie number {i}", "year": 1990 + i, "genres": ["Drama"]}
         for i in range(1, 10)}  # fmt: skip
EXAMPLE = {"user_id": 1, "position": 5, "history": [1, 2, 3, 4, 5], "target": 6,
           "candidates": [6, 7, 8, 9], "answer": "A"}  # fmt: skip


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    """SmolLM2's tokenizer and chat template (those of the tiny test model)."""
    from pgrpo.models import load_tokenizer, materialize_model

    folder = tmp_path_factory.mktemp("model") / "tiny"
    materialize_model("tiny", folder)
    return load_tokenizer(folder)


def fit(tokenizer, items, examples, context, truncate=False, answer=8):
    task = MovieLensTask(items, truncate_history=truncate)
    counts = lambda conversations: prompt_lengths(tokenizer, conversations)  # noqa: E731
    return task, fit_to_context(task, examples, counts, context, answer, "data/train.jsonl")


def test_prompt_lengths_are_the_encoded_prompts_lengths(tokenizer):
    task = MovieLensTask(ITEMS)
    shorter = {**EXAMPLE, "history": [5]}
    conversations = [task.messages(EXAMPLE), task.messages(shorter)]
    batch = encode_prompts(tokenizer, conversations)
    assert prompt_lengths(tokenizer, conversations) == batch.mask.sum(-1).tolist()


def test_prompts_that_fit_are_kept_as_they_are(tokenizer):
    examples = [EXAMPLE, {**EXAMPLE, "position": 6}]
    assert fit(tokenizer, ITEMS, examples, context=2048)[1] == examples


def test_a_prompt_longer_than_the_context_is_one_line_naming_it(tokenizer):
    (n,) = prompt_lengths(tokenizer, [MovieLensTask(ITEMS).messages(EXAMPLE)])
    with pytest.raises(PgrpoError) as info:
        fit(tokenizer, ITEMS, [EXAMPLE, {**EXAMPLE, "position": 6}], context=n + 7)
    assert str(info.value) == (
        f"data/train.jsonl: movielens example of user 1, position 5: a prompt of {n} tokens + "
        f"8 answer tokens is more than the model's context of {n + 7} tokens; lower "
        "movielens.history_length or set movielens.truncate_history: true"
    )
    fit(tokenizer, ITEMS, [EXAMPLE], context=n + 8)  # exactly full: fits


def test_truncate_history_drops_the_oldest_titles_until_the_prompt_fits(tokenizer):
    task = MovieLensTask(ITEMS)
    lengths = prompt_lengths(tokenizer, [
        task.messages({**EXAMPLE, "history": EXAMPLE["history"][k:]}) for k in range(5)
    ])  # fmt: skip
    assert lengths == sorted(lengths, reverse=True) and len(set(lengths)) == 5
    context = lengths[2] + 8  # room for the 3 most recent titles and the answer
    _, (fitted,) = fit(tokenizer, ITEMS, [EXAMPLE], context, truncate=True)
    assert fitted["history"] == [3, 4, 5]
    assert {k: v for k, v in fitted.items() if k != "history"} == {
        k: v for k, v in EXAMPLE.items() if k != "history"
    }
    with pytest.raises(PgrpoError, match=r"a prompt of \d+ tokens \+ 8 answer tokens"):
        fit(tokenizer, ITEMS, [EXAMPLE], lengths[4] + 7, truncate=True)  # one title too many


def test_no_context_in_the_model_config_checks_nothing(tokenizer):
    assert fit(tokenizer, ITEMS, [EXAMPLE], context=None)[1] == [EXAMPLE]


@pytest.mark.slow
@pytest.mark.parametrize("entry", ["pgrpo.train", "pgrpo.evaluate"])
def test_titles_too_long_for_the_model_stop_training_and_evaluation(tmp_path, entry):
    """Titles of 10,000 characters: a prompt far beyond the tiny model's 2048 positions."""
    from pgrpo.models import materialize_model

    materialize_model("tiny", tmp_path / "model")
    data = tmp_path / "data"
    data.mkdir()
    long = {**ITEMS, 3: {**ITEMS[3], "title": "Long " * 2000}}
    (data / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in long.values()))
    for split in ("train", "test"):
        (data / f"{split}.jsonl").write_text(json.dumps(EXAMPLE) + "\n")
    (tmp_path / "clusters.json").write_text(json.dumps({"num_clusters": 1, "assignment": {"1": 0}}))
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"seed": 0}))
    out = tmp_path / "out"
    args = ["--config", str(tmp_path / "c.yaml"), "--model", str(tmp_path / "model"), "--data",
            str(data), "--clusters", str(tmp_path / "clusters.json"), "--no-progress"]  # fmt: skip
    if entry == "pgrpo.train":
        args += ["--method", "pgrpo", "--out", str(out)]
        split, budget = "train", 4  # train.max_new_tokens default
    else:
        args += ["--out", str(out / "eval.json")]
        split, budget = "test", 4  # evaluation.max_new_tokens default
    line = one_error_line(run_entry(entry, *args, cwd=tmp_path))
    assert re.fullmatch(
        rf"error: {data / split}\.jsonl: movielens example of user 1, position 5: a prompt of "
        rf"\d{{4,}} tokens \+ {budget} answer tokens is more than the model's context of 2048 "
        r"tokens; lower movielens.history_length or set movielens.truncate_history: true",
        line,
    ), line
    assert not out.exists()
