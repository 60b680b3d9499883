"""What a benchmark result records about where it ran: the commit measured and the machine's
load, since the published figures come from a shared machine (docs/SCALE.md)."""

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def git_commit() -> str:
    """The commit measured, with ``+dirty`` when the library code differs from it (the
    benchmarks' own edits do not count: they change what is recorded, not what is measured)."""
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no", "--", *LIBRARY],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return head + ("+dirty" if dirty else "")


LIBRARY = ("recsys", "api", "cli")  # the code a benchmark measures; bench/ only records it


def library_code(commit: str) -> str:
    """What identifies the measured code of a result's ``commit`` (as ``git_commit`` wrote it,
    possibly followed by a note): the git trees of the library folders at that commit, so two
    commits that differ only in bench scripts or docs compare as the same code. The commit
    itself when git does not know it or it was dirty."""
    rev = commit.split()[0] if commit.strip() else commit
    if rev.endswith("+dirty"):
        return commit
    trees = subprocess.run(
        ["git", "rev-parse", *(f"{rev}:{d}" for d in LIBRARY)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    return trees.stdout.strip() if trees.returncode == 0 else commit


def load_average() -> list[float]:
    """1-, 5- and 15-minute load averages (2 cores here)."""
    return [round(x, 2) for x in os.getloadavg()]
