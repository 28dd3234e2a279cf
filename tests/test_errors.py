"""Bad input, clear errors (docs/errors.md): the cases that no entry point's own tests cover.
Through an entry point each ends with one ``error:`` line naming the file, key or value, exit
code 2 and no output; the reward cases run the real trainer and task in-process (a NaN must
stop a step before the statistics). The last test checks that every test docs/errors.md
cites exists."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from entrypoints import REPO, launch_argv, one_error_line, run_entry

from pgrpo.io import PgrpoError

EXAMPLE = {"user_id": 1, "position": 5, "history": [1, 2, 3, 4, 5], "target": 6,
           "candidates": [6, 7, 8, 9], "answer": "A"}  # fmt: skip


def train_cli(
    tmp_path: Path, config: dict, *, model: str = "model", env: dict | None = None,
    clusters: dict | None = None, processes: int = 0,
):  # fmt: skip
    """``pgrpo.train`` on a one-example MovieLens folder of ``tmp_path`` under ``config``;
    (the finished process, the output folder). ``processes`` > 0: under the training rule's
    launcher (``python -m pgrpo.launch``, accelerate) with that many processes."""
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config))
    data_clusters = clusters
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    if not (data / "train.jsonl").exists():
        (data / "train.jsonl").write_text(json.dumps(EXAMPLE) + "\n")
    clusters = tmp_path / "clusters.json"
    clusters.write_text(json.dumps(data_clusters or {"num_clusters": 1, "assignment": {"1": 0}}))
    out = tmp_path / "run"
    entry = ["pgrpo.train"]
    if processes:
        launch = {"launch": {"accelerate_config": None}, "train": {"num_processes": processes}}
        entry = [*launch_argv(launch)[2:], "-m", "pgrpo.train"]  # after `python -m`
    done = run_entry(
        *entry, "--config", str(path), "--method", "pgrpo", "--model",
        str(tmp_path / model), "--data", str(data), "--clusters", str(clusters),
        "--out", str(out), "--no-progress", cwd=tmp_path, env=env,
    )  # fmt: skip
    return done, out


@pytest.mark.slow
@pytest.mark.parametrize(
    ("clusters", "message"),
    [
        ({"num_clusters": 1}, "not a clusters file (KeyError: 'assignment'), expected "),
        (
            {"num_clusters": 2, "assignment": {"1": 2}},
            "cluster ids [2] outside 0..1 (num_clusters 2)",
        ),
        (
            {"num_clusters": 2, "sizes": [0, 1], "assignment": {"1": 0}},
            "sizes [0, 1] disagree with the assignment, which puts [1, 0] users in clusters 0..1",
        ),
    ],
    ids=["no-assignment", "id-outside", "sizes-disagree"],
)
def test_a_broken_clusters_file_is_one_line_naming_it(tmp_path, clusters, message):
    done, out = train_cli(tmp_path, {}, clusters=clusters)
    assert one_error_line(done).startswith(f"error: {tmp_path / 'clusters.json'}: {message}")
    assert not out.exists()


# ------------------------------------------------------------------------- MLflow store


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A folder with what training and evaluation need to run to the end: the tiny model,
    an adapter of it, a one-example MovieLens folder and its clusters."""
    from pgrpo.models import LoraSettings, add_lora, load_base_model, materialize_model

    root = tmp_path_factory.mktemp("tiny_run")
    materialize_model("tiny", root / "model")
    policy = add_lora(load_base_model(root / "model"), LoraSettings(r=4, alpha=8))
    policy.save_pretrained(root / "adapter")
    (root / "data").mkdir()
    items = [{"item_id": i, "title": f"Movie {i}", "year": 1999, "genres": ["Drama"]}
             for i in range(1, 10)]  # fmt: skip
    (root / "data" / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in items))
    for split in ("train", "test"):
        (root / "data" / f"{split}.jsonl").write_text(json.dumps(EXAMPLE) + "\n")
    (root / "clusters.json").write_text(json.dumps({"num_clusters": 1, "assignment": {"1": 0}}))
    return root


SMALL = {"train": {"steps": 1, "prompts_per_step": 1, "group_size": 2, "max_new_tokens": 2},
         "lora": {"r": 4, "alpha": 8}, "evaluation": {"max_new_tokens": 2},
         "general": {"max_passages": 2, "mc_questions": 2}}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("entry", ["pgrpo.train", "pgrpo.evaluate", "pgrpo.general"])
def test_an_unreadable_mlflow_store_is_one_line_naming_it(tiny_run, tmp_path, entry):
    """4 KB of garbage named mlflow.db: every entry point that logs to MLflow stops before
    any work with one line naming the file and how to start a fresh store; the file stays."""
    store = tmp_path / "mlflow.db"
    garbage = np.random.default_rng(0).bytes(4096)
    store.write_bytes(garbage)
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(SMALL))
    out = tmp_path / "out"
    run = {
        "pgrpo.train": ["--method", "pgrpo", "--data", "data", "--clusters", "clusters.json",
                        "--out", str(out)],
        "pgrpo.evaluate": ["--adapter", "adapter", "--data", "data", "--clusters",
                           "clusters.json", "--out", str(out / "eval.json")],
        "pgrpo.general": ["--adapter", "adapter", "--out", str(out / "general.json")],
    }[entry]  # fmt: skip
    done = run_entry(
        entry, "--config", str(config), "--model", "model", *run, "--no-progress",
        cwd=tiny_run, env={"MLFLOW_TRACKING_URI": f"sqlite:///{store}"},
    )  # fmt: skip
    assert one_error_line(done) == (
        f"error: {store}: not a readable MLflow store (file is not a database); to start a "
        f"fresh store and keep this one, move it aside (mv {store} {store}.broken) or point "
        "MLFLOW_TRACKING_URI at another file (MLFLOW_TRACKING_URI=sqlite:///fresh.db)"
    )
    assert not out.exists()
    assert store.read_bytes() == garbage


# ------------------------------------------------------------------------- config


@pytest.mark.slow
def test_an_out_of_range_value_names_the_key_and_the_bound(tmp_path):
    done, out = train_cli(tmp_path, {"train": {"group_size": 1}})
    assert one_error_line(done) == (
        f"error: {tmp_path / 'c.yaml'}: train.group_size: 1 is less than the minimum of 2"
    )
    assert not out.exists()


# ------------------------------------------------------------------------- data files


@pytest.mark.slow
def test_a_truncated_data_file_names_the_file_and_line(tmp_path):
    (tmp_path / "data").mkdir()
    whole = json.dumps(EXAMPLE) + "\n" + json.dumps({**EXAMPLE, "position": 6}) + "\n"
    (tmp_path / "data" / "train.jsonl").write_text(whole[:-20])  # cut in the second line
    done, out = train_cli(tmp_path, {})
    line = one_error_line(done)
    assert line.startswith(f"error: {tmp_path / 'data' / 'train.jsonl'}:2: not valid JSON (")
    assert not out.exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("histories", "problem"),
    [
        ('{"1": [1, 2', "not valid JSON (Expecting ',' delimiter)"),
        ('{"1": [1, 7]}', "1 item ids missing from {data}/items.jsonl (first: 7)"),
    ],
    ids=["truncated", "dangling-item"],
)  # fmt: skip
def test_broken_histories_stop_embedding_with_one_line(tmp_path, histories, problem):
    data = tmp_path / "movielens"
    data.mkdir()
    items = [{"item_id": i, "text": f"Movie {i} (1999)"} for i in (1, 2, 3)]
    (data / "items.jsonl").write_text("".join(json.dumps(r) + "\n" for r in items))
    (data / "histories.json").write_text(histories)
    config = tmp_path / "c.yaml"
    config.write_text("{}\n")
    out = tmp_path / "embeddings.npz"
    done = run_entry("pgrpo.embed", "--config", str(config), "--data", str(data), "--out", str(out))
    expected = f"error: {data}/histories.json: {problem.format(data=data)}"
    assert one_error_line(done) == expected
    assert not out.exists()


# ------------------------------------------------------------------------- model and GPUs


@pytest.mark.slow
def test_a_model_folder_that_does_not_exist_is_named(tmp_path):
    done, out = train_cli(tmp_path, {}, model="nope")
    assert one_error_line(done) == f"error: {tmp_path / 'nope'}: model folder not found"
    assert not out.exists()


@pytest.mark.slow
def test_under_the_training_rules_launcher_the_error_is_still_the_only_line(tmp_path):
    """The training rule starts `python -m pgrpo.launch` (accelerate launch): the training's
    exit status, and no launcher traceback after its error line (accelerate's own CLI adds
    one and exits 1)."""
    done, out = train_cli(tmp_path, {}, model="nope", processes=1)
    assert one_error_line(done) == f"error: {tmp_path / 'nope'}: model folder not found"
    assert not out.exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("/no/such/model", "'/no/such/model' is neither a built-in model (smollm2-135m, "
                           "tiny), an existing folder nor a hub id (owner/name)"),
        ("{empty}", "'{empty}': no config.json, not a model folder"),
        ("no-such-owner/no-such-model", "'no-such-owner/no-such-model': cannot load a causal "
                                        "LM (We couldn't connect to 'https://huggingface.co' "
                                        "to load the files, and couldn't find them in the "
                                        "cached files.)"),
    ],
    ids=["missing-path", "not-a-model-folder", "hub-id-offline-not-cached"],
)  # fmt: skip
def test_a_model_name_that_is_no_model_is_one_line(tmp_path, name, message):
    empty = tmp_path / "empty"
    empty.mkdir()
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"model": {"name": name.format(empty=empty)}}))
    out = tmp_path / "models" / "m"
    offline = {"HF_HUB_OFFLINE": "1"}  # never the internet, whatever the environment says
    done = run_entry("pgrpo.materialize", "--config", str(config), "--out", str(out), env=offline)
    assert one_error_line(done) == f"error: model.name: {message.format(empty=empty)}"
    assert not (tmp_path / "models").exists()


@pytest.mark.slow
def test_a_gpu_accelerate_file_without_a_visible_gpu_stops_before_training(tmp_path):
    config = {"launch": {"accelerate_config": "2gpu"}}
    done, out = train_cli(tmp_path, config, env={"CUDA_VISIBLE_DEVICES": ""})
    assert one_error_line(done) == (
        "error: launch.accelerate_config=2gpu asks for 2 GPUs but torch sees none "
        "(CUDA_VISIBLE_DEVICES=''); set launch.cpu_fallback: true to run on the CPU"
    )
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="the fallback is for GPU-less machines")
def test_cpu_fallback_lets_a_gpu_file_run_on_the_cpu():
    from pgrpo.distributed import check_gpus

    for name in ("1gpu", "2gpu", "8gpu"):
        check_gpus({"accelerate_config": name, "cpu_fallback": True})  # no error
        with pytest.raises(PgrpoError, match=f"launch.accelerate_config={name} asks for"):
            check_gpus({"accelerate_config": name, "cpu_fallback": False})
    check_gpus({"accelerate_config": None, "cpu_fallback": False})  # train.num_processes


# ------------------------------------------------------------------------- rewards


@pytest.mark.slow
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_non_finite_reward_stops_training_before_the_statistics(tmp_path, bad):
    from accelerate import Accelerator
    from tiny_training import LengthParityTask, tiny_training_inputs

    from pgrpo.models import LoraSettings, add_lora, load_base_model
    from pgrpo.settings import TrainSettings
    from pgrpo.trainer import Trainer

    class BrokenReward(LengthParityTask):
        """A task whose reward function returns ``bad`` for one answer of the batch."""

        name = "broken"

        def scores(self, completions, examples):
            scored = super().scores(completions, examples)
            return [(bad, True), *scored[1:]]

    tokenizer, task, examples, clusters, stop_ids = tiny_training_inputs(tmp_path / "tiny")
    torch.manual_seed(0)
    policy = add_lora(load_base_model(tmp_path / "tiny"), LoraSettings(r=4, alpha=8))
    before = {n: p.detach().clone() for n, p in policy.named_parameters() if p.requires_grad}
    broken = BrokenReward(task)
    settings = TrainSettings(method="pgrpo", prompts_per_step=2, group_size=2,
                             max_new_tokens=2, precision="fp32")  # fmt: skip
    trainer = Trainer(policy, tokenizer, broken, Accelerator(cpu=True), settings, 2, stop_ids)
    with pytest.raises(PgrpoError) as info:
        trainer.step(0, examples, clusters)
    message = str(info.value)
    assert "\n" not in message
    assert re.fullmatch(
        rf"broken task: reward {bad} for user \d+, position \d+ \(answer '.*'\), "
        r"expected a finite number",
        message,
    ), message
    assert trainer.last_batch == {}  # no advantages were computed
    assert trainer.cluster_stats.count.sum().item() == 0  # the Welford statistics untouched
    for name, value in policy.named_parameters():
        if value.requires_grad:
            assert torch.equal(value, before[name])  # no update


def test_a_rating_model_giving_nan_rewards_is_named(tmp_path):
    from pgrpo.tasks.reviews import RatingModel, ReviewsTask

    path = tmp_path / "rating_model.npz"
    RatingModel(np.full((3, 384), np.nan), np.zeros(3), [0, 1, 2], ["r1"]).save(path)
    task = ReviewsTask(RatingModel.load(path))
    review = "A lovely dress, it fits well and the fabric feels soft."
    example = {"user_id": 7, "group": 2, "item": "Dresses", "rating": 5, "title": ""}
    with pytest.raises(PgrpoError) as info:
        task.checked_scores([review], [example])
    assert str(info.value) == (
        f"reviews task: reward nan for user 7 (answer {review[:40]!r}), expected a finite number"
    )


# ------------------------------------------------------------------------- docs/errors.md


def test_every_test_that_docs_errors_md_cites_exists():
    text = (REPO / "docs" / "errors.md").read_text(encoding="utf-8")
    cited = re.findall(r"(tests/test_\w+\.py)::(test_\w+)", text)
    assert len(cited) >= 20
    for path, name in cited:
        assert re.search(rf"^def {name}\(", (REPO / path).read_text(), re.M), f"{path}::{name}"
