"""Named training methods: what ``train.methods`` holds, and how a method's name reads.

A method is a name and its settings: the advantage it trains with and any ``train`` keys it
sets differently from the section (``config.yaml``)::

    train:
      methods:
        grpo: {advantage: group}                 # (R - group mean) / group std
        pgrpo: {advantage: cluster}              # the cluster's running statistics
        dr_grpo: {advantage: group, grpo_scale: none, loss_aggregation: dr_grpo}
        batch_grpo: {advantage: batch}           # (R - batch mean) / batch std
      reference_method: grpo                     # tables: every other method minus this one

Each method is its own run, adapter, MLflow run and table row, and every method but the
reference gets a paired difference row ``<method>-<reference>``. A ``--configfile``'s mapping
merges over config.yaml's (Snakemake merges config files: its ``grpo`` and ``pgrpo`` stay,
``name: null`` drops one); a mapping in the file an entry point reads is taken as written; a
list of built-in names (the form before named methods, ``methods: [grpo, pgrpo]``) selects
exactly those.
"""

from __future__ import annotations

import re

from pgrpo.io import PgrpoError

# The advantages a method trains with (pgrpo.trainer.compute_advantages).
ADVANTAGES = ("group", "batch", "cluster")
# Methods a list may name, with their settings.
BUILTIN = {
    "grpo": {"advantage": "group"},
    "pgrpo": {"advantage": "cluster"},
    "dr_grpo": {"advantage": "group", "grpo_scale": "none", "loss_aggregation": "dr_grpo"},
    "batch_grpo": {"advantage": "batch"},
    "maxmin_grpo": {"advantage": "group", "group_weighting": "softmin"},
    "prompted_grpo": {"advantage": "group", "group_in_prompt": True},
    "gdpo": {"objective": "dpo", "group_in_prompt": True},
}
LABELS = {"grpo": "GRPO", "pgrpo": "P-GRPO", "dr_grpo": "Dr. GRPO",
          "batch_grpo": "GRPO (batch-normalised)", "maxmin_grpo": "MaxMin GRPO",
          "prompted_grpo": "GRPO (group in prompt)", "gdpo": "GDPO"}  # fmt: skip
# The rows of a table that are not methods, with their labels: the base model, the clusters'
# and the rating model's rows, the MovieLens reference rows.
ROW_LABELS = {"base": "Base model", "clusters": "(clusters)", "rating_model": "(rating model)",
              "one_letter": "Always A", "recent": "Newest release", "genre": "Genre overlap",
              "popularity": "Most popular"}  # fmt: skip
# Names a method cannot take: those rows, and the reference rows' key.
RESERVED = {*ROW_LABELS, "heuristics"}
NAME = re.compile(r"[a-z][a-z0-9_]*\Z")
# Keys of the train section a method cannot set: the methods themselves, and what the
# launcher decides for every run alike.
NOT_PER_METHOD = {"methods", "reference_method", "num_processes", "threads"}


def named_methods(train: dict) -> dict:
    """The methods a (validated) train section trains, name -> settings: its ``methods``
    without the entries dropped with ``null``."""
    return {k: v for k, v in train["methods"].items() if v is not None}


def normalise_methods(train: dict, source: str) -> None:
    """``train.methods`` in place as a mapping of name -> settings (or null: dropped, kept
    so that the defaults do not fill it in again); a list of built-in names expands to their
    settings; a one-line error for a list name that is not built in."""
    methods = train.get("methods")
    if isinstance(methods, list):
        unknown = [m for m in methods if m not in BUILTIN]
        if unknown:
            raise PgrpoError(
                f"{source}: train.methods: {unknown[0]!r} is not a built-in method "
                f"({', '.join(BUILTIN)}); write train.methods as a mapping of names to "
                f"settings, e.g. {{{unknown[0]}: {{advantage: group}}}}"
            )
        # The defaults' other methods stay out: null, not absent.
        train["methods"] = {m: None for m in BUILTIN} | {m: dict(BUILTIN[m]) for m in methods}


def check_methods(config: dict, source: str) -> None:
    """Names, reference and per-method keys of a validated config's ``train.methods``; the
    values a method sets are validated by :func:`pgrpo.config.validate_config` as the
    ``train`` section they produce (:func:`method_train`)."""
    train = config["train"]
    methods = named_methods(train)
    if not methods:
        raise PgrpoError(f"{source}: train.methods: no method left to train")
    for name, settings in methods.items():
        where = f"{source}: train.methods.{name}"
        if not NAME.match(name) or name in RESERVED:
            why = "is reserved" if name in RESERVED else "must be lower case letters, digits, _"
            raise PgrpoError(f"{where}: the name {why}")
        if "advantage" not in settings and settings.get("objective", "grpo") != "dpo":
            raise PgrpoError(f"{where}: no advantage (one of {', '.join(ADVANTAGES)})")
        fixed = sorted(NOT_PER_METHOD & settings.keys())
        if fixed:
            key = fixed[0]
            raise PgrpoError(f"{where}.{key}: the same for every method (set train.{key})")


def check_reference(config: dict, source: str) -> None:
    """The reference method of the difference rows is one of the methods trained."""
    train = config["train"]
    methods = named_methods(train)
    if train["reference_method"] not in methods:
        raise PgrpoError(
            f"{source}: train.reference_method: {train['reference_method']!r} is not one of "
            f"train.methods ({', '.join(methods)})"
        )


def method_train(train: dict, method: str) -> dict:
    """The ``train`` section as ``method`` trains: the section without the method table,
    with the method's own keys over it (``advantage`` included)."""
    methods = named_methods(train)
    if method not in methods:
        raise PgrpoError(f"--method: {method!r} is not one of train.methods ({', '.join(methods)})")
    out = {k: v for k, v in train.items() if k not in ("methods", "reference_method")}
    return out | methods[method]


def personalised(config: dict) -> list[str]:
    """The methods whose advantage uses the user's cluster (figure 4 ablates their clusters)."""
    methods = named_methods(config["train"])
    return [m for m, s in methods.items() if s.get("advantage") == "cluster"]


def difference(method: str, reference: str) -> str:
    """The name of the paired difference row ``method`` minus ``reference``."""
    return f"{method}-{reference}"


def is_difference(name: str) -> bool:
    """Whether a table row's method is a paired difference (method names have no ``-``)."""
    return "-" in name


def method_of(name: str) -> str:
    """The method a table row belongs to: itself, or a difference row's first method."""
    return name.split("-", 1)[0]


def label(name: str, labels: dict[str, str] | None = None) -> str:
    """How a table or a figure names a method, a difference row or another row."""
    labels = {**LABELS, **(labels or {})}
    if is_difference(name):
        return " − ".join(labels.get(part, part) for part in name.split("-", 1))
    return labels.get(name, name)
