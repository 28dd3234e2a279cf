"""Entry point: ``python -m pgrpo.launch ARGS`` is ``accelerate launch ARGS`` whose failure is
the training's own: the training's exit status, and no launcher traceback or log after the
training's one-line error; a process killed by a signal gets one line naming it. The launch
prefix and process count of a training job come from :mod:`pgrpo.distributed`.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys


def exit_status(code: int, who: str) -> int:
    """The launcher's exit status for a training process that ended with ``code``: the same
    status, or for a process killed by a signal (negative ``code``) one line on stderr naming
    the signal and the shell's status for it, 128 + the signal number."""
    if code >= 0:
        return code
    name = signal.Signals(-code).name if -code in signal.valid_signals() else f"signal {-code}"
    print(f"error: {who} was killed by {name}", file=sys.stderr)
    return 128 - code


def main(argv: list[str] | None = None) -> None:
    """``accelerate launch`` with ``argv``. A training that fails has already said why (its
    one-line error, or its traceback): accelerate's own traceback and torch elastic's failure
    report would only bury that line, so they are replaced by the training's exit status."""
    from accelerate.commands.launch import launch_command, launch_command_parser
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    for name in list(logging.root.manager.loggerDict):
        if name.startswith("torch.distributed.elastic"):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    args = launch_command_parser().parse_args(argv)
    script = args.training_script
    try:
        launch_command(args)
    except subprocess.CalledProcessError as e:
        sys.exit(exit_status(e.returncode, script))
    except ChildFailedError as e:
        rank, failure = e.get_first_failure()
        sys.exit(exit_status(failure.exitcode, f"{script} (rank {rank})"))


if __name__ == "__main__":
    main()
