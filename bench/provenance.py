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
        ["git", "status", "--porcelain", "--untracked-files=no", "--", "recsys", "api", "cli"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return head + ("+dirty" if dirty else "")


def load_average() -> list[float]:
    """1-, 5- and 15-minute load averages (2 cores here)."""
    return [round(x, 2) for x in os.getloadavg()]
