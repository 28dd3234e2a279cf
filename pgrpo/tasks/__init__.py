"""Tasks: prompts and rewards, one class per task with the same interface (:class:`Task`).

:func:`load_task` builds a task from its prepared folder, so the trainer, the evaluation and
the report treat MovieLens, personas and reviews alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from pgrpo.io import PgrpoError


class Task:
    """The interface every task implements (MovieLensTask, PersonasTask, ReviewsTask)."""

    name = "task"
    # What to do about a prompt longer than the model's context (see fit_to_context).
    too_long_hint = "shorten the prompts"

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
                raise PgrpoError(
                    f"{self.name} task: reward {reward} for {describe(example)} (answer "
                    f"{completion[:40]!r}), expected a finite number"
                )
        return scored

    def shorten(self, example: dict) -> dict | None:
        """The same question with a shorter prompt, when the task can drop context and its
        config allows it (MovieLens: ``movielens.truncate_history``); None otherwise."""
        return None

    def group_of(self, example: dict) -> str | None:
        """The example's true preference group, when the task knows one (the persona, the
        rating group); evaluation reports the reward per group. None: no true group."""
        return None

    def options(self, example: dict) -> tuple[list[str], int] | None:
        """A multiple-choice example's options, as the policy would answer them, and the
        index of the right one; None for a free-text task. Evaluation then also scores the
        options directly and reports position-balanced means (:mod:`pgrpo.choices`)."""
        return None

    def judge_context(self, example: dict) -> tuple[str, str]:
        """(what a judge is told about the user, the request answered), for pairwise
        judging of two answers to ``example``."""
        raise NotImplementedError(f"the {self.name} task has no judge context")


class GroupInPrompt:
    """A task whose prompts tell the policy the user's preference group: the first user
    message starts with ``[Preference group k of K]`` (k counted from 1), the cluster (or
    given group) the user belongs to. Everything else is the wrapped task's. Methods with
    ``group_in_prompt`` train and are evaluated with it (cluster-conditioned GRPO: the
    policy personalises through its input, not through the advantage)."""

    def __init__(self, task, cluster_of_user: dict[int, int], num_clusters: int) -> None:
        self.task = task
        self.cluster_of_user = cluster_of_user
        self.num_clusters = num_clusters

    def __getattr__(self, name: str):
        return getattr(self.task, name)

    def messages(self, example: dict) -> list[dict]:
        messages = [dict(m) for m in self.task.messages(example)]
        first = next(i for i, m in enumerate(messages) if m["role"] == "user")
        k = self.cluster_of_user[example["user_id"]] + 1
        note = f"[Preference group {k} of {self.num_clusters}]"
        messages[first]["content"] = f"{note}\n{messages[first]['content']}"
        return messages


def describe(example: dict) -> str:
    """``user 12, position 5``: which example, for error lines."""
    where = f"user {example.get('user_id')}"
    if "position" in example:
        where += f", position {example['position']}"
    return where


def fit_to_context(
    task: Task,
    examples: list[dict],
    prompt_lengths: Callable[[list[list[dict]]], list[int]],
    context: int | None,
    answer_tokens: int,
    source: str,
) -> list[dict]:
    """``examples`` whose prompt plus ``answer_tokens`` fit the model's ``context``
    (``max_position_embeddings``); a longer one is shortened by :meth:`Task.shorten` until it
    fits, else a one-line error names the task, the example (from ``source``) and the lengths.

    ``prompt_lengths`` counts the tokens of conversations as the policy's prompts encode them;
    ``context`` None (the model does not say) checks nothing.
    """
    if context is None:
        return examples
    lengths = prompt_lengths([task.messages(e) for e in examples])
    fitted = list(examples)
    for i, n in enumerate(lengths):
        while n + answer_tokens > context:
            shorter = task.shorten(fitted[i])
            if shorter is None:
                raise PgrpoError(
                    f"{source}: {task.name} example of {describe(examples[i])}: a prompt of "
                    f"{n} tokens + {answer_tokens} answer tokens is more than the model's "
                    f"context of {context} tokens; {task.too_long_hint}"
                )
            fitted[i] = shorter
            (n,) = prompt_lengths([task.messages(shorter)])
    return fitted


def load_task(name: str, data_dir: str | Path, config: dict, reward_model=None) -> Task:
    """The task ``name`` (:mod:`pgrpo.tasks.registry`) over its prepared folder ``data_dir``;
    ``reward_model`` is the rating model file a task with a fitted reward needs."""
    from pgrpo.tasks.registry import task_spec

    return task_spec(name, config).load(data_dir, config, reward_model)
