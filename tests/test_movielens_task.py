"""Tests for pgrpo.tasks.movielens: the prompt, the answer parser and the reward."""

from __future__ import annotations

import pandas as pd
import pytest

from pgrpo.data.movielens import build_examples, default_raw_dir, load_movielens
from pgrpo.io import PgrpoError
from pgrpo.tasks.movielens import LETTERS, MovieLensTask, parse_answer

ITEMS = {
    1: {"title": "Star Wars", "year": 1977, "genres": ["Action", "Adventure", "Sci-Fi"]},
    2: {"title": "Air Bud", "year": 1997, "genres": ["Children's", "Comedy"]},
    3: {"title": "Fargo", "year": 1996, "genres": ["Crime", "Drama", "Thriller"]},
    4: {"title": "Misérables, Les", "year": 1995, "genres": ["Drama", "Musical"]},
    5: {"title": "unknown", "year": None, "genres": []},
    6: {"title": "Heat", "year": 1995, "genres": ["Action"]},
}
EXAMPLE = {
    "user_id": 9,
    "position": 3,
    "history": [3, 1, 4],
    "target": 6,
    "candidates": [2, 6, 5, 1],
    "answer": "B",
}


def test_prompt_exact():
    assert MovieLensTask(ITEMS).messages(EXAMPLE) == [
        {
            "role": "user",
            "content": "A user recently watched these movies, oldest first:\n"
            "1. Fargo (1996) [Crime, Drama, Thriller]\n"
            "2. Star Wars (1977) [Action, Adventure, Sci-Fi]\n"
            "3. Misérables, Les (1995) [Drama, Musical]\n"
            "Which movie will the user watch next?\n"
            "A. Air Bud (1997) [Children's, Comedy]\n"
            "B. Heat (1995) [Action]\n"
            "C. unknown\n"
            "D. Star Wars (1977) [Action, Adventure, Sci-Fi]\n"
            "Answer with the letter of one option.",
        }
    ]


def test_prompt_unknown_item():
    with pytest.raises(PgrpoError, match="item id 42 is not in the item table"):
        MovieLensTask(ITEMS).messages({**EXAMPLE, "history": [42]})


def test_prompt_from_ml100k_examples():
    ml = load_movielens("ml-100k", default_raw_dir("ml-100k"))
    task = MovieLensTask.from_items_frame(ml.items)
    assert task.items[1] == {
        "title": "Toy Story",
        "year": 1995,
        "genres": ["Animation", "Children's", "Comedy"],
    }
    assert task.items[267]["year"] is None
    titles = ml.items.set_index("item_id").title
    example = build_examples(ml, 5, 4, 1, 10, seed=0)["test"][0]
    lines = task.prompt(example).split("\n")
    assert len(lines) == 1 + 5 + 1 + 4 + 1
    for i, item_id in enumerate(example["history"]):
        assert lines[1 + i].startswith(f"{i + 1}. {titles[item_id]} (")
    for i, item_id in enumerate(example["candidates"]):
        assert lines[7 + i].startswith(f"{LETTERS[i]}. {titles[item_id]} (")
    target_line = lines[7 + LETTERS.index(example["answer"])]
    assert target_line[3:].startswith(titles[example["target"]])


def test_from_items_frame_handles_missing_year():
    df = pd.DataFrame(
        {
            "item_id": [5, 6],
            "title": ["unknown", "Heat"],
            "year": pd.array([None, 1995], dtype="Int64"),
            "genres": [[], ["Action"]],
        }
    )
    task = MovieLensTask.from_items_frame(df)
    assert task.items == {5: ITEMS[5], 6: ITEMS[6]}
    assert task.text(5) == "unknown" and task.text(6) == "Heat (1995) [Action]"


PARSES = [
    ("D", 4, "D"),
    ("B.", 4, "B"),
    (" C\n", 4, "C"),
    ("A. Air Bud (1", 4, "A"),
    ("(C)", 4, "C"),
    ("C) Fargo", 4, "C"),
    ("**B**", 4, "B"),
    ("B: Heat (1995)", 4, "B"),
    ("B, because the user likes action", 4, "B"),
    ("The correct option is D.", 4, "D"),
    ("Answer: B", 4, "B"),
    ("answer: B", 4, "B"),
    ("The answer is (C).", 4, "C"),
    ("I think the answer is A.", 4, "A"),
    ("A is the answer", 4, "A"),
    ("Option C: Fargo (1996)", 4, "C"),
    ("The user will watch Air Bud", 4, None),
    ("A user who likes Star Wars would watch Heat", 4, None),
    ("Pick from option D to A", 4, None),
    ("B or C", 4, None),
    ("The answer is A or B", 4, None),
    ("Answer: A. Option C is also good", 4, None),
    ("E", 4, None),
    ("The answer is E", 4, None),
    ("E", 5, "E"),
    ("T", 20, "T"),
    ("a", 4, None),
    ("b", 4, None),
    ("Answer: b", 4, None),
    ("Air Bud", 4, None),
    ("Brazil", 4, None),
    ("", 4, None),
    ("I'm not sure", 12, None),
    ("I", 12, "I"),
    ("Answer with the letter of one option.", 4, None),
]


@pytest.mark.parametrize(("text", "num_candidates", "expected"), PARSES)
def test_parse_answer(text, num_candidates, expected):
    assert parse_answer(text, num_candidates) == expected


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        ("B", (1.0, True)),
        ("B. Heat (1995) [Action]", (1.0, True)),
        ("The answer is B", (1.0, True)),
        ("A", (0.0, True)),
        ("D. Star Wars", (0.0, True)),
        ("Heat", (0.0, False)),
        ("E", (0.0, False)),
        ("b", (0.0, False)),
    ],
)
def test_score(completion, expected):
    assert MovieLensTask(ITEMS).score(completion, EXAMPLE) == expected


def test_score_uses_example_answer_and_candidate_count():
    task = MovieLensTask(ITEMS)
    assert task.score("C", {**EXAMPLE, "answer": "C"}) == (1.0, True)
    five = {**EXAMPLE, "candidates": [2, 6, 5, 1, 3], "answer": "E"}
    assert task.score("E", five) == (1.0, True)
    assert task.score("E", EXAMPLE) == (0.0, False)
    assert MovieLensTask.name == "movielens"
