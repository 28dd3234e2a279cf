"""The rating model behind the reviews reward: trained on the train split only, better than
chance on held-out real reviews, and degenerate answers score 0."""

from __future__ import annotations

import numpy as np
import pytest

from pgrpo.data.reviews import default_reviews_file, load_clothing_reviews, split_reviews
from pgrpo.tasks.reviews import RatingModel, ReviewsTask

MERGE = {1: 0, 2: 0, 3: 1, 4: 2, 5: 2}  # low / middle / high


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    records, _ = load_clothing_reviews(default_reviews_file())
    rng = np.random.default_rng(0)
    sample = [records[i] for i in rng.choice(len(records), size=900, replace=False)]
    for r in sample:
        r["group"] = MERGE[r["rating"]]
    split = split_reviews(sample, 0.25, seed=0)
    model = RatingModel.fit(split["train"], [r["group"] for r in split["train"]])
    path = tmp_path_factory.mktemp("rating") / "rating_model.npz"
    model.save(path)
    return split, RatingModel.load(path)


@pytest.mark.slow
def test_trained_on_the_train_split_only(trained):
    split, model = trained
    assert set(model.trained_on) == {str(r["review_id"]) for r in split["train"]}
    assert not set(model.trained_on) & {str(r["review_id"]) for r in split["test"]}


@pytest.mark.slow
def test_held_out_balanced_accuracy_beats_chance(trained):
    split, model = trained
    scores = model.accuracy(split["test"], [r["group"] for r in split["test"]])
    assert scores["balanced_accuracy"] > 1 / 3 + 0.15  # 3 groups


@pytest.mark.slow
def test_reward_follows_the_target_rating(trained):
    _, model = trained
    task = ReviewsTask(model)
    item = {"item": "Dresses (Dresses, General)", "title": ""}
    happy = "I love this dress, the fit is perfect and the fabric is soft. Highly recommend!"
    sad = "Terrible quality, the seams ripped after one wear and it looks cheap. Returned it."

    def reward(text, rating, group):
        return task.score(text, {**item, "rating": rating, "group": group})[0]

    # The reward prefers the review that fits the target rating, by a wide margin.
    assert reward(happy, 5, 2) > 0.5 and reward(sad, 1, 0) > 0.5
    assert reward(happy, 5, 2) > reward(happy, 1, 0) + 0.2
    assert reward(sad, 1, 0) > reward(sad, 5, 2) + 0.2
    prompt = task.messages({**item, "rating": 2})[0]["content"]
    assert "rated it 2 out of 5" in prompt and "Dresses (Dresses, General)" in prompt


@pytest.mark.parametrize(
    "answer", ["", "great great great great great great great", "I love it. " * 80]
)
@pytest.mark.slow
def test_degenerate_answers_score_zero(trained, answer):
    _, model = trained
    assert ReviewsTask(model).score(answer, {"group": 2}) == (0.0, False)
