"""Tests for pgrpo.choices: option scoring that a content-blind policy cannot pass."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pgrpo.choices import (
    choice_metrics,
    option_credit,
    option_log_probs,
    option_token_ids,
    stratified_mean,
)
from pgrpo.evaluate import reward_report
from pgrpo.io import PgrpoError
from pgrpo.models import load_tokenizer
from pgrpo.tasks.movielens import LETTERS, MovieLensTask

# Right positions deliberately unbalanced: a plain mean would reward always answering "A".
RIGHT = np.array([0] * 10 + [1] * 3 + [2] * 6 + [3] * 1)
CLUSTERS = np.array([0, 1] * 10)


@pytest.mark.parametrize("letter", range(4))
def test_a_constant_letter_scores_exactly_one_in_k_whatever_the_positions(letter):
    probs = np.full((len(RIGHT), 4), 1e-3)
    probs[:, letter] = 1.0
    m = choice_metrics(probs, RIGHT, CLUSTERS)
    assert m["letter_accuracy"]["all"] == pytest.approx(0.25, abs=1e-12)
    assert m["per_position"][str(letter)]["chosen"] == 1.0
    assert np.mean(RIGHT == letter) != pytest.approx(0.25)  # the plain mean would not be 1/k


def test_any_content_blind_distribution_gets_one_in_k_probability():
    rng = np.random.default_rng(0)
    same = rng.dirichlet(np.ones(4))  # the same distribution for every prompt
    m = choice_metrics(np.tile(same, (len(RIGHT), 1)), RIGHT, CLUSTERS)
    assert m["correct_probability"]["all"] == pytest.approx(0.25, abs=1e-12)
    assert m["letter_accuracy"]["all"] == pytest.approx(0.25, abs=1e-12)


def test_a_policy_that_reads_the_content_scores_above_chance_per_cluster():
    probs = np.full((len(RIGHT), 4), 0.1)
    probs[np.arange(len(RIGHT)), RIGHT] = 0.7
    m = choice_metrics(probs, RIGHT, CLUSTERS, mass=np.full(len(RIGHT), 0.5))
    assert m["letter_accuracy"]["all"] == 1.0
    assert m["correct_probability"]["all"] == pytest.approx(0.7)
    assert m["letter_mass"]["all"] == pytest.approx(0.5)
    assert set(m["letter_accuracy"]["per_cluster"]) == {"0", "1"}
    assert m["per_position"]["3"] == {"n": 1, "accuracy": 1.0, "chosen": 0.05}


def test_ties_share_the_credit():
    credit, correct, chosen = option_credit([[1, 1, 0.5], [2, 1, 1]], np.array([1, 2]))
    assert credit.tolist() == [0.5, 0.0] and chosen[0].tolist() == [0.5, 0.5, 0.0]
    assert correct.tolist() == pytest.approx([0.4, 0.25])


def test_stratified_mean_and_bad_input():
    assert stratified_mean([1, 1, 1, 0], [0, 0, 0, 1]) == 0.5
    with pytest.raises(PgrpoError, match="right answers"):
        choice_metrics(np.ones((3, 4)), np.array([0, 1, 4]), np.zeros(3))


def test_the_movielens_reward_report_is_position_balanced():
    always_a = (RIGHT == 0).astype(float)  # the reward of always answering "A"
    report = reward_report(always_a, np.ones(len(RIGHT)), CLUSTERS, 2, strata=RIGHT)
    assert report["reward"] == pytest.approx(0.25)
    for c in (0, 1):  # over the positions present in the cluster (3 in cluster 0)
        present = len(set(RIGHT[CLUSTERS == c]))
        assert report["per_cluster"][str(c)]["reward"] == pytest.approx(1 / present)


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    """SmolLM2's tokenizer, as the tiny model of the tests carries it (no model hub)."""
    from pgrpo.models import materialize_model

    folder = tmp_path_factory.mktemp("model") / "tiny"
    materialize_model("tiny", folder)
    return load_tokenizer(folder)


def test_letters_are_single_answer_tokens_and_a_word_is_refused(tokenizer):
    ids = option_token_ids(tokenizer, list(LETTERS))
    assert len(set(ids)) == 20
    assert tokenizer.convert_ids_to_tokens(ids[:3]) == ["A", "B", "C"]
    with pytest.raises(PgrpoError, match="option 'Toy Story': .* tokens"):
        option_token_ids(tokenizer, ["A", "Toy Story"])


def test_option_log_probs_read_the_full_vocabulary_distribution():
    logits = torch.randn(3, 50, dtype=torch.bfloat16)
    ids = [[1, 2], [7, 3], [0, 49]]
    got = option_log_probs(logits, ids)
    full = torch.log_softmax(logits.float(), -1).double()
    eps = torch.finfo(torch.float32).eps * 8  # float32 log-softmax of values near 5
    assert np.allclose(got, [[full[i, j].item() for j in row] for i, row in enumerate(ids)],
                       atol=eps, rtol=0)  # fmt: skip


def test_the_movielens_task_names_its_options():
    task = MovieLensTask({})
    options, right = task.options({"candidates": [3, 4, 5], "answer": "C"})
    assert options == ["A", "B", "C"] and right == 2
