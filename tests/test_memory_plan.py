"""The GPU memory plan (pgrpo/memory.py, benchmarks/memory_plan.py): its arithmetic against
numbers computed here by hand or published with the models, and the paper profile's GPU
request against the plan. Computed only: no model is loaded."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pgrpo.config import load_configs
from pgrpo.distributed import ACCELERATE_CONFIGS, launch_plan
from pgrpo.io import PgrpoError
from pgrpo.memory import (
    Layout,
    ModelShape,
    Workload,
    accelerate_layouts,
    estimate,
    fewest_gpus,
    find_model_shape,
    kv_cache_bytes,
    lora_parameter_count,
    memory_plan,
    parameter_count,
    read_model_shape,
)  # fmt: skip

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "profiles" / "paper" / "models"
PAPER = [ROOT / "config.yaml", ROOT / "profiles" / "paper" / "paper.yaml"]
QWEN3_1_7B = MODELS / "Qwen--Qwen3-1.7B.json"
QKVO = ["q_proj", "k_proj", "v_proj", "o_proj"]


@pytest.mark.parametrize(
    ("file", "total", "non_embedding"),
    [("Qwen--Qwen3-1.7B.json", 1.7e9, 1.4e9), ("Qwen--Qwen3-8B.json", 8.2e9, 6.95e9)],
)
def test_parameter_counts_match_the_model_cards(file, total, non_embedding):
    """The counts the Qwen3 model cards publish (total and without the embeddings)."""
    shape = read_model_shape(MODELS / file)
    embeddings = shape.vocab * shape.hidden * (1 if shape.tied else 2)
    assert parameter_count(shape) == pytest.approx(total, rel=0.02)
    assert parameter_count(shape) - embeddings == pytest.approx(non_embedding, rel=0.02)


def test_qwen3_1_7b_shape_lora_count_and_fsdp_shards():
    shape = read_model_shape(QWEN3_1_7B)
    assert (shape.hidden, shape.layers, shape.heads, shape.kv_heads, shape.head_dim) == (
        2048, 28, 16, 8, 128,
    )  # fmt: skip
    # r * (in + out) per module; k and v map 2048 -> 8 key/value heads * 128 = 1024.
    per_layer = 16 * ((2048 + 2048) + (2048 + 1024) + (2048 + 1024) + (2048 + 2048))
    assert lora_parameter_count(shape, 16, QKVO) == 28 * per_layer == 6_422_528
    lora = {"r": 16, "target_modules": QKVO}
    work = Workload(prompts_per_step=16, group_size=8, max_new_tokens=16, prompt_tokens=512)
    one = estimate(shape, lora, work, Layout("1gpu", 1, False), "bf16")
    data_parallel = estimate(shape, lora, work, Layout("4gpu", 4, False), "bf16")
    sharded = estimate(shape, lora, work, Layout("4gpu_fsdp", 4, True), "bf16")
    # Data parallel: every process holds everything, and a quarter of the prompts.
    assert data_parallel.weights == one.weights and data_parallel.adapter == one.adapter
    assert data_parallel.activations == one.activations / 4
    # The tree rollout: each prompt once, then its G answers: 4 prompts x (512 + 8 x 16) tokens.
    assert data_parallel.kv_cache == 2 * 28 * 8 * 128 * 4 * (512 + 8 * 16) * 2
    # Sharded: weights, adapter, gradients and AdamW state / 4; the rest per process.
    assert sharded.adapter == pytest.approx(one.adapter / 4, abs=1)
    assert one.adapter == 6_422_528 * (4 + 4 + 8)
    root = 151936 * 2048 + 2048  # tied embedding + final norm, gathered with the root
    layer = 2 * 2048 * 2048 + 2 * 2048 * 1024 + 3 * 2048 * 6144 + 2 * 2048
    gathered = (root + 2 * layer) * 2  # the root and two decoder layers, bf16
    assert sharded.weights == pytest.approx(one.weights / 4 + gathered, abs=1)
    for part in ("activations", "logits", "kv_cache"):
        assert getattr(sharded, part) == getattr(data_parallel, part)
    assert sharded.needed < data_parallel.needed < one.needed
    # 16 prompts do not split over 3 processes: the trainer refuses, the plan says n/a.
    assert estimate(shape, lora, work, Layout("3gpu", 3, False), "bf16") is None


def test_kv_cache_and_precision_on_a_hand_case():
    shape = ModelShape(hidden=8, intermediate=16, layers=2, heads=2, kv_heads=1, head_dim=4,
                       vocab=10, tied=True)  # fmt: skip
    assert kv_cache_bytes(shape, tokens=5, dtype_bytes=2) == 2 * 2 * 1 * 4 * 5 * 2 == 160
    layer = 8 * 8 + 2 * 8 * 4 + 8 * 8 + 3 * 8 * 16 + 2 * 8  # q, k + v, o, MLP, two norms
    assert parameter_count(shape) == 10 * 8 + 2 * layer + 8
    work = Workload(prompts_per_step=2, group_size=2, max_new_tokens=3, prompt_tokens=4)
    layout, lora = Layout("1gpu", 1, False), {"r": 2, "target_modules": ["q_proj"]}
    bf16, fp32 = (estimate(shape, lora, work, layout, p) for p in ("bf16", "fp32"))
    for part in ("weights", "activations", "logits", "kv_cache"):
        assert getattr(fp32, part) == 2 * getattr(bf16, part)
    assert fp32.adapter == bf16.adapter  # float32 under both
    # Logits: the prompt's last position + 2 answers x 2 positions, 10 entries, bf16 twice.
    assert bf16.logits == 2 * (2 * (1 + 2 * 2) * 10) * 2


def test_accelerate_files_fewest_gpus_first():
    layouts = accelerate_layouts(ACCELERATE_CONFIGS)
    assert [(x.name, x.processes, x.sharded) for x in layouts] == [
        ("1gpu", 1, False), ("2gpu", 2, False), ("4gpu", 4, False), ("8gpu", 8, False),
        ("8gpu_fsdp", 8, True),
    ]  # fmt: skip


def test_the_paper_profile_asks_for_the_fewest_gpus_that_fit_its_main_model():
    config = load_configs(PAPER)
    names = [config["model"]["name"], *config["model"]["compare"]]
    shapes = {name: find_model_shape(name, MODELS, {}) for name in names}
    rows = memory_plan(config, shapes, accelerate_layouts(ACCELERATE_CONFIGS))
    steps = {(job.model, job.task, job.work.group_size, job.work.max_new_tokens) for job, _ in rows}
    assert ("Qwen/Qwen3-8B", "personas", 8, 128) in steps  # paper.yaml over config.yaml
    assert ("Qwen/Qwen3-1.7B", "movielens", 8, 16) in steps
    chosen = fewest_gpus(rows, config["model"]["name"])
    assert chosen is not None and chosen == fewest_gpus(rows)  # the main model decides
    assert config["launch"]["accelerate_config"] == chosen.name
    _, processes = launch_plan(config)  # the training rule's gres: gpu:<processes>
    assert processes == chosen.processes


def run_script(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(ROOT / "benchmarks" / "memory_plan.py"), *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_the_script_prints_the_table_of_the_cluster_page(tmp_path):
    done = run_script("--out", str(tmp_path / "plan.md"), "--json", str(tmp_path / "plan.json"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "plan.md").read_text() == done.stdout
    plan = json.loads((tmp_path / "plan.json").read_text())
    paper = load_configs(PAPER)
    assert plan["fewest_gpus"]["Qwen/Qwen3-8B"] == paper["launch"]["accelerate_config"]
    page = (ROOT / "docs" / "cluster.md").read_text()
    tables = [line for line in done.stdout.splitlines() if line.startswith("|")]
    assert len(tables) > 10 and [line for line in tables if line not in page] == []


def test_bad_inputs_are_one_line_errors(tmp_path):
    bad = tmp_path / "config.json"
    bad.write_text(json.dumps({"hidden_size": 64, "num_hidden_layers": 2}))
    with pytest.raises(PgrpoError, match=r"config.json: no integer intermediate_size"):
        read_model_shape(tmp_path)
    with pytest.raises(PgrpoError, match=r"model org/none: no config.json .*org--none.json"):
        find_model_shape("org/none", tmp_path, {})
    with pytest.raises(PgrpoError, match=r"lora.target_modules: 'c_attn' is not one of"):
        lora_parameter_count(read_model_shape(QWEN3_1_7B), 16, ["c_attn"])
    done = run_script("--model-config", f"Qwen/Qwen3-8B={tmp_path / 'missing.json'}")
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: {tmp_path / 'missing.json'}: file not found"
