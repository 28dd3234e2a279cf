"""The results' manifest: checksums, versions, commit and time of the run that wrote them."""

from __future__ import annotations

import hashlib
import json
import os
import time

import pytest
import yaml
from entrypoints import one_error_line, run_entry

from pgrpo.manifest import (
    checksums,
    invocation_times,
    rule_seconds,
    write_end_stamp,
    write_start_stamp,
)


def test_checksums_cover_files_and_every_file_of_a_folder(tmp_path):
    (tmp_path / "raw" / "sub").mkdir(parents=True)
    (tmp_path / "raw" / "a.txt").write_text("a")
    (tmp_path / "raw" / "sub" / "b.txt").write_text("b")
    (tmp_path / "raw" / ".snakemake_timestamp").write_text("")  # Snakemake's, not data
    single = tmp_path / "c.txt"
    single.write_text("c")
    sums = checksums([str(tmp_path / "raw"), str(single)])
    assert sums == {
        str(tmp_path / "raw" / "a.txt"): hashlib.sha256(b"a").hexdigest(),
        str(tmp_path / "raw" / "sub" / "b.txt"): hashlib.sha256(b"b").hexdigest(),
        str(single): hashlib.sha256(b"c").hexdigest(),
    }


def test_rule_seconds_sum_every_benchmark_file(tmp_path):
    header = "s\th:m:s\tmax_rss\n"
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "a.tsv").write_text(header + "12.5\t0:00:12\t100\n")
    (tmp_path / "b.tsv").write_text(header + "7.5\t0:00:07\t50\n")
    assert rule_seconds(tmp_path) == {"rules_seconds_total": 20.0, "rules_measured": 2}


@pytest.mark.slow
def test_the_manifest_records_commit_config_data_versions_and_wall_time(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"seeds": 2}))
    data = tmp_path / "data.jsonl"
    data.write_text("{}\n")
    result = tmp_path / "table.csv"
    result.write_text("task\n")
    stamp = tmp_path / "started.json"
    write_start_stamp(stamp)
    time.sleep(0.2)
    out = tmp_path / "manifest.json"
    done = run_entry("pgrpo.manifest", "--config", str(config), "--started", str(stamp),
                     "--data", str(data), "--results", str(result), "--out", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    manifest = json.loads(out.read_text())
    assert len(manifest["git"]["commit"]) == 40 and manifest["git"]["dirty"] in (True, False)
    assert manifest["config"]["seeds"] == 2 and len(manifest["config_hash"]) == 12
    assert manifest["data"] == {str(data): hashlib.sha256(b"{}\n").hexdigest()}
    assert manifest["results"][str(result)] == hashlib.sha256(b"task\n").hexdigest()
    assert manifest["versions"]["torch"] and manifest["versions"]["snakemake"]
    assert 0.2 <= manifest["time"]["wall_seconds"] < 60


def test_missing_data_is_one_error_line_and_no_manifest(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("{}\n")
    out = tmp_path / "manifest.json"
    gone = str(tmp_path / "gone.jsonl")
    done = run_entry("pgrpo.manifest", "--config", str(config), "--data", gone,
                     "--results", str(config), "--out", str(out))  # fmt: skip
    assert "gone.jsonl: no such file or folder" in one_error_line(done)
    assert not out.exists()


def test_a_resumed_run_sums_its_invocations_and_a_killed_one_ends_at_its_last_job(tmp_path):
    """Three invocations of one run: the first killed (no end stamp) after a job finished
    100 s in, then idle for an hour; the second ended by an error after 50 s; the third is
    the one writing the manifest. The wall time counts 100 + 50 + the third's own, not the
    hour in between; a success ends the run, and the next start begins a new one."""
    stamp = tmp_path / "started.json"
    t0 = time.time() - 4000
    runs = [{"epoch": t0, "started": "first"},
            {"epoch": t0 + 3700, "started": "second", "ended_epoch": t0 + 3750,
             "status": "error"},
            {"epoch": time.time() - 5, "started": "third"}]  # fmt: skip
    stamp.write_text(json.dumps({"invocations": runs}))
    bench = tmp_path / "benchmarks"
    for name, at in (("a", t0 + 40), ("b", t0 + 100), ("c", t0 + 3720)):
        path = bench / f"{name}.tsv"
        path.parent.mkdir(exist_ok=True)
        path.write_text("s\tmax_rss\n1.0\t10\n")
        os.utime(path, (at, at))
    times = invocation_times(stamp, bench)
    seconds = [r["seconds"] for r in times["invocations"]]
    assert seconds[:2] == [100.0, 50.0] and 4.5 <= seconds[2] < 60
    assert [r["ended"] for r in times["invocations"]] == ["stopped", "error", "running"]
    assert times["wall_seconds"] == pytest.approx(sum(seconds), abs=0.2)
    assert times["started"] == "first"
    write_end_stamp(stamp, "success")
    write_start_stamp(stamp)  # after a success: a new run of one invocation
    assert [r["started"] for r in json.loads(stamp.read_text())["invocations"]] != ["first"]
    assert len(json.loads(stamp.read_text())["invocations"]) == 1
    write_end_stamp(stamp, "error")
    write_start_stamp(stamp)  # after an error: the same run, resumed
    assert len(json.loads(stamp.read_text())["invocations"]) == 2
    # The finished run is kept as an earlier run, with the times it had.
    later = invocation_times(stamp, bench)
    assert len(later["invocations"]) == 2 and later["started"] != "first"
    (kept,) = later["earlier_runs"]
    assert kept["started"] == "first" and [r["seconds"] for r in kept["invocations"]][:2] == [
        100.0, 50.0]  # fmt: skip
    assert [r["ended"] for r in kept["invocations"]] == ["stopped", "error", "success"]
    assert kept["wall_seconds"] >= times["wall_seconds"] - 0.2
    write_end_stamp(stamp, "success")
    write_start_stamp(stamp)  # a third run: two earlier ones, oldest first
    assert [run["started"] for run in invocation_times(stamp, bench)["earlier_runs"]][0] == "first"
    assert len(invocation_times(stamp, bench)["earlier_runs"]) == 2


def test_a_start_stamp_of_before_invocations_were_listed_is_one_invocation(tmp_path):
    stamp = tmp_path / "started.json"
    stamp.write_text(json.dumps({"epoch": time.time() - 30, "started": "old"}))
    times = invocation_times(stamp, None)
    assert times["started"] == "old" and 29 < times["wall_seconds"] < 90
    assert [r["ended"] for r in times["invocations"]] == ["running"]
