"""Tests for pgrpo.config: the schema documents every key, and bad configs give one-line errors."""

from __future__ import annotations

import copy
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from entrypoints import cli_env

from pgrpo.config import SCHEMA_PATH, load_config, task_config, validate_config
from pgrpo.io import PgrpoError

REPO = Path(__file__).resolve().parents[1]


def schema() -> dict:
    return yaml.safe_load(SCHEMA_PATH.read_text(encoding="utf-8"))


def schema_properties(node: dict, prefix: str = ""):
    """(dotted key, property schema) for every property, recursively."""
    for key, sub in node.get("properties", {}).items():
        dotted = f"{prefix}{key}"
        yield dotted, sub
        yield from schema_properties(sub, dotted + ".")


def schema_defaults(node: dict) -> dict:
    """The config an empty file should become: objects recurse, leaves take their default."""
    out = {}
    for key, sub in node["properties"].items():
        out[key] = schema_defaults(sub) if "properties" in sub else sub["default"]
    return out


def key_tree(node):
    """Nested dict of keys only (leaves become None)."""
    if isinstance(node, dict):
        return {k: key_tree(v) for k, v in node.items()}
    return None


def error_of(config, source: str = "cfg.yaml") -> str:
    with pytest.raises(PgrpoError) as info:
        validate_config(config, source)
    message = str(info.value)
    assert "\n" not in message, message
    assert message.startswith(f"{source}: "), message
    return message


# ------------------------------------------------------------------------- valid configs


@pytest.mark.parametrize("name", ["config.yaml", ".test/config.yaml"])
def test_shipped_configs_validate(name):
    config = load_config(REPO / name)
    assert key_tree(config) == key_tree(schema_defaults(schema()))


def test_test_config_overrides_are_kept():
    config = load_config(REPO / ".test/config.yaml")
    assert config["model"]["name"] == "tiny"
    assert config["movielens"]["max_users"] == 60
    assert config["train"]["steps"] == 4
    # keys the file does not set get the schema default
    assert config["train"]["learning_rate"] == schema_defaults(schema())["train"]["learning_rate"]


def test_no_keys_get_every_default(tmp_path):
    expected = schema_defaults(schema())
    assert validate_config({}) == expected
    none = tmp_path / "none.yaml"
    none.write_text("{}\n", encoding="utf-8")
    assert load_config(none) == expected


@pytest.mark.parametrize("text", ["", "\n# only a comment\n"])
def test_an_empty_config_file_is_refused_naming_it(tmp_path, text):
    """As Snakemake refuses it: an empty file is a mistake (a wrong path, a failed copy),
    not a request for all defaults."""
    empty = tmp_path / "empty.yaml"
    empty.write_text(text, encoding="utf-8")
    with pytest.raises(PgrpoError) as info:
        load_config(empty)
    assert str(info.value) == (
        f"{empty}: empty config file (expected keys at the top level, e.g. seed: 0)"
    )


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"train": {"learning_rate": math.nan}},
         "train.learning_rate: .nan is not a finite number"),
        ({"train": {"beta": math.inf}}, "train.beta: .inf is not a finite number"),
        ({"personas": {"train": {"learning_rate": -math.inf}}},
         "personas.train.learning_rate: -.inf is not a finite number"),
        ({"simulation": {"reward_means": [0.8, math.nan]}},
         "simulation.reward_means.1: .nan is not a finite number"),
    ],
)  # fmt: skip
def test_non_finite_numbers_are_refused_naming_the_key(config, message):
    with pytest.raises(PgrpoError) as info:
        validate_config(config, "c.yaml")
    assert str(info.value) == f"c.yaml: {message}"


def test_defaults_are_not_shared_between_configs():
    first = validate_config({})
    first["train"]["methods"]["extra"] = {"advantage": "batch"}
    first["lora"]["target_modules"].clear()
    second = validate_config({})
    assert second == schema_defaults(schema())
    assert second["lora"]["target_modules"]


def test_every_schema_property_has_description_and_default():
    props = list(schema_properties(schema()))
    assert len(props) > 40
    missing = [key for key, sub in props if "description" not in sub or "default" not in sub]
    assert missing == []
    empty = [key for key, sub in props if not str(sub["description"]).strip()]
    assert empty == []


def test_config_yaml_spells_out_every_key_with_the_schema_default():
    raw = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))
    expected = schema_defaults(schema())
    assert key_tree(raw) == key_tree(expected)
    differing = [
        (key, get_dotted(raw, key), sub["default"])
        for key, sub in schema_properties(schema())
        if "properties" not in sub and get_dotted(raw, key) != sub["default"]
    ]
    assert differing == []
    assert raw == expected


def get_dotted(config: dict, dotted: str):
    node = config
    for part in dotted.split("."):
        node = node[part]
    return node


def test_validate_fills_defaults_inside_partial_sections():
    defaults = schema_defaults(schema())
    config = validate_config({"train": {"steps": 7}, "paths": {"results": "r"}})
    assert config["train"] == {**defaults["train"], "steps": 7}
    assert config["paths"] == {**defaults["paths"], "results": "r"}
    assert config["paths"]["resources"] == "resources"


# ------------------------------------------------------------------------- one-line errors


def test_wrong_type_names_the_key():
    message = error_of({"train": {"steps": "many"}})
    assert "train.steps" in message and "integer" in message


def test_enum_lists_the_allowed_values():
    message = error_of({"train": {"grpo_scale": "median"}})
    assert "train.grpo_scale" in message and "median" in message
    for allowed in ("group", "batch", "none"):
        assert allowed in message


def test_unknown_key_names_it():
    message = error_of({"train": {"stepz": 3}})
    assert "train.stepz: unknown key" in message


def test_unknown_top_level_key_names_it():
    message = error_of({"trian": {"steps": 3}})
    assert "trian" in message


def test_out_of_range_names_the_key():
    message = error_of({"train": {"group_size": 1}})
    assert "train.group_size" in message and "minimum" in message
    assert validate_config({"train": {"group_size": 2}})["train"]["group_size"] == 2


def test_min_ratings_below_history_plus_three():
    message = error_of({"movielens": {"history_length": 8, "min_ratings": 10}})
    assert "movielens.min_ratings" in message and "11" in message
    ok = validate_config({"movielens": {"history_length": 8, "min_ratings": 11}})
    assert ok["movielens"]["min_ratings"] == 11


def test_top_level_must_be_a_mapping():
    message = error_of(["train"])
    assert "mapping" in message


def test_invalid_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("seed: 1\ntrain:\n  steps: 5\n   extra: 3\n", encoding="utf-8")
    with pytest.raises(PgrpoError) as info:
        load_config(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}:4: ")
    assert "YAML" in message


def test_missing_config_file_names_the_path(tmp_path):
    path = tmp_path / "nowhere" / "config.yaml"
    with pytest.raises(PgrpoError) as info:
        load_config(path)
    assert str(path) in str(info.value)
    assert "not found" in str(info.value)


def test_load_config_overrides_are_validated(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train: {steps: 3}\n", encoding="utf-8")
    assert load_config(path, {"train": {"group_size": 6}})["train"]["steps"] == 3
    with pytest.raises(PgrpoError, match=r"train\.group_size"):
        load_config(path, {"train": {"group_size": 0}})


def test_enum_error_on_a_full_config():
    config = copy.deepcopy(schema_defaults(schema()))
    config["clustering"]["method"] = "spectral"
    message = error_of(config)
    assert "clustering.method" in message and "kmeans" in message and "random" in message


# ------------------------------------------------------------------------- through the CLIs


def test_prepare_cli_rejects_bad_config(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {steps: many}\n", encoding="utf-8")
    out = tmp_path / "prepared"
    result = subprocess.run(
        [sys.executable, "-m", "pgrpo.prepare", "--config", str(bad), "--out", str(out)],
        capture_output=True,
        text=True,
        env=cli_env(),
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:")
    assert "train.steps" in lines[0] and str(bad) in lines[0]
    assert not out.exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("written", "extra", "message"),
    [
        ("train: {steps: many}", [], "{bad}: train.steps: 'many' is not of type 'integer'"),
        ("launch: {accelerate_config: 3gpu}", [],
         "launch.accelerate_config: '3gpu' is not one of 1gpu, 2gpu, 4gpu, 8gpu, 8gpu_fsdp"),
        # --config reads nested values as strings: the line says where the value came from.
        ("seed: 1", ["--config", 'train={"steps": 5}'],
         "{bad} + --config: train.steps: '5' is not of type 'integer'"),
        ("train: {learning_rate: .nan}", [],
         "{bad}: train.learning_rate: .nan is not a finite number"),
    ],
)  # fmt: skip
def test_snakemake_rejects_bad_config(tmp_path, written, extra, message):
    bad = tmp_path / "bad.yaml"
    bad.write_text(written + "\n", encoding="utf-8")
    workdir = tmp_path / "work"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-n",
            "--snakefile",
            str(REPO / "Snakefile"),
            "--directory",
            str(workdir),
            "--configfile",
            str(bad),
            "--cores",
            "1",
            *extra,
        ],
        capture_output=True,
        text=True,
        env=cli_env(),
        cwd=tmp_path,
        timeout=300,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    # Besides Snakemake's own notes (the profile it uses), one error line, no traceback.
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert errors == ["error: " + message.format(bad=bad)]
    assert "Traceback" not in output and 'File "' not in output
    assert not (workdir / "outputs").exists()


@pytest.mark.slow
def test_the_error_line_lists_the_sources_in_the_order_they_apply(tmp_path):
    """The workflow's configfile, then each --configfile, then --config: the order in which
    Snakemake merges them (it keeps its own list in another order)."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "config.yaml").write_text("seed: 0\n")  # the Snakefile's own configfile
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text("train: {steps: 3}\n")
    second.write_text("train: {steps: many}\n")
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--snakefile", str(REPO / "Snakefile"),
         "--directory", str(workdir), "--cores", "1", "--configfile", str(first), str(second),
         "--config", "seed=1"],
        capture_output=True, text=True, env=cli_env(), cwd=workdir, timeout=300,
    )  # fmt: skip
    errors = [line for line in result.stdout.splitlines() + result.stderr.splitlines()
              if line.startswith("error:")]  # fmt: skip
    assert errors == [
        f"error: config.yaml, {first}, {second} + --config: train.steps: 'many' is not of "
        "type 'integer'"
    ]


# ------------------------------------------------------------------------- task overrides


def test_task_overrides_merge_over_the_top_level_sections():
    config = validate_config(
        {"train": {"beta": 0.5, "group_size": 4},
         "personas": {"train": {"group_size": 2}}}
    )  # fmt: skip
    personas = task_config(config, "personas")
    assert personas["train"]["beta"] == 0.5  # top level
    assert personas["train"]["group_size"] == 2  # the task's override wins
    assert personas["train"]["steps"] == 60  # the schema's override defaults, kept
    assert personas["clustering"]["num_clusters"] == 7
    movielens = task_config(config, "movielens")
    assert movielens["train"]["group_size"] == 4 and movielens["clustering"]["num_clusters"] == 4
    assert config["train"]["group_size"] == 4  # the config itself is not changed


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"personas": {"train": {"stepz": 3}}}, "personas.train.stepz: unknown key"),
        ({"reviews": {"evaluation": {"max_new_tokens": 0}}},
         "reviews.evaluation.max_new_tokens: 0 is less than the minimum of 1"),
        ({"movielens": {"clustering": {"method": "dbscan"}}},
         "movielens.clustering.method: 'dbscan' is not one of the allowed values"),
    ],
)  # fmt: skip
def test_a_bad_task_override_names_the_task_and_key(override, message):
    with pytest.raises(PgrpoError, match=re.escape(message)):
        validate_config(override, "c.yaml")


def test_allowed_values_are_spelled_as_in_the_config_file():
    """YAML's null, not Python's None: the user copies the value into config.yaml."""
    message = "launch.sharding: 'zero3' is not one of the allowed values (null, fsdp)"
    with pytest.raises(PgrpoError, match=re.escape(message)):
        validate_config({"launch": {"sharding": "zero3"}}, "c.yaml")


def test_unknown_task_is_named():
    with pytest.raises(PgrpoError, match="task: 'music' is not one of"):
        task_config(validate_config({}), "music")
    with pytest.raises(PgrpoError, match=r"tasks.0: 'music' is not one of the allowed values"):
        validate_config({"tasks": ["music"]})


def test_key_order_does_not_change_the_validated_config():
    """Snakemake compares params key order included: the same settings written in another
    order (or merged from files in another order) must give the same params."""
    import json

    written = yaml.safe_load((REPO / "config.yaml").read_text())
    backwards = json.loads(json.dumps(written), object_pairs_hook=lambda p: dict(p[::-1]))
    assert list(backwards) != list(written)
    one, two = validate_config(written), validate_config(backwards)
    assert json.dumps(one) == json.dumps(two)  # same keys in the same order, all the way down
    assert list(one["train"]) == sorted(one["train"])
    assert [d["name"] for d in one["personas"]["definitions"]] == [
        d["name"] for d in written["personas"]["definitions"]
    ]  # lists keep their order
