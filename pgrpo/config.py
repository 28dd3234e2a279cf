"""Load and validate the pipeline configuration against workflow/schemas/config.schema.yaml.

The schema is the single source of truth for keys, types and defaults: Snakemake validates
with it in ``workflow/rules/common.smk`` and every entry point validates again, so a module
run by hand gets the same one-line errors as the workflow.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from pathlib import Path

import jsonschema
import yaml

from pgrpo.io import PgrpoError
from pgrpo.methods import (
    check_methods,
    check_reference,
    method_train,
    named_methods,
    normalise_methods,
)
from pgrpo.tasks.registry import TASK_SECTIONS, extend_schema, task_spec, task_specs

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "config.schema.yaml"


def _schema() -> dict:
    with open(SCHEMA_PATH, encoding="utf-8") as f:
        return yaml.safe_load(f)


def model_dir_name(name: str) -> str:
    """A folder name for a model name or hub id (``Qwen/Qwen3-8B`` -> ``Qwen--Qwen3-8B``)."""
    return name.replace("/", "--")


def _fill_defaults(schema: dict, node: dict) -> None:
    """Insert the schema's defaults for missing keys, recursively (objects only). An object
    without declared properties (a task's overrides, ``train.methods``) gets its default's
    missing keys (a method dropped with ``null`` keeps its null, so that validating a
    validated config changes nothing)."""
    for key, sub in schema.get("properties", {}).items():
        if key not in node and "default" in sub:
            node[key] = copy.deepcopy(sub["default"])
        if isinstance(node.get(key), dict) and sub.get("type") == "object":
            if "properties" not in sub and isinstance(sub.get("default"), dict):
                for k, v in sub["default"].items():
                    node[key].setdefault(k, copy.deepcopy(v))
            _fill_defaults(sub, node[key])


def _yaml_scalar(value) -> str:
    """A value as the config file spells it: null, true, fsdp (not Python's None, True)."""
    return yaml.safe_dump(value, default_flow_style=True).removesuffix("\n...\n").strip()


def _error_line(error: jsonschema.ValidationError, source: str, within: str = "") -> str:
    key = (within + ".".join(str(p) for p in error.absolute_path)).rstrip(".") or "<top level>"
    if error.validator == "additionalProperties":
        allowed = set(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - allowed)
        prefix = "" if key == "<top level>" else f"{key}."
        names = ", ".join(f"{prefix}{u}" for u in unknown)
        return f"{source}: {names}: unknown key (allowed: {', '.join(sorted(allowed))})"
    if error.validator == "enum":
        allowed = ", ".join(map(_yaml_scalar, error.validator_value))
        return f"{source}: {key}: {error.instance!r} is not one of the allowed values ({allowed})"
    return f"{source}: {key}: {error.message}"


def validate_config(config: dict, source: str = "config") -> dict:
    """Fill defaults into ``config`` in place and validate it; PgrpoError names the bad key."""
    if not isinstance(config, dict):
        raise PgrpoError(f"{source}: the top level must be a mapping of keys to values")
    _refuse_non_finite(config, source)
    modules = config.get("task_modules") or []
    if not isinstance(modules, list) or not all(isinstance(m, str) for m in modules):
        raise PgrpoError(f"{source}: task_modules: {modules!r} is not a list of module names")
    try:
        specs = task_specs(modules)
    except PgrpoError as e:
        raise PgrpoError(f"{source}: {e}") from None
    schema = extend_schema(_schema(), specs)
    _fill_defaults(schema, config)
    if isinstance(config.get("train"), dict):
        normalise_methods(config["train"], source)
    validator = jsonschema.Draft7Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        raise PgrpoError(_error_line(errors[0], source))
    _check_methods(config, schema, source)
    for task, spec in specs.items():  # each task's overrides, as the sections they produce
        merged = task_config(config, task)
        errors = sorted(validator.iter_errors(merged), key=lambda e: list(e.absolute_path))
        if errors:
            raise PgrpoError(_error_line(errors[0], source, within=f"{task}."))
        if spec.check is not None:
            spec.check(config, source)
    if config["figures"]["task"] not in specs:
        raise PgrpoError(
            f"{source}: figures.task: {config['figures']['task']!r} is not one of "
            f"{', '.join(specs)}"
        )
    sort_keys(config)
    return config


def _check_methods(config: dict, schema: dict, source: str) -> None:
    """Each method of ``train.methods`` (:mod:`pgrpo.methods`), and the ``train`` section it
    trains with, validated as the section itself is; no task may choose its own methods."""
    check_methods(config, source)
    train = schema["properties"]["train"]
    validator = jsonschema.Draft7Validator(train)
    for name in named_methods(config["train"]):
        merged = method_train(config["train"], name)
        merged.pop("advantage", None)
        errors = sorted(validator.iter_errors(merged), key=lambda e: list(e.absolute_path))
        if errors:
            raise PgrpoError(_error_line(errors[0], source, within=f"train.methods.{name}."))
    check_reference(config, source)
    for task in config["tasks"]:
        own = config.get(task, {}).get("train", {})
        chosen = sorted({"methods", "reference_method"} & own.keys())
        if chosen:
            raise PgrpoError(
                f"{source}: {task}.train.{chosen[0]}: methods are the same for every task "
                f"(set train.{chosen[0]})"
            )


def _refuse_non_finite(node, source: str, key: str = "") -> None:
    """NaN and infinities pass JSON Schema's ``number`` (they are floats) and then fail deep
    inside torch; no key of the config takes them."""
    if isinstance(node, float) and not math.isfinite(node):
        raise PgrpoError(
            f"{source}: {key or '<top level>'}: {_yaml_scalar(node)} is not a finite number"
        )
    items = (
        node.items()
        if isinstance(node, dict)
        else enumerate(node)
        if isinstance(node, list)
        else ()
    )
    for k, value in items:
        _refuse_non_finite(value, source, f"{key}.{k}" if key else str(k))


def sort_keys(node) -> None:
    """Order every mapping's keys alphabetically, in place, lists kept in order. Snakemake
    compares a rule's params as written, key order included: without this, the same
    settings spread differently over config files (or merged by another tool) would look
    changed and re-run every job."""
    if isinstance(node, dict):
        items = sorted(node.items())
        node.clear()
        node.update(items)
        for value in node.values():
            sort_keys(value)
    elif isinstance(node, list):
        for value in node:
            sort_keys(value)


def load_config(path: str | Path, overrides: dict | None = None) -> dict:
    """Read a YAML config, apply ``overrides`` (nested dict), fill defaults, validate."""
    path = Path(path)
    config = _read_yaml(path)
    if overrides:
        deep_update(config, overrides)
    return validate_config(config, str(path))


def load_configs(paths: list[str | Path]) -> dict:
    """Config files merged in order, as Snakemake merges its configfile and each
    ``--configfile`` (e.g. config.yaml, then profiles/paper/paper.yaml), then validated."""
    config = _read_yaml(Path(paths[0]))
    for path in paths[1:]:
        deep_update(config, _read_yaml(Path(path)))
    return validate_config(config, ", ".join(str(p) for p in paths))


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise PgrpoError(f"{path}: config file not found")
    try:
        with open(path, encoding="utf-8") as f:
            config = yaml.safe_load(f)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise PgrpoError(f"{path}{where}: not valid YAML ({getattr(e, 'problem', e)})") from None
    if config is None:  # as Snakemake does: an empty file is a mistake, not "all defaults"
        raise PgrpoError(
            f"{path}: empty config file (expected keys at the top level, e.g. seed: 0)"
        )
    return config


def task_config(config: dict, task: str) -> dict:
    """A copy of a validated ``config`` as ``task`` sees it: the task's ``clustering``,
    ``train`` and ``evaluation`` overrides (e.g. ``personas.train.max_new_tokens``) merged
    over the top-level sections of the same names."""
    task_spec(task, config)  # a one-line error for an unknown task
    merged = copy.deepcopy(config)
    for section in TASK_SECTIONS:
        deep_update(merged[section], copy.deepcopy(config[task].get(section, {})))
    return merged


def training_seeds(config: dict) -> list[int]:
    """The training seeds of a validated ``config``: ``seeds`` as a list, or the count N of
    seeds ``seed``, ``seed`` + 1, ..., ``seed`` + N - 1."""
    seeds = config["seeds"]
    if isinstance(seeds, list):
        return list(seeds)
    return [config["seed"] + i for i in range(seeds)]


def load_task_config(path: str | Path, task: str | None) -> tuple[str, dict]:
    """(task, the config file ``path`` as it sees it: :func:`task_config`); ``task`` None is
    the config's first task, what an entry point's ``--task`` defaults to."""
    config = load_config(path)
    task = task_spec(task, config).name
    return task, task_config(config, task)


def deep_update(base: dict, update: dict) -> None:
    """Merge ``update`` into ``base`` in place, nested dicts key by key, as Snakemake merges
    a --configfile over the configfile (keys new to ``base`` are appended)."""
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            deep_update(base[key], value)
        else:
            base[key] = value


def config_hash(config: dict) -> str:
    """Short stable hash of a validated config (for run tags and manifests)."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def config_snapshot(config: dict, outputs: str) -> tuple[str, str]:
    """(text, path) of a validated config's snapshot: YAML with sorted keys, in
    ``<outputs>/configs/<first 16 hex digits of the text's sha256>.yaml``. Named by its
    content, so another config never overwrites the file a running job reads."""
    text = yaml.safe_dump(config, sort_keys=True)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return text, f"{outputs}/configs/{digest}.yaml"


def config_sources(loaded: list, overrides: list, command_line: bool) -> str:
    """The config's sources in the order Snakemake applies them, for error lines: the
    workflow's own configfile(s), then each ``--configfile`` (``overrides``), then
    ``--config`` (``command_line``). ``loaded`` is every file Snakemake read, in any order."""
    given = [str(p) for p in overrides]
    names = [str(p) for p in loaded if str(p) not in given] + given
    return ", ".join(names or ["config"]) + (" + --config" if command_line else "")
