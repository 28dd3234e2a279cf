"""How training processes are started and joined, in one place for the workflow's training
rule, the training entry point and the multi-process tests (the launcher itself is
:mod:`pgrpo.launch`).

* ``accelerate_command(n)``: the launch prefix. For n > 1 it passes
  ``--multi_gpu``, which on a GPU machine starts one process per GPU and on a CPU-only
  machine starts n CPU processes (``--cpu`` and MULTI_CPU config files were seen to start
  only one process with accelerate 1.15).
* ``launch_plan(config)``: the prefix and the number of processes (= GPUs on a GPU node) of
  a training job: the flags above for ``train.num_processes``, or ``accelerate launch
  --config_file workflow/accelerate/<name>.yaml`` when ``launch.accelerate_config`` names one
  of those files. A MULTI_GPU file with n processes also starts n CPU processes that form
  one group where no GPU is visible (checked with accelerate 1.15), so the same files run
  in CI.
* ``make_accelerator(launch)``: ``Accelerator(cpu=True)`` where no GPU is visible; without
  it, CPU processes started by ``--multi_gpu`` do not join one process group and each would
  silently train on its own slice of the data. Given the config's ``launch`` section, it
  first refuses a GPU file (``launch.accelerate_config``) when torch sees fewer GPUs than
  the file's processes, unless ``launch.cpu_fallback`` lets a GPU-less machine (CI, tests)
  run them as CPU processes (:func:`check_gpus`).
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import yaml

from pgrpo.io import PgrpoError

ACCELERATE_CONFIGS = Path(__file__).resolve().parents[1] / "workflow" / "accelerate"


LAUNCHER = ["python", "-m", "pgrpo.launch"]


def accelerate_command(num_processes: int) -> list[str]:
    """``accelerate launch`` (through :func:`main`) with ``num_processes`` processes on this
    machine."""
    args = [*LAUNCHER, "--num_processes", str(num_processes), "--num_machines", "1"]
    args += ["--mixed_precision", "no", "--dynamo_backend", "no"]
    if num_processes > 1:
        args.append("--multi_gpu")
    return args


def accelerate_shell_prefix(num_processes: int) -> str:
    """:func:`accelerate_command` as one shell-quoted string (Snakemake shell commands)."""
    return shlex.join(accelerate_command(num_processes))


def accelerate_config_file(name: str) -> Path:
    """``workflow/accelerate/<name>.yaml``; a one-line error listing the files otherwise."""
    path = ACCELERATE_CONFIGS / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in ACCELERATE_CONFIGS.glob("*.yaml")))
        raise PgrpoError(f"launch.accelerate_config: {name!r} is not one of {known}")
    return path


def accelerate_file(path: Path) -> dict:
    """An accelerate config file's settings; a one-line error naming it when it has no
    integer ``num_processes``."""
    settings = yaml.safe_load(path.read_text())
    if not isinstance(settings, dict) or not isinstance(settings.get("num_processes"), int):
        raise PgrpoError(f"{path}: no integer num_processes")
    return settings


def _file_processes(path: Path) -> int:
    return accelerate_file(path)["num_processes"]


def launch_plan(config: dict) -> tuple[str, int]:
    """(shell prefix, number of processes) of a training job under ``config``."""
    name = config["launch"]["accelerate_config"]
    if name is None:
        processes = config["train"]["num_processes"]
        return accelerate_shell_prefix(processes), processes
    path = accelerate_config_file(name)
    processes = _file_processes(path)
    # Relative to the working directory where it can be: the command (a Snakemake param)
    # then stays the same when the project is cloned elsewhere.
    shown = os.path.relpath(path) if path.is_relative_to(Path.cwd()) else str(path)
    return shlex.join([*LAUNCHER, "--config_file", shown]), processes


def check_gpus(launch: dict) -> None:
    """A one-line error when ``launch.accelerate_config`` names a GPU file whose processes
    need more GPUs than torch sees; none visible is allowed with ``launch.cpu_fallback``."""
    name = launch["accelerate_config"]
    if name is None:
        return  # train.num_processes: GPUs where there are, CPU processes otherwise
    needed = _file_processes(accelerate_config_file(name))
    import torch  # here, not at import: the workflow's parsing reads launch_plan

    visible = torch.cuda.device_count()
    if visible >= needed or (visible == 0 and launch["cpu_fallback"]):
        return
    devices = os.environ.get("CUDA_VISIBLE_DEVICES")
    devices = (
        "CUDA_VISIBLE_DEVICES unset" if devices is None else f"CUDA_VISIBLE_DEVICES={devices!r}"
    )
    seen = f"only {visible}" if visible else "none"
    hint = "; set launch.cpu_fallback: true to run on the CPU" if not visible else ""
    raise PgrpoError(
        f"launch.accelerate_config={name} asks for {needed} GPU{'s' * (needed > 1)} but torch "
        f"sees {seen} ({devices}){hint}"
    )


def make_accelerator(launch: dict | None = None):
    """The Accelerator of a training process (one process group over all launched ones);
    ``launch`` (the config's section) is checked with :func:`check_gpus` first."""
    import torch
    from accelerate import Accelerator

    if launch is not None:
        check_gpus(launch)
    return Accelerator(cpu=not torch.cuda.is_available())
