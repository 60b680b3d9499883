"""The offline job, stage by stage. Read top to bottom: this is the order things happen in.

1. index ids                      5. stage 1 on all events -> candidates -> Redis (new version)
2. hold out labels                6. artifacts/<version>/ (ranker, tables, fold-in, manifest)
3. stage 1 on history only        7. flip the Redis pointer to the new version, last
4. training set -> LambdaRank     8. remove builds nobody needs any more (``recsys.gc``)

Serving never sees a half-written build: keys of a new version are invisible until the pointer
flips, and a build that fails removes what it wrote. One that is killed (SIGKILL, the OOM
killer) cannot: its in-progress marker stops beating, and the next build, or ``recsys gc``,
removes its keys and staging folder (issue 12).
"""

import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from recsys.artifacts import (
    RANKER_FILE,
    BuildManifest,
    CandidateSummary,
    DataSummary,
    RankerSummary,
    write_manifest,
    write_owner,
)
from recsys.candidates.model import CandidateInputs, CandidateModel, fit_candidate_model
from recsys.columns import Columns
from recsys.config import Settings
from recsys.data.dataset import Dataset
from recsys.devices import device_vocabulary
from recsys.errors import BuildError
from recsys.events_index import IndexedEvents, index_events
from recsys.experiment import DEFAULT_BUILD_NAME, check_build_name
from recsys.features import FEATURE_NAMES
from recsys.gc import collect_for
from recsys.ids import IdIndex
from recsys.inspection.history import BuildHistoryEntry, append_history
from recsys.inspection.records import InspectionSummary
from recsys.inspection.reference import drift_reference
from recsys.inspection.tables import audience_sample, write_inspection
from recsys.progress import StageTimer
from recsys.ranking.labels import split_for_labels
from recsys.ranking.ranker import Ranker, TrainResult, train_ranker
from recsys.ranking.training_set import TrainingWindow, training_data
from recsys.serving import ServingModel
from recsys.shards import ShardReport, summarise, write_shard
from recsys.store.builds import BuildInProgress, check_eviction_policy
from recsys.store.codec import decode_user_state
from recsys.store.connect import SyncStore
from recsys.store.keys import Keys
from recsys.store.user_store import BuildWriter, read_states
from recsys.versions import new_build_version, staging_dir_name

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuildResult:
    version: str
    path: Path
    manifest: BuildManifest
    users: IdIndex
    candidate_model: CandidateModel
    """Stage 1 fitted on all events: what the build's Redis states hold."""
    training_window: TrainingWindow | None = None
    """Kept when ``run_build(keep_training_window=True)``; None otherwise, so that a production
    build does not hold two stage-1 fits in memory at once."""


__all__ = ["BuildResult", "new_build_version", "run_build"]


def train_stage2(
    dataset: Dataset,
    item_ids: IdIndex,
    devices: list[str],
    settings: Settings,
    timer: StageTimer,
) -> tuple[TrainResult, RankerSummary, TrainingWindow]:
    """Train the ranker on requests as of a label cut; also returns what it learned from (whose
    item factors warm-start stage 1 on all events)."""
    with timer.stage("hold out labels"):
        split = split_for_labels(dataset.interactions, settings.ranker)
        if split.labels.height == 0:
            raise BuildError(
                "no label events: every user has fewer than 2 events, cannot train a ranker"
            )
    requests, training, window = training_data(
        split, dataset.items, item_ids, devices, settings, timer
    )
    if len(training.group_sizes) < 2:
        raise BuildError(
            f"only {len(training.group_sizes)} requests have a label among their candidates; "
            "need more users or more events to train a ranker"
        )
    with timer.stage("train ranker"):
        result = train_ranker(training, settings.ranker)
    info = RankerSummary(  # the JSON keys keep the model's field order
        label_split=split.mode,
        cut_ts=split.cut_ts,
        label_users=len(requests.users),
        groups_with_label=len(training.group_sizes),
        best_iteration=result.best_iteration,
        valid_ndcg_at_10=round(result.valid_ndcg_at_10, 5),
        rows=result.n_rows,
        features=list(FEATURE_NAMES),
        train_groups=result.n_train_groups,
        feature_importance_gain=Ranker(result.booster).feature_importance(),
        valid_groups=result.n_valid_groups,
    )
    log.info(
        "ranker: %s groups, valid NDCG@10 %.4f at %d trees",
        info.train_groups,
        result.valid_ndcg_at_10,
        result.best_iteration,
    )
    return result, info, window


def write_candidates(
    writer: BuildWriter, model: CandidateModel, users: IdIndex, settings: Settings
) -> CandidateSummary:
    """Every user's state into Redis under the writer's build version: in this process, or as
    shards on Ray when ``settings.ray.address`` is set (same batches, so the same bytes)."""
    inputs = model.candidate_inputs(settings)
    batches = inputs.batches(np.arange(len(users), dtype=np.int32))
    user_keys = users.keys()
    start = time.perf_counter()
    with tqdm(total=len(users), unit="user", desc="candidates -> redis", leave=False) as bar:
        if settings.ray.address is None:
            ordered_keys = [user_keys[u] for b in batches for u in b]
            reports = [write_shard(0, inputs, batches, ordered_keys, writer, bar.update)]
        else:
            reports = _write_on_ray(writer, inputs, batches, user_keys, settings, bar.update)
    written = sum(r.users for r in reports)
    if written != len(users):  # every shard reported: their counts must add up to everyone
        raise BuildError(f"shards wrote {written} users of {len(users)}; not publishing")
    engine = "ray" if settings.ray.address else "process"
    return summarise(reports, time.perf_counter() - start, model.item_index.kind, engine)


def _write_on_ray(
    writer: BuildWriter,
    inputs: CandidateInputs,
    batches: list[np.ndarray],
    user_keys: list[str],
    settings: Settings,
    on_written: Callable[[int], object],
) -> list[ShardReport]:
    from recsys.scale.ray_build import write_candidates_on_ray

    if not settings.redis_url:
        raise BuildError("a build on Ray needs a Redis URL its workers can reach (--redis-url)")
    return write_candidates_on_ray(
        inputs,
        batches,
        user_keys,
        settings.redis_url,
        settings.redis_client,
        writer.keys,
        writer.build_version,
        settings.ray,
        on_written,
    )


def _inspect(
    client: SyncStore,
    directory: Path,
    version: str,
    model: CandidateModel,
    ranker: Ranker,
    events: IndexedEvents,
    dataset: Dataset,
    users: IdIndex,
    settings: Settings,
) -> InspectionSummary:
    """The dashboard's tables (``recsys.inspection.tables``)."""
    serving = ServingModel(
        version,
        model.items,
        ranker,
        settings.candidates.history_len,
        settings.candidates,
        model.sources,
        model.fold_in,
    )
    user_keys = users.keys()
    sample = [user_keys[u] for u in audience_sample(len(users), settings).tolist()]
    blobs = read_states(client, Keys(settings.key_prefix), version, sample)
    states = [decode_user_state(b) if b is not None else None for b in blobs]
    tables, files = write_inspection(
        directory, model, serving, events.item, events.ts, dataset.items, (sample, states), settings
    )
    cfg = settings.inspection
    return InspectionSummary(
        files=[f.name for f in files],
        bytes=sum(f.stat().st_size for f in files),
        seconds=0.0,  # set once the stages' time is known
        activity_bucket_s=tables.activity.bucket_s,
        activity_start_ts=tables.activity.start_ts,
        activity_buckets=tables.activity.n_buckets,
        neighbours={name: t.ids.shape[1] for name, t in tables.neighbours.items()},
        audience_users=len(tables.audience.users) if tables.audience else 0,
        audience_k=cfg.audience_k,
    )


def run_build(
    dataset: Dataset,
    artifacts_root: Path,
    client: SyncStore,
    settings: Settings,
    keep_training_window: bool = False,
    name: str = DEFAULT_BUILD_NAME,
) -> BuildResult:
    """Build and publish as the newest build of the line ``name`` (``recsys build --name``);
    garbage collection keeps ``keep_builds`` of each line (``recsys.gc``)."""
    try:
        check_build_name(name)
    except ValueError as e:
        raise BuildError(str(e)) from None
    timer = StageTimer("build")
    version = new_build_version()
    keys = Keys(settings.key_prefix)
    check_eviction_policy(client)
    with BuildInProgress(client, keys, version, settings.build_marker_ttl_s):
        return _build_in_progress(
            dataset, artifacts_root, client, settings, version, timer, keep_training_window, name
        )


def _build_in_progress(
    dataset: Dataset,
    artifacts_root: Path,
    client: SyncStore,
    settings: Settings,
    version: str,
    timer: StageTimer,
    keep_training_window: bool,
    name: str,
) -> BuildResult:
    keys = Keys(settings.key_prefix)
    writer = BuildWriter(client, keys, version, name)
    staging = artifacts_root / staging_dir_name(version)
    final = artifacts_root / version
    with timer.stage("clean up"):  # what killed builds left, before adding a new one
        collect_for(client, artifacts_root, settings)
    try:
        staging.mkdir(parents=True, exist_ok=False)
        write_owner(staging, settings.key_prefix)
        with timer.stage("index ids"):
            users = IdIndex.from_values(dataset.interactions[Columns.user])
            item_ids = IdIndex(dataset.items[Columns.item])
            devices = device_vocabulary(dataset.interactions)
            events = index_events(dataset.interactions, users, item_ids, devices)
        train_result, ranker_info, window = train_stage2(
            dataset, item_ids, devices, settings, timer
        )
        with timer.stage("inspection: drift reference"):
            reference = drift_reference(window, devices, settings, Ranker(train_result.booster))
        warm_items = window.candidate_model.factors.item
        kept_window = window if keep_training_window else None
        del window  # a production build holds one stage-1 fit at a time
        with timer.stage("stage 1 on all events"):
            model = fit_candidate_model(
                events,
                dataset.interactions,
                len(users),
                dataset.items,
                devices,
                settings,
                init_item_factors=warm_items,
            )
        with timer.stage("candidates -> redis"):
            cand_info = write_candidates(writer, model, users, settings)
            writer.wait_replicated()  # before the pointer can name this build
        with timer.stage("inspection"):
            ranker = Ranker(train_result.booster)  # predicts with best_iteration, as saved
            inspection = _inspect(
                client, staging, version, model, ranker, events, dataset, users, settings
            )
        spent_s = sum(t for stage, t in timer.timings_s.items() if stage.startswith("inspection"))
        inspection = inspection.model_copy(
            update={"seconds": round(spent_s, 3), "drift_reference": reference}
        )
        with timer.stage("artifacts"):
            ranker.save(staging / RANKER_FILE, train_result.best_iteration)
            model.items.save(staging)
            model.neighbours.save(staging)  # with the fold-in: what cold-start answers need
            model.fold_in.save(staging)
            manifest = BuildManifest(
                build_version=version,
                created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                data=DataSummary(
                    users=len(users),
                    items=dataset.items.height,
                    events=dataset.interactions.height,
                    first_ts=int(events.ts.min()),
                    last_ts=int(events.ts.max()),
                ),
                candidates=cand_info,
                ranker=ranker_info,
                config=settings.model_dump(mode="json", exclude={"redis_url"}),
                inspection=inspection,
            )
            if name != DEFAULT_BUILD_NAME:  # a key of its own only when named, so a default
                # build's manifest is exactly what it was before builds had names
                manifest = BuildManifest.model_validate({**manifest.to_json_dict(), "name": name})
            write_manifest(staging, manifest)
            staging.rename(final)
    except BaseException:
        writer.abort()
        shutil.rmtree(staging, ignore_errors=True)
        raise
    with timer.stage("publish"):
        writer.publish()
        collect_for(client, artifacts_root, settings)
    manifest = manifest.model_copy(
        update={
            "timings_s": timer.timings_s,
            "cpu_s": timer.cpu_s,
            "peak_rss_mb": timer.peak_rss_mb,
        }
    )
    write_manifest(final, manifest)
    try:
        append_history(
            artifacts_root,
            BuildHistoryEntry.of(manifest, settings.key_prefix, final),
            settings.inspection.history_entries,
        )
    except OSError as e:  # the build is published; only the dashboard's history misses it
        log.warning("build %s: could not append to the build history: %s", version, e)
    return BuildResult(version, final, manifest, users, model, training_window=kept_window)
