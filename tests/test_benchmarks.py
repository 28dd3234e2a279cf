"""The benchmark scripts run end to end and print their figures (no timing is asserted)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def run_benchmark(*args: str) -> str:
    cmd = [sys.executable, str(ROOT / "benchmarks" / args[0]), *args[1:]]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def table_rows(text: str) -> dict[str, list[str]]:
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and not set(cells[1]) <= {"-", ":"} and cells[0] != "trainer":
            rows[cells[0]] = cells[1:]
    return rows


def test_step_benchmark_runs_pgrpo_and_trl_side_by_side(tmp_path):
    out = run_benchmark(
        "step_throughput.py", "--model", "tiny", "--models-dir", str(tmp_path),
        "--prompts", "2", "--group-size", "2", "--history", "2", "--max-new-tokens", "2",
        "--warmup", "0", "--repeats", "1",
    )  # fmt: skip
    rows = table_rows(out)
    trl = "TRL 1.16.0 GRPOTrainer, gradient checkpointing"
    assert set(rows) == {"pgrpo GRPO", "pgrpo P-GRPO", f"{trl} on", f"{trl} off"}
    for cells in rows.values():
        step, prompts_per_s = float(cells[0]), float(cells[1])
        assert step > 0 and abs(prompts_per_s - 2 / step) < 0.01 * prompts_per_s + 1e-3
        assert float(cells[7]) > 0  # FLOPs were counted
        assert cells[11] == "-"  # no GPU memory on --device cpu (the default)
    for setting in ("on", "off"):  # TRL's default, and the setting that needs no recompute
        assert re.search(rf"pgrpo P-GRPO vs {trl} {setting}: [\d.]+x the prompts/s", out)
    assert re.search(r"P-GRPO overhead .*: [\d.]+ ms per step", out)
    assert "measured matmul peak" in out


def test_decode_benchmark_prints_the_step_its_kinds_of_work_and_its_bounds(tmp_path):
    out = run_benchmark(
        "decode_step.py", "--model", "tiny", "--models-dir", str(tmp_path),
        "--prompts", "2", "--group-size", "3", "--max-new-tokens", "3",
    )  # fmt: skip
    assert "2 prompts x G=3 (6 rows per decoding step), 3 decoding steps" in out
    step = re.search(r"\(median of 3\): ([\d.]+) ms with the LoRA adapter, ([\d.]+) ms", out)
    assert step and float(step[1]) > 0 and float(step[2]) > 0
    kinds = table_rows(out)
    assert "matmul" in kinds and "cache concatenation" in kinds
    # The tiny model: 2 layers x 7 projections and the output layer.
    assert re.search(r"products of all 15 weight matrices \(\d+ MB.*\) with 6 rows: [\d.]+ ms", out)
    assert re.search(r"read bandwidth \(sum of 512 MB\): [\d.]+ GB/s", out)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible: --device cuda runs")
def test_step_benchmark_on_cuda_without_a_gpu_says_so_in_one_line():
    cmd = [sys.executable, str(ROOT / "benchmarks" / "step_throughput.py"), "--device", "cuda"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert re.fullmatch(r"--device cuda: torch \S+ sees no CUDA device \(built with CUDA .+\)\n",
                        done.stderr), done.stderr  # fmt: skip


def test_rule_times_reads_snakemake_benchmark_files(tmp_path):
    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time"
    (tmp_path / "train" / "m").mkdir(parents=True)
    for rule, row in [
        ("train/m/movielens_seed0_pgrpo", "120.5\t0:02:00\t2048"),
        ("train/m/movielens_seed1_pgrpo", "60.0\t0:01:00\t3072"),
        ("embed_users", "30.0\t0:00:30\t1024"),
    ]:
        (tmp_path / f"{rule}.tsv").write_text(f"{header}\n{row}" + "\t0" * 7 + "\n")
    out = run_benchmark("rule_times.py", str(tmp_path))
    assert "| train (2 jobs, slowest 2.0 min) | 3.0 min | 3.00 GB |" in out
    assert "| embed_users | 0.5 min | 1.00 GB |" in out
    assert "**3.5 min**" in out
    jobs = run_benchmark("rule_times.py", str(tmp_path), "--jobs")
    assert "| train/m/movielens_seed1_pgrpo | 1.0 min | 3.00 GB |" in jobs


def test_the_supervised_probe_prints_its_validation_curve(tmp_path):
    import json

    import yaml

    from pgrpo.models import materialize_model

    materialize_model("tiny", tmp_path / "tiny")
    config = tmp_path / "c.yaml"
    small = {"max_users": 40, "history_length": 3, "max_train_examples_per_user": 5}
    config.write_text(yaml.safe_dump({"movielens": small}))
    prepared = subprocess.run(
        [sys.executable, "-m", "pgrpo.prepare", "--config", str(config), "--out",
         str(tmp_path / "ml")], cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert prepared.returncode == 0, prepared.stderr[-2000:]
    out = run_benchmark("probe_movielens.py", "--data", str(tmp_path / "ml"), "--model",
                        str(tmp_path / "tiny"), "--steps", "3", "--prompts", "4",
                        "--eval-every", "2", "--eval-prompts", "12", "--precision", "fp32",
                        "--out", str(tmp_path / "curve.json"))  # fmt: skip
    curve = json.loads((tmp_path / "curve.json").read_text())["curve"]
    assert [p["step"] for p in curve] == [0, 2, 3]
    assert all(0 <= p["letter_accuracy"] <= 1 for p in curve)
    assert curve[0]["train_loss"] is None and curve[-1]["train_loss"] > 0
    assert out.count('"letter_accuracy"') == 3  # printed as it goes


def test_the_pilot_figure_draws_runs_and_probes_and_prints_their_points(tmp_path):
    import json

    rows = [{"reward_mean": 0.25 + (step >= 4) * 0.1} for step in range(6)]
    rows[0].update({"val0/letter_accuracy": 0.25, "val0/num_options": 4})
    rows[5].update({"val/letter_accuracy": 0.3, "val/updates": 6})
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text("".join(json.dumps(r) + "\n" for r in rows))
    probe = tmp_path / "probe.json"
    probe.write_text(json.dumps({"args": {"prompts": 8, "eval_prompts": 50}, "curve": [
        {"step": 0, "letter_accuracy": 0.25}, {"step": 10, "letter_accuracy": 0.4}]}))  # fmt: skip
    figure = str(tmp_path / "f")
    out = run_benchmark("pilot_figure.py", "--runs", f"GRPO={metrics}", "--probes",
                        f"probe={probe}", "--block", "2", "--figure", figure)  # fmt: skip
    assert "| GRPO: training reward per 2 steps | 2: 0.250, 4: 0.250, 6: 0.350 |" in out
    assert "| probe: validation letter accuracy by prompts seen | 0: 0.250, 80: 0.400 |" in out
    assert (tmp_path / "f.png").stat().st_size > 10_000
