"""Run a `python -m pgrpo.<entry>` command the way the workflow does, and read its error."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def launch_argv(config: dict) -> list[str]:
    """The training rule's launch prefix under ``config`` (``python -m pgrpo.launch ARGS``,
    from :func:`pgrpo.distributed.launch_plan`) as an argument list for this interpreter."""
    from pgrpo.distributed import launch_plan

    prefix, _ = launch_plan(config)
    return [sys.executable, *shlex.split(prefix)[1:]]


def cli_env() -> dict:
    """This interpreter's bin on PATH; pgrpo imported from this checkout, like the tests."""
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def run_entry(
    module: str, *args: str, cwd: Path | None = None, timeout: int = 300, env: dict | None = None
):
    """``python -m <module> <args>`` (``env``: variables set besides the usual ones); returns
    the completed process (output captured)."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        env={**cli_env(), **(env or {})},
        cwd=cwd,
        timeout=timeout,
    )


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The single ``error: ...`` line of a run that failed on bad input (exit code 2)."""
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]
