"""Tasks: prompts and rewards, one class per task with the same interface (:class:`Task`).

:func:`load_task` builds a task from its prepared folder, so the trainer, the evaluation and
the report treat MovieLens, personas and reviews alike.
"""

from __future__ import annotations

import math
from pathlib import Path

from pgrpo.io import PgrpoError, read_jsonl


class Task:
    """The interface every task implements (MovieLensTask, PersonasTask, ReviewsTask)."""

    name = "task"

    def messages(self, example: dict) -> list[dict]:
        """Chat messages of the prompt for ``example``."""
        raise NotImplementedError

    def score(self, completion: str, example: dict) -> tuple[float, bool]:
        """``(reward in [0, 1], whether the answer was usable)`` for one completion."""
        raise NotImplementedError

    def scores(self, completions: list[str], examples: list[dict]) -> list[tuple[float, bool]]:
        """:meth:`score` of each (completion, example) pair; tasks with a batched reward model
        override this."""
        return [self.score(c, e) for c, e in zip(completions, examples, strict=True)]

    def checked_scores(
        self, completions: list[str], examples: list[dict]
    ) -> list[tuple[float, bool]]:
        """:meth:`scores`, each reward checked: a NaN or infinite one stops with a one-line
        error naming the task, the example and the value, before it can reach an advantage or
        the running cluster statistics (one NaN would poison a cluster's mean for good)."""
        scored = self.scores(completions, examples)
        for (reward, _), example, completion in zip(scored, examples, completions, strict=True):
            if not math.isfinite(reward):
                where = f"user {example.get('user_id')}"
                if "position" in example:
                    where += f", position {example['position']}"
                raise PgrpoError(
                    f"{self.name} task: reward {reward} for {where} (answer "
                    f"{completion[:40]!r}), expected a finite number"
                )
        return scored

    def group_of(self, example: dict) -> str | None:
        """The example's true preference group, when the task knows one (the persona, the
        rating group); evaluation reports the reward per group. None: no true group."""
        return None

    def judge_context(self, example: dict) -> tuple[str, str]:
        """(what a judge is told about the user, the request answered), for pairwise
        judging of two answers to ``example``."""
        raise NotImplementedError(f"the {self.name} task has no judge context")


def load_task(name: str, data_dir: str | Path, config: dict, reward_model=None) -> Task:
    """The task ``name`` over its prepared folder ``data_dir``; ``reward_model`` is the rating
    model file the reviews task needs (the ``train_rating_model`` rule's output)."""
    data_dir = Path(data_dir)
    if name == "movielens":
        from pgrpo.tasks.movielens import MovieLensTask

        items = {row["item_id"]: row for row in read_jsonl(data_dir / "items.jsonl")}
        return MovieLensTask(items)
    if name == "personas":
        from pgrpo.tasks.personas import PersonasTask

        return PersonasTask(config["personas"]["max_words"])
    if name == "reviews":
        from pgrpo.tasks.reviews import RatingModel, ReviewsTask

        if reward_model is None:
            raise PgrpoError("reviews task: give the rating model file (--reward-model)")
        return ReviewsTask(RatingModel.load(reward_model), config["reviews"]["max_words"])
    raise PgrpoError(f"task: {name!r} is not one of movielens, personas, reviews")
