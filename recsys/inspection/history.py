"""The history of builds: one JSON line per published build in ``ARTIFACTS/build-history.jsonl``.

Build folders are garbage-collected past ``keep_builds`` (two by default), and their manifests
with them; the history keeps each build's summary (sizes, timings, ranker validation NDCG,
feature importance) for the dashboard's Builds page. A line is appended after the publish with
one ``write`` on a file opened for appending, which Linux keeps whole between concurrent
writers of such small lines; a line that does not parse (a crash mid-write) is skipped.

The file is bounded (issue 16): past ``inspection.history_entries`` lines, the appending build
rewrites it with the last of them, into a temporary file renamed over the old one, so a reader
sees the old file or the new one, never half of one. Appending and trimming hold an exclusive
lock on a lock file next to it: two builds finishing together neither trim away each other's
line nor rename over it.
"""

import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from pydantic import ValidationError

from recsys.artifacts import BuildManifest, CandidateSummary, DataSummary, RankerSummary
from recsys.experiment import DEFAULT_BUILD_NAME
from recsys.records import Record

log = logging.getLogger(__name__)

HISTORY_FILE: Final = "build-history.jsonl"
LOCK_FILE: Final = ".build-history.lock"
READ_TAIL_BYTES: Final = 4 << 20  # ~1,000 builds: what the page reads at most


class BuildHistoryEntry(Record):
    key_prefix: str
    build_version: str
    created_at: str
    data: DataSummary
    candidates: CandidateSummary
    ranker: RankerSummary
    timings_s: dict[str, float]
    peak_rss_mb: dict[str, float]
    artifact_bytes: int
    """The build folder on disk: ranker, item table, inspection tables, manifest."""
    line: str = DEFAULT_BUILD_NAME
    """Its build line (``recsys build --name``); lines written before lines had names: the
    champion's."""

    @classmethod
    def of(cls, manifest: BuildManifest, key_prefix: str, build_dir: Path) -> "BuildHistoryEntry":
        return cls(
            key_prefix=key_prefix,
            build_version=manifest.build_version,
            created_at=manifest.created_at,
            data=manifest.data,
            candidates=manifest.candidates,
            ranker=manifest.ranker,
            timings_s=manifest.timings_s,
            peak_rss_mb=manifest.peak_rss_mb,
            artifact_bytes=folder_bytes(build_dir),
            line=manifest.name,
        )


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def append_history(root: Path, entry: BuildHistoryEntry, keep: int) -> None:
    """Appends ``entry``, then keeps the last ``keep`` lines of the file
    (``inspection.history_entries``)."""
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    line = (json.dumps(entry.to_json_dict(), separators=(",", ":")) + "\n").encode()
    path = root / HISTORY_FILE
    with _locked(root / LOCK_FILE):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
        trim_history(path, keep)


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    fd = os.open(lock_path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def trim_history(path: Path, keep: int) -> int:
    """Rewrites ``path`` with its last ``keep`` lines when it has more (atomically: a temporary
    file in the same folder, synced, renamed over it); returns the lines dropped."""
    raw = path.read_bytes()
    lines = raw.splitlines(keepends=True)
    if len(lines) <= keep:
        return 0
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as f:
            f.write(b"".join(lines[-keep:]))
            f.flush()
            os.fsync(f.fileno())
        tmp.chmod(0o644)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return len(lines) - keep


def read_history(root: Path, key_prefix: str, limit: int = 100) -> list[BuildHistoryEntry]:
    """The last ``limit`` builds of ``key_prefix``, newest first."""
    path = root / HISTORY_FILE
    try:
        with path.open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - READ_TAIL_BYTES))
            raw = f.read()
    except FileNotFoundError:
        return []
    entries = []
    for line in reversed(raw.splitlines()):
        try:
            entry = BuildHistoryEntry.model_validate(json.loads(line))
        except (ValueError, ValidationError):
            continue  # a torn line, or the partial first line of the tail
        if entry.key_prefix == key_prefix:
            entries.append(entry)
            if len(entries) == limit:
                break
    return entries
