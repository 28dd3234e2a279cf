"""Two training processes on CPU (gloo), launched as the workflow launches them, hold the
same P-GRPO statistics and take the same step as one process on the same global batch.

One process is launched with the command-line flags (``launch.accelerate_config: null``),
two with the 2-GPU accelerate config file (``launch.accelerate_config: 2gpu``), which starts
two CPU processes in one group where no GPU is visible. The launcher (``python -m
pgrpo.launch``) ends with its training processes' exit status, one line for a signal."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch
from entrypoints import launch_argv
from tiny_training import launch_steps

from pgrpo.distributed import launch_plan

pytestmark = [pytest.mark.slow, pytest.mark.numerics]

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    from tiny_training import tiny_training_inputs

    model = tmp_path_factory.mktemp("multiprocess") / "tiny"
    tiny_training_inputs(model)  # materialise the model once, before the launches
    return model


@pytest.fixture(scope="module")
def runs(tiny):
    one = launch_steps(None, tiny, tiny.parent / "one")
    return one, launch_steps("2gpu", tiny, tiny.parent / "two")


def test_two_processes_really_ran(runs):
    one, two = runs
    assert [(r["rank"], r["world"]) for r in one] == [(0, 1)]
    assert [(r["rank"], r["world"]) for r in two] == [(0, 2), (1, 2)]


def test_both_ranks_hold_the_statistics_of_one_process(runs):
    (single,), two = runs
    assert sum(single["stats"]["count"]) == 2 * 4 * 4  # 2 steps x 4 prompts x G=4
    for rank in two:
        assert rank["stats"] == two[0]["stats"]  # identical on both ranks, bit for bit
        for key in ("count", "mean", "m2"):
            torch.testing.assert_close(
                torch.tensor(rank["stats"][key]), torch.tensor(single["stats"][key]),
                rtol=1e-12, atol=1e-12,
            )  # fmt: skip


def test_advantages_and_the_update_equal_one_process(runs):
    (single,), two = runs
    assert len(set(single["rewards"])) > 1  # non-trivial advantages
    for rank in two:
        assert rank["rewards"] == single["rewards"]  # the same answers were sampled
        assert rank["reward_mean"] == single["reward_mean"]
        torch.testing.assert_close(
            torch.tensor(rank["advantages"]), torch.tensor(single["advantages"]),
            rtol=1e-6, atol=1e-6,
        )  # fmt: skip
        # After two AdamW steps of lr 0.05: Adam divides each gradient by its own running
        # magnitude, so float noise in near-zero gradients (other padding, other summation
        # order) shows at 1e-4 of a step; a wrong gradient would differ by a whole step.
        assert rank["adapter"].keys() == single["adapter"].keys()
        for name, values in rank["adapter"].items():
            torch.testing.assert_close(
                torch.tensor(values), torch.tensor(single["adapter"][name]),
                rtol=1e-3, atol=2e-4,
            )  # fmt: skip
    moved = [max(abs(v) for v in vals) for n, vals in single["adapter"].items() if "lora_B" in n]
    assert max(moved) > 0  # the step changed the adapter (LoRA B starts at zero)


@pytest.mark.parametrize("gpus", [1, 2, 4, 8])
def test_each_gpu_config_file_launches_its_number_of_processes(gpus):
    from accelerate.commands.config.config_args import load_config_from_file

    plan = {"launch": {"accelerate_config": f"{gpus}gpu"}, "train": {"num_processes": 1}}
    prefix, processes = launch_plan(plan)
    assert processes == gpus and prefix.endswith(f"workflow/accelerate/{gpus}gpu.yaml")
    loaded = load_config_from_file(str(HERE.parent / f"workflow/accelerate/{gpus}gpu.yaml"))
    assert loaded.num_processes == gpus and loaded.num_machines == 1
    assert loaded.distributed_type.value == ("NO" if gpus == 1 else "MULTI_GPU")


def test_an_unknown_accelerate_config_names_the_files_there_are():
    from pgrpo.io import PgrpoError

    with pytest.raises(PgrpoError, match=r"'3gpu' is not one of 1gpu, 2gpu, 4gpu, 8gpu, 8gpu_fsdp"):
        launch_plan({"launch": {"accelerate_config": "3gpu"}, "train": {"num_processes": 1}})


def test_two_processes_stopped_and_resumed_end_like_the_uninterrupted_pair(runs, tiny, tmp_path):
    _, two = runs
    model = tiny
    folder = tmp_path / "checkpoint"
    launch_steps(
        "2gpu", model, tmp_path / "first", "--save-after", "1", "--checkpoint", str(folder)
    )
    assert sorted(p.name for p in next(folder.glob("checkpoints/step-*")).iterdir()) == [
        "rng-rank0.pt", "rng-rank1.pt", "state.pt",
    ]  # fmt: skip
    resumed = launch_steps("2gpu", model, tmp_path / "resumed", "--resume", str(folder))
    for rank, whole in zip(resumed, two, strict=True):
        assert rank["stats"] == whole["stats"] and rank["rewards"] == whole["rewards"]
        for name, values in whole["adapter"].items():
            torch.testing.assert_close(torch.tensor(rank["adapter"][name]), torch.tensor(values))


DIES = "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n"
RANK1_EXITS_3 = "import os, sys\nsys.exit(3 if os.environ['RANK'] == '1' else 0)\n"


def launch_script(tmp_path: Path, code: str, processes: int) -> subprocess.CompletedProcess:
    """``code`` as a script under the training rule's launcher with ``processes`` processes."""
    script = tmp_path / "script.py"
    script.write_text(code)
    config = {"launch": {"accelerate_config": None}, "train": {"num_processes": processes}}
    cmd = [*launch_argv(config), str(script)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(("processes", "who"), [(1, ""), (2, " (rank 0)")])
def test_a_process_killed_by_a_signal_is_one_line_and_the_shells_status(
    tmp_path, processes, who
):  # fmt: skip
    done = launch_script(tmp_path, DIES, processes)
    assert done.returncode == 128 + 9, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'script.py'}{who} was killed by SIGKILL"
    ]


def test_a_failing_rank_gives_its_exit_status_without_a_launcher_report(tmp_path):
    done = launch_script(tmp_path, RANK1_EXITS_3, 2)
    assert done.returncode == 3, done.stderr
    assert done.stderr.strip() == ""  # no ChildFailedError traceback, no elastic log
