"""Layout of ``ARTIFACTS/<build_version>/``: written by the offline job, read by the API."""

import json
from pathlib import Path
from typing import Any

from recsys.errors import ArtifactError

MANIFEST = "manifest.json"
RANKER_FILE = "ranker.txt"
REDIS_DIR = "redis"  # data dir of the embedded Redis server (dump.rdb)


def read_manifest(build_dir: Path) -> dict[str, Any]:
    path = build_dir / MANIFEST
    if not path.is_file():
        raise ArtifactError(f"{build_dir}: no {MANIFEST}; not a complete build")
    manifest: dict[str, Any] = json.loads(path.read_text())
    return manifest


def write_manifest(build_dir: Path, manifest: dict[str, Any]) -> None:
    tmp = build_dir / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest, indent=2))
    tmp.replace(build_dir / MANIFEST)
