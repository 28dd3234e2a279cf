"""Training checkpoints: a run killed or preempted at any step resumes exactly where it was.

Every ``train.checkpoint_every`` steps (and once more on SIGTERM) training writes

    <out>/checkpoints/step-<next step, 6 digits>/
        rng-rank<r>.pt   process r's random states (python, numpy, torch CPU, CUDA)
        state.pt         adapter, optimiser, P-GRPO cluster statistics, next step, the metrics
                         of the finished steps, the MLflow run id and the run's fingerprint

Every process writes its file into the hidden ``<out>/checkpoints/.step-<n>.tmp/``; once all
have, the main process adds ``state.pt`` and renames the folder to ``step-<n>``, and only
then removes the older folders. A ``step-*`` folder is therefore always complete, and the
previous one survives any failure of the save. A write that runs out of room (full disk,
quota, file size limit) stops training with one line naming the file (``<out>/checkpoints/
.step-<n>.tmp/state.pt: could not write the checkpoint (No space left on device)``, exit
code 2) and removes the temporary folder; each file is serialised in memory first, so the
error is the file system's, not torch's stream error.

A new ``pgrpo.train`` on the same ``--out`` continues from the newest complete folder when its
fingerprint (method, seed, config hash, data, clusters, model, processes) matches, else it
warns and starts over. An unfinished save (a temporary folder, or a ``step-*`` folder without
``state.pt``) is never resumed: it is reported in a warning and removed. The checkpoints are
removed once the adapter and metrics are written.

Files hold tensors and plain values only and are read with ``torch.load(weights_only=True)``.
``--out`` must be on a file system every process sees (one machine, or shared storage).
"""

from __future__ import annotations

import io
import os
import random
import shutil
import signal
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from pgrpo.config import config_hash
from pgrpo.io import PgrpoError, sha256_of, write_failures

FOLDER = "checkpoints"


def rng_state() -> dict:
    """This process's random states as tensors and plain values."""
    numpy = np.random.get_state(legacy=False)
    numpy["state"]["key"] = numpy["state"]["key"].tolist()
    state = {"python": random.getstate(), "numpy": numpy, "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    numpy = dict(state["numpy"], state=dict(state["numpy"]["state"]))
    numpy["state"]["key"] = np.asarray(numpy["state"]["key"], dtype=np.uint32)
    np.random.set_state(numpy)
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class Resumed:
    """What a resumed run continues with (``next_step`` 0 and nothing else: a fresh run)."""

    next_step: int = 0
    history: list[dict] = field(default_factory=list)
    mlflow_run_id: str | None = None
    folder: Path | None = None


def latest(out: str | Path) -> Path | None:
    """The newest complete checkpoint folder under ``out``, or None."""
    root = Path(out) / FOLDER
    done = sorted(p for p in root.glob("step-*") if (p / "state.pt").is_file())
    return done[-1] if done else None


def unfinished(out: str | Path) -> dict[Path, str]:
    """The folders under ``out`` that an interrupted save left, each with what it lacks."""
    root = Path(out) / FOLDER
    found = {p: "an unfinished save" for p in root.glob(".step-*.tmp")}
    found.update({p: "no state.pt" for p in root.glob("step-*") if not (p / "state.pt").is_file()})
    return dict(sorted(found.items()))


def _write(obj, path: Path) -> None:
    """``torch.save(obj)`` to ``path``, serialised in memory first: a full disk is then an
    OSError of the file system (one line naming ``path``), not torch's stream error."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with write_failures(path, " the checkpoint"):
        path.write_bytes(buffer.getbuffer())


def save(trainer, out, next_step: int, history: list[dict], run_id, fingerprint: dict) -> Path:
    """Write a checkpoint of every process (a collective call: all processes call it) into a
    temporary folder, renamed to ``step-<next_step>`` once complete; the temporary folder is
    removed when a write fails."""
    acc = trainer.accelerator
    folder = Path(out) / FOLDER / f"step-{next_step:06d}"
    tmp = folder.with_name(f".{folder.name}.tmp")
    try:
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)  # left by a save killed at this very step
            with write_failures(tmp, " the checkpoint"):
                tmp.mkdir(parents=True)
        acc.wait_for_everyone()
        _write(rng_state(), tmp / f"rng-rank{acc.process_index}.pt")
        acc.wait_for_everyone()
        trainer_state = trainer.state_dict(next_step)  # collective when the model is sharded
        if acc.is_main_process:
            state = {
                "trainer": trainer_state,
                "history": history,
                "mlflow_run_id": run_id,
                "fingerprint": fingerprint,
                "processes": acc.num_processes,
            }
            _write(state, tmp / "state.pt")
            _publish(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    acc.wait_for_everyone()
    return folder


def _publish(tmp: Path, folder: Path) -> None:
    """Rename the complete ``tmp`` to ``folder``, then remove every other checkpoint folder."""
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    for old in folder.parent.iterdir():
        if old != folder:
            shutil.rmtree(old, ignore_errors=True)


def _drop_unfinished(out, accelerator) -> None:
    """Warn about (main process) and remove the folders of interrupted saves under ``out``."""
    if not accelerator.is_main_process:
        return
    for folder, lacking in unfinished(out).items():
        warnings.warn(f"{folder}: incomplete checkpoint ({lacking}), ignored and removed",
                      stacklevel=3)  # fmt: skip
        shutil.rmtree(folder, ignore_errors=True)


def resume(trainer, out, fingerprint: dict) -> Resumed:
    """Restore the newest matching checkpoint under ``out`` into ``trainer`` and this
    process's random states; a fresh :class:`Resumed` when there is none. Unfinished saves
    are never resumed from: they are reported and removed."""
    acc = trainer.accelerator
    folder = latest(out)
    _drop_unfinished(out, acc)  # folders latest() passes over
    if folder is None:
        return Resumed()
    try:
        state = torch.load(folder / "state.pt", map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - a damaged file is reported as such, in one line
        raise PgrpoError(
            f"{folder / 'state.pt'}: unreadable checkpoint ({type(e).__name__}); delete "
            f"{folder} to start over"
        ) from None
    changed = sorted(
        k for k in fingerprint.keys() | state["fingerprint"].keys()
        if fingerprint.get(k) != state["fingerprint"].get(k)
    )  # fmt: skip
    if state["processes"] != acc.num_processes:
        changed.append("processes")
    if state["trainer"].get("sharded", False) != trainer.sharded:
        changed.append("sharding")
    if changed:
        warnings.warn(
            f"{folder}: checkpoint of a different run ({', '.join(changed)} changed); "
            "starting from step 0",
            stacklevel=2,
        )
        acc.wait_for_everyone()
        if acc.is_main_process:
            shutil.rmtree(folder.parent, ignore_errors=True)
        return Resumed()
    rng_file = folder / f"rng-rank{acc.process_index}.pt"
    next_step = trainer.load_state_dict(state["trainer"])
    set_rng_state(torch.load(rng_file, map_location="cpu", weights_only=True))
    return Resumed(next_step, state["history"], state["mlflow_run_id"], folder)


def remove(out) -> None:
    """Delete the checkpoints of a finished run."""
    shutil.rmtree(Path(out) / FOLDER, ignore_errors=True)


class StopRequest:
    """Turns SIGTERM (SLURM preemption, ``scancel``, a cluster's time limit) into a request
    to checkpoint and stop at the end of the current step."""

    def __init__(self):
        self.signal: int | None = None
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame) -> None:
        self.signal = signum

    def agreed(self, accelerator) -> bool:
        """True on every process when any process was asked to stop."""
        asked = self.signal is not None
        if accelerator.num_processes == 1:
            return asked
        flag = torch.tensor(float(asked), device=accelerator.device)
        return bool(accelerator.reduce(flag, "max").item())


# Settings that change how training runs, not what it computes: a checkpoint survives them
# (the validation scores read the policy, they do not change it).
OPERATIONAL = ("threads", "log_every", "checkpoint_every", "eval_every", "eval_prompts")


def run_fingerprint(config: dict, tags: dict, reward_model: str | None = None) -> dict:
    """What identifies a training run; a checkpoint is resumed only when it is unchanged:
    method, seed, data, clusters, reward model and every setting it trains with (the number
    of processes is checked by :func:`resume` itself)."""
    train = {k: v for k, v in config["train"].items() if k not in OPERATIONAL}
    settings = {"train": train, "lora": config["lora"], "model": config["model"],
                "seed": config["seed"], "task": config.get(tags["task"])}  # fmt: skip
    keys = ("task", "method", "seed", "data_sha256", "clusters_sha256")
    fingerprint = {k: str(tags[k]) for k in keys}
    fingerprint["settings"] = config_hash(settings)
    if reward_model:
        fingerprint["reward_model"] = sha256_of(reward_model)
    return fingerprint
