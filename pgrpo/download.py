"""Entry point: download a file, verify its pinned sha256, extract it (zip) atomically.

Used for the paper-scale datasets (MovieLens-1M zip, Goodreads JSON lines); the offline
default never downloads anything. Nothing is written unless the checksum matches.

    python -m pgrpo.download --url URL --sha256 HEX --out DIR      # a zip, extracted
    python -m pgrpo.download --url URL --sha256 HEX --file --out F # a file, kept as it is
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from pgrpo.io import PgrpoError, atomic_path, run_cli, sha256_of

# Pinned sources: name -> (url, sha256, size in bytes, folder inside the archive). The ml-1m
# checksum is the one TensorFlow Datasets records for this URL (not verified here: no internet).
SOURCES = {
    "ml-1m": (
        "https://files.grouplens.org/datasets/movielens/ml-1m.zip",
        "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
        5917549,
        "ml-1m",
    ),
}


def _download(url: str, sha256: str, into: Path, timeout: float) -> None:
    """``url`` -> ``into``; PgrpoError unless its sha256 is the pinned one."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(into, "wb") as f:
            shutil.copyfileobj(response, f)
    except (OSError, ValueError) as e:
        raise PgrpoError(f"{url}: download failed ({e})") from None
    actual = sha256_of(into)
    if actual != sha256.lower():
        raise PgrpoError(f"{url}: sha256 is {actual}, expected the pinned {sha256}")


def fetch_file(url: str, sha256: str, out: str | Path, timeout=60) -> None:
    """Download ``url`` to the file ``out`` (atomically), if its sha256 is ``sha256``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        _download(url, sha256, Path(tmp), timeout)


def fetch(url: str, sha256: str, out_dir: str | Path, inner: str | None = None, timeout=60):
    """Download ``url``, check ``sha256``, extract the zip (its folder ``inner``) to ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir.parent, prefix=f".{out_dir.name}.") as work:
        archive = Path(work) / "archive.zip"
        _download(url, sha256, archive, timeout)
        extracted = Path(work) / "extracted"
        try:
            with zipfile.ZipFile(archive) as z:
                z.extractall(extracted)
        except zipfile.BadZipFile:
            raise PgrpoError(f"{url}: not a valid zip archive") from None
        source = extracted / inner if inner else extracted
        if not source.is_dir():
            raise PgrpoError(f"{url}: the archive has no folder {inner!r}")
        with atomic_path(out_dir, is_dir=True) as tmp:
            # tmp is an existing empty folder: move the archive folder's contents into it
            # (moving the folder itself would nest it, e.g. ml-1m/ml-1m/ratings.dat)
            for child in source.iterdir():
                shutil.move(str(child), tmp)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", choices=sorted(SOURCES), help="a pinned source by name")
    parser.add_argument("--url")
    parser.add_argument("--sha256")
    parser.add_argument("--inner", default=None, help="folder inside the archive to keep")
    parser.add_argument("--file", action="store_true", help="keep the download as one file")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if args.source:
        url, sha256, _, inner = SOURCES[args.source]
    elif args.url and args.sha256:
        url, sha256, inner = args.url, args.sha256, args.inner
    elif args.url:
        raise PgrpoError(
            f"download: no pinned sha256 for {args.url} (set reviews.sha256 in the config to "
            "the file's checksum; nothing is downloaded unverified)"
        )
    else:
        raise PgrpoError("download: give --source, or both --url and --sha256")
    if args.file:
        fetch_file(url, sha256, args.out)
    else:
        fetch(url, sha256, args.out, inner)


if __name__ == "__main__":
    run_cli(main)
