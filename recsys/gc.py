"""Garbage collection of builds: what a killed build left behind, and builds nobody needs.

Run at the start of every build, after every publish, and by ``recsys gc``. It removes:

* **killed builds**: versions with keys in Redis, or folders in the artifacts root (final or
  ``.staging-*``), that are not published and whose in-progress marker is gone or dead. A build
  stopped by SIGKILL or the OOM killer left gigabytes of ``b:<version>:*`` keys and its staging
  folder, and nothing ever deleted them (issue 12);
* **retired builds**: published builds past ``keep_builds`` in their build line (the champion's,
  or a name given to ``recsys build --name``: each line keeps its own), once no serving worker
  reports holding them and they were superseded at least ``retire_grace_s`` ago. Deleting them
  at the flip, as before, pulled keys from under workers that had not swapped yet (cold start
  for everyone) or had failed to load the new build.

It never touches a build some line's pointer names (the current build, an A/B arm's, a promoted
challenger that is now the champion too), a live build in progress, a folder of another key
prefix,
or anything whose name is not a build version (a version read back is checked before it is used
as a path: ``ZADD <prefix>:builds 0 ../victim`` must not delete ``../victim``).
"""

import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from recsys.artifacts import owner_prefix
from recsys.config import Settings
from recsys.experiment import DEFAULT_BUILD_NAME
from recsys.store.builds import (
    builds_in_progress,
    redis_time,
    registered_builds,
    serving_versions,
    versions_with_keys,
)
from recsys.store.connect import SyncStore
from recsys.store.keys import Keys
from recsys.store.user_store import build_lines, delete_build, line_pointers
from recsys.versions import is_build_version, version_of_staging

log = logging.getLogger(__name__)


@dataclass
class GcReport:
    retired: list[str] = field(default_factory=list)  # published, past keep: removed
    kept: list[str] = field(default_factory=list)  # past keep, still held by a worker or in grace
    killed: list[str] = field(default_factory=list)  # never published, builder gone: removed
    folders: list[str] = field(default_factory=list)  # artifacts folders removed
    keys_deleted: int = 0

    def lines(self) -> list[str]:
        out = [f"removed build {v} (past keep_builds, no worker holds it)" for v in self.retired]
        out += [
            f"kept build {v}: a worker still holds it, or it was just superseded" for v in self.kept
        ]
        out += [f"removed build {v} (never published; its builder is gone)" for v in self.killed]
        out += [f"removed folder {name}" for name in self.folders]
        if self.keys_deleted:
            out.append(f"{self.keys_deleted} Redis keys deleted")
        return out or ["nothing to remove"]


# A staging folder that names no key prefix (left by a build from before owner files) could be
# anyone's: it is removed only once it is older than this (or the marker TTL, if longer).
UNOWNED_STAGING_MIN_AGE_S = 3600.0


def collect_for(client: SyncStore, artifacts_root: Path, settings: Settings) -> GcReport:
    """``collect_garbage`` with the settings' key prefix, keep_builds and grace period."""
    return collect_garbage(
        client,
        Keys(settings.key_prefix),
        artifacts_root,
        keep=settings.keep_builds,
        grace_s=settings.retire_grace_s,
        min_staging_age_s=max(settings.build_marker_ttl_s, UNOWNED_STAGING_MIN_AGE_S),
    )


def collect_garbage(
    client: SyncStore,
    keys: Keys,
    artifacts_root: Path,
    *,
    keep: int,
    grace_s: float,
    min_staging_age_s: float = UNOWNED_STAGING_MIN_AGE_S,
) -> GcReport:
    """Remove killed and retired builds of ``keys.prefix`` from Redis and ``artifacts_root``.

    ``min_staging_age_s``: a staging folder that names no key prefix (written before owner
    files existed) is removed only once it is this old.
    """
    report = GcReport()
    now = redis_time(client)
    live, dead = builds_in_progress(client, keys, now)
    if dead:
        client.hdel(keys.building, *dead)
    protected = live | set(line_pointers(client, keys).values())
    registry = registered_builds(client, keys)
    lines = build_lines(client, keys)
    held = serving_versions(client, keys, now)
    client.zremrangebyscore(keys.serving, "-inf", now)

    published = {v for v, _ in registry}
    by_line: dict[str, list[tuple[str, float]]] = {}
    for version, published_at in registry:  # newest first, within each line too
        by_line.setdefault(lines.get(version, DEFAULT_BUILD_NAME), []).append(
            (version, published_at)
        )
    for newest_first in by_line.values():
        for rank, (version, _) in enumerate(newest_first):
            if rank < keep or version in protected:
                continue
            superseded_at = newest_first[rank - keep][1]  # the publish that pushed it past keep
            if version in held or now - superseded_at < grace_s:
                report.kept.append(version)
                continue
            report.keys_deleted += delete_build(client, keys, version)
            published.discard(version)
            report.retired.append(version)

    for version in sorted(versions_with_keys(client, keys) - published - protected):
        report.keys_deleted += delete_build(client, keys, version)
        report.killed.append(version)

    report.folders = _remove_folders(
        artifacts_root, keys.prefix, published | protected, min_staging_age_s
    )
    for line in report.lines():
        log.info("gc %s: %s", keys.prefix, line)
    return report


def _remove_folders(
    root: Path, prefix: str, needed: set[str], min_staging_age_s: float
) -> list[str]:
    """Build folders of ``prefix`` (final or staging) whose version is not ``needed``."""
    if not root.is_dir():
        return []
    removed = []
    for path in sorted(root.iterdir()):
        if not path.is_dir() or path.is_symlink():
            continue
        staging_version = version_of_staging(path.name)
        version = staging_version or (path.name if is_build_version(path.name) else None)
        if version is None or version in needed:
            continue
        owner = owner_prefix(path)
        if owner is None:
            # a staging folder from before owner files: anyone's, so only once it is old
            old = time.time() - path.stat().st_mtime > min_staging_age_s
            if staging_version is None or not old:
                continue
        elif owner != prefix:
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path.name)
    return removed
