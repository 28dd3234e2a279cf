"""The results' manifest: checksums, versions, commit and time of the run that wrote them."""

from __future__ import annotations

import hashlib
import json
import time

import pytest
import yaml
from entrypoints import one_error_line, run_entry

from pgrpo.manifest import checksums, rule_seconds, write_start_stamp


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
