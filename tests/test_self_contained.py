"""The project speaks only of itself: no tracked file points at a place outside the
repository (an absolute path of a home, work or temporary folder) or at documents that are
not in it, and none talks about the machines it was developed on."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# A path rooted in a home, work, temporary or mount folder: someone's machine, not the project.
ABSOLUTE = re.compile(r"(?<![A-Za-z0-9_.~-])/(?:work|home|root|tmp|Users|mnt)(?:/|\b)")
# Documents that lived beside the repository, never in it.
OUTSIDE = re.compile(r"METHOD\.md|ENVIRONMENT\.md|STYLE\.md|ARCHITECTURE\.md|"
                     r"paper-abstract-and-figures|\.\./shared|\.library")  # fmt: skip
# How the project was developed is not the project's business.
DEVELOPMENT = re.compile(r"(?i)our (?:development )?machines?|development machines?|"
                         r"working session|could not download the file here")  # fmt: skip
BINARY = {".png", ".svg", ".gz", ".parquet", ".npz", ".safetensors", ".pdf", ".zip"}


def tracked_text_files() -> list[Path]:
    names = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split("\n")  # fmt: skip
    files = [ROOT / n for n in names if n and Path(n).suffix not in BINARY]
    return [f for f in files if f.is_file() and f.name != ".gitignore" and f != Path(__file__)]


def offending_lines(pattern: re.Pattern) -> list[str]:
    hits = []
    for path in tracked_text_files():
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            if pattern.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:120]}")
    return hits


def test_no_absolute_path_of_someone_s_machine():
    assert offending_lines(ABSOLUTE) == []


def test_no_reference_to_documents_outside_the_repository():
    assert offending_lines(OUTSIDE) == []


def test_no_word_about_the_machines_it_was_developed_on():
    assert offending_lines(DEVELOPMENT) == []


def test_the_patterns_catch_what_they_are_for():
    assert ABSOLUTE.search("see /work/shared/notes") and ABSOLUTE.search("--basetemp=/tmp/pt")
    assert not ABSOLUTE.search("open('/proc/cpuinfo')") and not ABSOLUTE.search("a/tmp/b")
    assert OUTSIDE.search("(METHOD.md, section 2)") and not OUTSIDE.search("docs/method.md")
    assert DEVELOPMENT.search("none on our machines")
