"""Entry point: ``results/manifest.json``, what produced the results next to it.

Records the git commit (and whether tracked files other than the results differed from it),
the hash of the merged config, sha256 checksums of the data the run read (raw and prepared
files; folders file by file), the versions of Python and of the packages that compute results, the
machine, every result file's checksum, and time: the sum of all rules' measured run times
(their ``benchmark`` files) and the wall time of the run. A run is every invocation since the
last one that succeeded: one that fails or is killed is resumed by the next, so
``invocations`` lists each (its start, its seconds and how it ended) and ``wall_seconds`` is
their sum; the runs before it in the same outputs are ``earlier_runs``. The Snakefile's
``onstart`` handler records each start, ``onsuccess``/``onerror`` each end; a killed
invocation records none, and its time runs to its last finished job (the newest benchmark file
before the next start), so that the time it was stopped for does not count.

    python -m pgrpo.manifest --config outputs/configs/<sha256>.yaml \\
        --started outputs/run_started.json --data resources/movielens ... \\
        --benchmarks outputs/benchmarks --results results/tables/... --out results/manifest.json
"""

from __future__ import annotations

import argparse
import csv
import importlib.metadata
import json
import os
import platform
import subprocess
import time
from pathlib import Path

from pgrpo.config import config_hash, load_config
from pgrpo.io import PgrpoError, read_json, run_cli, sha256_of, write_json

PACKAGES = ("torch", "transformers", "accelerate", "peft", "scikit-learn", "numpy", "scipy",
            "snakemake", "mlflow", "dvc", "sentence-transformers", "pgrpo")  # fmt: skip


MARKER = ".snakemake_timestamp"


def checksums(paths: list[str]) -> dict[str, str]:
    """sha256 of each file; a folder contributes each file inside it (sorted), except
    Snakemake's empty marker of directory outputs (not data; DVC ignores it too)."""
    out = {}
    for item in paths:
        path = Path(item)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.name != MARKER)
        elif path.is_file():
            files = [path]
        else:
            raise PgrpoError(f"{path}: no such file or folder (data the manifest must checksum)")
        out.update({str(p): sha256_of(p) for p in files})
    return out


def git_state(root: Path, outputs: list[str] = ()) -> dict:
    """Commit of the repository at ``root`` and whether tracked files other than ``outputs``
    (the results this run writes) differ from it (None outside git)."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(root), *args], capture_output=True,
                                  text=True, timeout=30, check=True)  # fmt: skip
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip()

    commit = git("rev-parse", "HEAD")
    inside = [Path(p).resolve() for p in outputs if Path(p).resolve().is_relative_to(root)]
    exclude = [f":(exclude){p}" for p in inside]  # git refuses paths outside the repository
    status = git("status", "--porcelain", "--untracked-files=no", "--", str(root), *exclude)
    return {"commit": commit, "dirty": bool(status) if status is not None else None}


def versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def machine() -> dict:
    info = {"platform": platform.platform(), "processor": platform.machine(),
            "cpus": os.cpu_count()}  # fmt: skip
    try:
        import torch

        info["cuda"] = torch.cuda.is_available()
        if info["cuda"]:
            info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    return info


def read_benchmarks(folder: Path) -> list[tuple[str, float, float]]:
    """(job, wall seconds, peak RSS in MB) of every Snakemake benchmark file under ``folder``,
    in path order; the job is the file's path under ``folder`` without ``.tsv``. Files
    without a measurement (a job killed before it ended) are skipped."""
    rows = []
    for path in sorted(folder.rglob("*.tsv")) if folder.is_dir() else []:
        with open(path, newline="") as f:
            record = next(csv.DictReader(f, delimiter="\t"), None)
        if record is None:
            continue
        max_rss = record.get("max_rss", "NA")
        job = str(path.relative_to(folder).with_suffix(""))
        rows.append((job, float(record["s"]), float(max_rss) if max_rss != "NA" else 0.0))
    return rows


def rule_seconds(folder: Path) -> dict:
    """Sum and count of the wall times of every Snakemake benchmark file under ``folder``."""
    seconds = [s for _, s, _ in read_benchmarks(folder)]
    return {"rules_seconds_total": round(sum(seconds), 1), "rules_measured": len(seconds)}


def invocation_times(started: str | Path, benchmarks: str | Path | None) -> dict:
    """The run's invocations (:func:`write_start_stamp`) with their seconds, their sum
    ``wall_seconds`` and the first start; the last invocation (this one) runs to now. The
    runs that wrote into the same outputs before this one (each ended by a success) are
    ``earlier_runs``, oldest first, in the same form: a run that redraws one figure of a
    finished run keeps the record of the run that made the rest."""
    runs, earlier = _stamp(started)
    if not runs:
        raise PgrpoError(f"{started}: no invocation recorded")
    finished = sorted(
        path.stat().st_mtime for path in Path(benchmarks).rglob("*.tsv")
    ) if benchmarks and Path(benchmarks).is_dir() else []  # fmt: skip
    times = _run_times(runs, finished)
    if earlier:
        times["earlier_runs"] = [_run_times(run, finished) for run in earlier]
    return times


def _run_times(runs: list[dict], finished: list[float]) -> dict:
    now = time.time()
    listed = []
    for i, run in enumerate(runs):
        if "ended_epoch" in run:
            end, how = run["ended_epoch"], run["status"]
        elif i == len(runs) - 1:
            end, how = now, "running"
        else:  # killed: its last finished job before the next start
            before = [t for t in finished if run["epoch"] <= t < runs[i + 1]["epoch"]]
            end, how = (before[-1] if before else run["epoch"]), "stopped"
        listed.append({"started": run["started"], "seconds": round(end - run["epoch"], 1),
                       "ended": how})  # fmt: skip
    return {"started": runs[0]["started"], "invocations": listed,
            "wall_seconds": round(sum(r["seconds"] for r in listed), 1)}  # fmt: skip


def build(config_path: str, started: str | None, data: list[str], benchmarks: str | None,
          results: list[str], out: str | None = None) -> dict:  # fmt: skip
    config = load_config(config_path)
    timing: dict = {"finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if started:
        timing.update(invocation_times(started, benchmarks))
    if benchmarks:
        timing.update(rule_seconds(Path(benchmarks)))
    return {
        "git": git_state(Path(__file__).resolve().parents[1], [*results, *([out] if out else [])]),
        "config_hash": config_hash(config),
        "config": config,
        "data": checksums(data),
        "results": checksums(results),
        "versions": versions(),
        "machine": machine(),
        "time": timing,
    }


def _stamp(path: str | Path) -> tuple[list[dict], list[list[dict]]]:
    """(the invocations of the present run, those of each earlier run, oldest first) recorded
    in ``path``; a stamp of one start, as written before invocations were listed, is a run of
    one invocation."""
    if not Path(path).exists():
        return [], []
    stamp = read_json(path)
    runs = stamp["invocations"] if "invocations" in stamp else [stamp]
    return runs, stamp.get("earlier", [])


def _write_stamp(path: str | Path, runs: list[dict], earlier: list[list[dict]]) -> None:
    write_json(path, {"invocations": runs, **({"earlier": earlier} if earlier else {})})


def write_start_stamp(path: str | Path) -> None:
    """Called by the Snakefile's ``onstart``: this invocation started. It continues the run
    of the previous invocation unless that one succeeded: then a new run begins, and the
    finished one joins the earlier runs."""
    runs, earlier = _stamp(path)
    if runs and runs[-1].get("status") == "success":
        runs, earlier = [], [*earlier, runs]
    runs.append({"epoch": time.time(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    _write_stamp(path, runs, earlier)


def write_end_stamp(path: str | Path, status: str) -> None:
    """Called by the Snakefile's ``onsuccess`` (``success``) and ``onerror`` (``error``):
    how and when this invocation ended."""
    runs, earlier = _stamp(path)
    if runs and "ended_epoch" not in runs[-1]:
        runs[-1].update(ended_epoch=time.time(), status=status)
        _write_stamp(path, runs, earlier)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write the results' manifest.")
    parser.add_argument("--config", required=True)
    parser.add_argument("--started", help="start stamp JSON written by the Snakefile's onstart")
    parser.add_argument("--data", nargs="*", default=[], help="data files or folders read")
    parser.add_argument("--benchmarks", help="folder of Snakemake benchmark files")
    parser.add_argument("--results", nargs="+", required=True, help="the result files")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    manifest = build(args.config, args.started, args.data, args.benchmarks, args.results, args.out)
    write_json(args.out, manifest)
    summary = {k: manifest[k] for k in ("git", "config_hash")}
    print(json.dumps({**summary, "time": manifest["time"]}, indent=1))


if __name__ == "__main__":
    run_cli(main)
