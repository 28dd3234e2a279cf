"""The persona generator: shares, seeds, profile noise, and clear errors on bad definitions."""

from __future__ import annotations

import copy
from collections import Counter

import pytest

from pgrpo.config import validate_config
from pgrpo.data.personas import REQUESTS, allocate, generate_users, personas_from_config
from pgrpo.io import PgrpoError
from pgrpo.tasks.persona_scorers import genre_score, style_score


def personas_config(**changes) -> dict:
    return validate_config({"personas": changes})["personas"]


def test_counts_follow_the_shares_exactly():
    cfg = personas_config(num_users=350)
    counts = Counter(u["persona"] for u in generate_users(cfg, seed=0))
    # 350 x shares = 140, 52.5, 42, 35, 31.5, 28, 21: the one user left over goes to the
    # first of the two largest remainders.
    assert [counts[d["name"]] for d in cfg["definitions"]] == [140, 53, 42, 35, 31, 28, 21]
    assert counts["formal-classical"] == max(counts.values())  # one majority


def test_changing_the_shares_changes_the_counts():
    cfg = personas_config(num_users=100)
    cfg["definitions"][0]["share"], cfg["definitions"][1]["share"] = 0.15, 0.4
    counts = Counter(u["persona"] for u in generate_users(cfg, seed=0))
    assert counts["casual-rock"] == 40 and counts["formal-classical"] == 15


def test_largest_remainder_allocation():
    assert allocate(10, [0.55, 0.25, 0.2]) == [
        6,
        2,
        2,
    ]  # remainders .5, .5, 0: order breaks the tie
    assert allocate(7, [1 / 3, 1 / 3, 1 / 3]) == [3, 2, 2]
    assert sum(allocate(351, [0.4, 0.15, 0.12, 0.1, 0.09, 0.08, 0.06])) == 351


def test_seed_decides_everything():
    cfg = personas_config(num_users=50)
    a, b, c = generate_users(cfg, 1), generate_users(cfg, 1), generate_users(cfg, 2)
    assert a == b
    assert a != c


def test_profiles_show_the_persona_except_the_noisy_messages():
    cfg = personas_config(num_users=300, profile_noise=0.2)
    users = generate_users(cfg, seed=0)
    noisy = [n for u in users for n in u["noisy"]]
    assert 0.15 < sum(noisy) / len(noisy) < 0.25
    clean, other = [], []
    for user in users:
        for message, is_noise in zip(user["profile"], user["noisy"], strict=True):
            score = genre_score(message, user["genre"]) + style_score(message, user["style"])
            (other if is_noise else clean).append(score)
    assert min(clean) > 0 and sum(clean) / len(clean) > 1.0  # style + genre, of 2
    assert sum(other) / len(other) < 0.3
    no_noise = generate_users(personas_config(num_users=50, profile_noise=0.0), seed=0)
    assert not any(n for u in no_noise for n in u["noisy"])


def test_each_user_gets_distinct_requests():
    users = generate_users(personas_config(num_users=20, requests_per_user=5), seed=0)
    for user in users:
        assert len(set(user["requests"])) == 5 and set(user["requests"]) <= set(REQUESTS)
    assert len({tuple(u["requests"]) for u in users}) > 1


@pytest.mark.parametrize(
    "change,message",
    [
        ({"style": "shouty"}, r"personas.definitions\[0\].style: 'shouty' is not one of"),
        ({"genre": "polka"}, r"personas.definitions\[0\].genre: 'polka' is not one of"),
        ({"name": "casual-rock"}, r"personas.definitions\[1\].name: 'casual-rock' is used twice"),
        ({"share": 0.9}, r"personas.definitions: shares sum to 1.5, not 1"),
    ],
)
def test_bad_definitions_are_named(change, message):
    cfg = copy.deepcopy(personas_config())
    cfg["definitions"][0].update(change)
    with pytest.raises(PgrpoError, match=message):
        personas_from_config(cfg)


def test_a_definition_missing_a_field_is_named():
    definitions = copy.deepcopy(personas_config()["definitions"])
    del definitions[2]["genre"]
    with pytest.raises(PgrpoError, match="personas.definitions.2: 'genre' is a required"):
        validate_config({"personas": {"definitions": definitions}})


def test_task_prompts_show_the_profile_not_the_persona():
    from pgrpo.tasks.personas import PersonasTask, split_examples

    users = generate_users(personas_config(num_users=30, requests_per_user=4), seed=0)
    splits = split_examples(users)
    assert len(splits["train"]) == 30 * 3 and len(splits["test"]) == 30
    test_requests = {(e["user_id"], e["request"]) for e in splits["test"]}
    assert not test_requests & {(e["user_id"], e["request"]) for e in splits["train"]}
    task = PersonasTask()
    example = splits["test"][0]
    prompt = task.messages(example)[0]["content"]
    assert example["request"] in prompt and all(m in prompt for m in example["profile"])
    assert example["persona"] not in prompt
    good = "I would recommend a Mozart symphony; you may also consider Bach's cello suites."
    formal = {**example, "style": "formal", "genre": "classical"}
    assert task.score(good, formal)[0] > 0.6
    assert task.score("", formal) == (0.0, False)


def test_echoing_the_profile_or_request_scores_zero():
    from pgrpo.tasks.personas import PersonasTask

    example = {
        "persona": "formal-classical", "style": "formal", "genre": "classical",
        "profile": ["I would recommend Vivaldi; I found it particularly refined.",
                    "Kindly suggest further works in the manner of Bach."],
        "request": "Recommend music for a Sunday morning.",
    }  # fmt: skip
    task = PersonasTask()
    own = "I would kindly recommend a Mozart symphony; consider Bach's cello suites as well."
    assert task.score(own, example)[0] > 0.5
    for echo in ("I would recommend Vivaldi; I found it particularly refined.",
                 "Sure. Kindly suggest further works in the manner of Mozart, please.",
                 "Recommend music for a Sunday morning: Mozart's symphony."):  # fmt: skip
        assert task.score(echo, example) == (0.0, False), echo
