"""Layout of ``ARTIFACTS/<build_version>/``, written by the offline job and read by the API, and
the build's manifest: what was built, from what, how, and how long each stage took."""

import json
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field, ValidationError, model_serializer
from pydantic.functional_serializers import SerializerFunctionWrapHandler

from recsys.errors import ArtifactError
from recsys.experiment import DEFAULT_BUILD_NAME
from recsys.inspection.records import InspectionSummary
from recsys.records import Record

MANIFEST = "manifest.json"
RANKER_FILE = "ranker.txt"
REDIS_DIR = "redis"  # data dir of the embedded Redis server (its AOF)
# Written first into a build's folder: which key prefix (build line) it belongs to, so garbage
# collection for one prefix never touches another's folders in a shared artifacts root.
OWNER_FILE = "owner.json"


class DataSummary(Record):
    users: int
    items: int
    events: int
    first_ts: int
    last_ts: int


class WorkerSummary(Record):
    """What one process of the per-user stage did: the build's own, or a Ray worker's."""

    worker: str  # host:pid
    shards: int
    users: int
    busy_s: float  # wall time inside its shards
    users_per_busy_s: float
    cpu_s: float  # CPU time of the process inside its shards (all its threads)
    cpu_us_per_user: float
    peak_rss_mb: float  # the process' peak while it ran a shard


class ShardingSummary(Record):
    """How the per-user stage ran: in the build's own process, or as shards on Ray."""

    engine: str  # "process", or "ray" (recsys build --ray-address)
    shards: int
    stage_s: dict[str, float]
    """Seconds in search, merge, encode and write, summed over the workers."""
    workers: list[WorkerSummary]


def _absent(value: object) -> bool:
    """Fields added later are left out of the JSON when a manifest does not have them, so an
    earlier build's manifest reads back and rewrites unchanged."""
    return value is None or value == {}


class CandidateSummary(Record):
    """What went to Redis, and how."""

    users_written: int
    bytes_per_user: float
    candidates_per_user: float
    users_per_s: float
    index: str  # the ALS item index actually used: "exact" or "hnsw"
    sharding: ShardingSummary | None = Field(None, exclude_if=_absent)


class RankerSummary(Record):
    """How the ranker was trained, and what it learned to rely on."""

    label_split: str  # "temporal" or "last-event"
    cut_ts: int | None
    label_users: int
    groups_with_label: int
    rows: int
    train_groups: int
    valid_groups: int
    best_iteration: int
    valid_ndcg_at_10: float = Field(alias="valid_ndcg@10")
    features: list[str]
    feature_importance_gain: dict[str, float]


class BuildManifest(Record):
    """``manifest.json``. Keys this version does not know (a newer or older writer's) are kept,
    so a manifest reads back and rewrites unchanged."""

    model_config = ConfigDict(extra="allow")

    build_version: str
    created_at: str
    data: DataSummary
    candidates: CandidateSummary
    ranker: RankerSummary
    config: dict[str, Any]
    """The settings that made the build (``Settings.model_dump``, without the Redis URL)."""
    timings_s: dict[str, float] = Field(default_factory=dict)
    cpu_s: dict[str, float] = Field(default_factory=dict, exclude_if=_absent)
    """CPU seconds of the build's process per stage (all threads; not its Ray workers')."""
    peak_rss_mb: dict[str, float] = Field(default_factory=dict)
    inspection: InspectionSummary | None = None
    """What the build saved for the dashboard (absent in builds from before it existed)."""

    @model_serializer(mode="wrap")
    def _without_absent_sections(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """An earlier build's manifest rewrites unchanged: no ``inspection: null`` added."""
        data: dict[str, Any] = handler(self)
        if data.get("inspection", ...) is None:
            del data["inspection"]
        return data

    @property
    def name(self) -> str:
        """The build line (``recsys build --name``); manifests without one are champions'."""
        return str((self.model_extra or {}).get("name", DEFAULT_BUILD_NAME))

    @property
    def history_len(self) -> int:
        """Events stored with each user: the API keeps the same number after new events."""
        return int(self.config["candidates"]["history_len"])


def read_manifest(build_dir: Path) -> BuildManifest:
    path = build_dir / MANIFEST
    if not path.is_file():
        raise ArtifactError(f"{build_dir}: no {MANIFEST}; not a complete build")
    try:
        return BuildManifest.model_validate(json.loads(path.read_text()))
    except (ValueError, ValidationError) as e:
        raise ArtifactError(f"{path}: not a readable build manifest: {e}") from e


def write_manifest(build_dir: Path, manifest: BuildManifest) -> None:
    tmp = build_dir / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest.to_json_dict(), indent=2))
    tmp.replace(build_dir / MANIFEST)


def write_owner(build_dir: Path, key_prefix: str) -> None:
    (build_dir / OWNER_FILE).write_text(json.dumps({"key_prefix": key_prefix}))


def owner_prefix(build_dir: Path) -> str | None:
    """The key prefix a build folder belongs to (its owner file, else its manifest's config);
    None when neither says."""
    for name, path in ((OWNER_FILE, ("key_prefix",)), (MANIFEST, ("config", "key_prefix"))):
        try:
            value: Any = json.loads((build_dir / name).read_text())
            for part in path:
                value = value[part]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if isinstance(value, str):
            return value
    return None
