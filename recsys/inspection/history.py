"""The history of builds: one JSON line per published build in ``ARTIFACTS/build-history.jsonl``.

Build folders are garbage-collected past ``keep_builds`` (two by default), and their manifests
with them; the history keeps each build's summary (sizes, timings, ranker validation NDCG,
feature importance) for the dashboard's Builds page. A line is appended after the publish with
one ``write`` on a file opened for appending, which Linux keeps whole between concurrent
writers of such small lines; a line that does not parse (a crash mid-write) is skipped.
"""

import json
import logging
import os
from pathlib import Path
from typing import Final

from pydantic import ValidationError

from recsys.artifacts import BuildManifest, CandidateSummary, DataSummary, RankerSummary
from recsys.experiment import DEFAULT_BUILD_NAME
from recsys.records import Record

log = logging.getLogger(__name__)

HISTORY_FILE: Final = "build-history.jsonl"
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


def append_history(root: Path, entry: BuildHistoryEntry) -> None:
    line = (json.dumps(entry.to_json_dict(), separators=(",", ":")) + "\n").encode()
    fd = os.open(root / HISTORY_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


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
