"""The Builds page: every build the history and the artifacts folder know, newest first, with
what it cost and what its ranker learned, and where it stands (current, served, on disk)."""

from collections.abc import Iterable
from pathlib import Path

from recsys.artifacts import (
    BuildManifest,
    CandidateSummary,
    DataSummary,
    owner_prefix,
    read_manifest,
)
from recsys.errors import ArtifactError
from recsys.inspection.history import BuildHistoryEntry
from recsys.records import Record
from recsys.versions import is_build_version


class RankerView(Record):
    label_split: str
    train_groups: int
    valid_groups: int
    rows: int
    best_iteration: int
    valid_ndcg_at_10: float
    feature_importance: dict[str, float]
    """Share of the total gain per feature, largest first."""


class BuildRow(Record):
    build_version: str
    created_at: str
    current: bool
    served: bool
    on_disk: bool
    data: DataSummary
    candidates: CandidateSummary
    ranker: RankerView
    timings_s: dict[str, float]
    peak_rss_mb: float | None
    build_s: float
    artifact_bytes: int
    redis_bytes: int
    """Candidates and history of every user in Redis (bytes per user x users)."""
    line: str
    """Its build line (``recsys build --name``)."""
    promotable: bool = False
    """The newest build of a line other than the champion's, not the champion's build."""


def importance_shares(gain: dict[str, float]) -> dict[str, float]:
    total = sum(gain.values()) or 1.0
    ordered = sorted(gain.items(), key=lambda kv: -kv[1])
    return {name: round(g / total, 5) for name, g in ordered}


def _row(
    entry: BuildHistoryEntry, current: str | None, served: set[str], on_disk: bool
) -> BuildRow:
    r = entry.ranker
    return BuildRow(
        build_version=entry.build_version,
        created_at=entry.created_at,
        current=entry.build_version == current,
        served=entry.build_version in served,
        on_disk=on_disk,
        data=entry.data,
        candidates=entry.candidates,
        ranker=RankerView(
            label_split=r.label_split,
            train_groups=r.train_groups,
            valid_groups=r.valid_groups,
            rows=r.rows,
            best_iteration=r.best_iteration,
            valid_ndcg_at_10=r.valid_ndcg_at_10,
            feature_importance=importance_shares(r.feature_importance_gain),
        ),
        timings_s=entry.timings_s,
        peak_rss_mb=max(entry.peak_rss_mb.values(), default=None),
        build_s=round(sum(entry.timings_s.values()), 3),
        artifact_bytes=entry.artifact_bytes,
        redis_bytes=round(entry.candidates.bytes_per_user * entry.candidates.users_written),
        line=entry.line,
    )


def builds_on_disk(root: Path, key_prefix: str) -> dict[str, BuildManifest]:
    """Published build folders of ``key_prefix`` in ``root``, by version."""
    out: dict[str, BuildManifest] = {}
    if not root.is_dir():
        return out
    for path in root.iterdir():
        if not (is_build_version(path.name) and path.is_dir()):
            continue
        if owner_prefix(path) != key_prefix:
            continue
        try:
            out[path.name] = read_manifest(path)
        except ArtifactError:
            continue  # being written, or broken: not a build to show
    return out


def build_rows(
    history: Iterable[BuildHistoryEntry],
    on_disk: dict[str, BuildManifest],
    root: Path,
    key_prefix: str,
    current: str | None,
    served: set[str],
) -> list[BuildRow]:
    """Rows of the history, plus builds on disk it does not have (from before the history
    existed), newest first."""
    rows = {e.build_version: _row(e, current, served, e.build_version in on_disk) for e in history}
    for version, manifest in on_disk.items():
        if version not in rows:
            entry = BuildHistoryEntry.of(manifest, key_prefix, root / version)
            rows[version] = _row(entry, current, served, True)
    return sorted(rows.values(), key=lambda r: r.build_version, reverse=True)
