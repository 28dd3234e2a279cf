"""How training processes are started and joined, in one place for the workflow's training
rule, the training entry point and the multi-process tests.

* ``accelerate_command(n)``: the ``accelerate launch`` prefix. For n > 1 it passes
  ``--multi_gpu``, which on a GPU machine starts one process per GPU and on a CPU-only
  machine starts n CPU processes (``--cpu`` and MULTI_CPU config files were seen to start
  only one process with accelerate 1.15).
* ``make_accelerator()``: ``Accelerator(cpu=True)`` where no GPU is visible; without it,
  CPU processes started by ``--multi_gpu`` do not join one process group and each would
  silently train on its own slice of the data.
"""

from __future__ import annotations

import shlex

import torch


def accelerate_command(num_processes: int) -> list[str]:
    """``accelerate launch`` with ``num_processes`` processes on this machine."""
    args = ["accelerate", "launch", "--num_processes", str(num_processes), "--num_machines", "1"]
    args += ["--mixed_precision", "no", "--dynamo_backend", "no"]
    if num_processes > 1:
        args.append("--multi_gpu")
    return args


def accelerate_shell_prefix(num_processes: int) -> str:
    """:func:`accelerate_command` as one shell-quoted string (Snakemake shell commands)."""
    return shlex.join(accelerate_command(num_processes))


def make_accelerator():
    """The Accelerator of a training process (one process group over all launched ones)."""
    from accelerate import Accelerator

    return Accelerator(cpu=not torch.cuda.is_available())
