"""Offline evaluation: hold out, build on the rest, score each stage and baseline as served.

Two-stage and stage-1 answers are read back from Redis and ranked by ``recsys.serving``, the code
the API runs, so the report measures what users would get. Baselines are computed on the same
training events: popularity (most watched, seen items removed) and plain ALS (exact top-k of the
same factors, seen items removed).
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import polars as pl
import redis

from recsys.candidates.generate import recent_items, seen_keys
from recsys.candidates.merge import SourceList, merge
from recsys.candidates.sources import SOURCE_NAMES, UserBatch
from recsys.columns import Columns
from recsys.config import ALSConfig, Settings
from recsys.data.dataset import Dataset
from recsys.data.split import Split, leave_last_out, temporal_split
from recsys.features import RequestContext
from recsys.metrics import catalogue_coverage, ranking_metrics_at_k, summarize
from recsys.mf import fit_als
from recsys.pipeline import BuildResult
from recsys.serving import ServingModel, rank, stage1
from recsys.store.codec import decode_user_state
from recsys.store.keys import Keys

log = logging.getLogger(__name__)

Protocol = Literal["leave-last-out", "temporal"]
KS: tuple[int, ...] = (10, 20, 50)
BATCH = 256


def split_for_protocol(interactions: pl.DataFrame, protocol: Protocol) -> Split:
    if protocol == "leave-last-out":
        return leave_last_out(interactions)
    return temporal_split(interactions)


@dataclass(frozen=True)
class TestRequests:
    users: np.ndarray  # int32 dense user index in the build
    user_keys: list[str]
    contexts: list[RequestContext]
    relevant: list[np.ndarray]  # item indices per user


def test_requests(test: pl.DataFrame, build: BuildResult, model: ServingModel) -> TestRequests:
    """One request per test user with train history, at the time and device of their first
    held-out event; relevant items are all of their held-out items."""
    test = test.sort(Columns.timestamp, maintain_order=True)
    dense = build.users.lookup(test[Columns.user])
    test = test.with_columns(pl.Series("_u", dense)).filter(pl.col("_u") >= 0)
    grouped = test.group_by("_u", maintain_order=True).agg(
        pl.col(Columns.item), pl.col(Columns.timestamp).first(), pl.col(Columns.device).first()
    )
    keys = build.users.keys()
    items = model.items
    return TestRequests(
        users=grouped["_u"].to_numpy().astype(np.int32),
        user_keys=[keys[u] for u in grouped["_u"].to_list()],
        contexts=[
            RequestContext(ts=int(t), device=items.device_code(d))
            for t, d in zip(grouped[Columns.timestamp], grouped[Columns.device], strict=True)
        ],
        relevant=[
            np.array([items.index_of(i) for i in its], dtype=np.int32)
            for its in grouped[Columns.item].to_list()
        ],
    )


def _pad(rows: Sequence[np.ndarray], width: int) -> np.ndarray:
    out = np.full((len(rows), width), -1, dtype=np.int64)
    for j, r in enumerate(rows):
        out[j, : min(len(r), width)] = r[:width]
    return out


@dataclass(frozen=True)
class Served:
    two_stage: np.ndarray  # [U, k] padded
    stage1: np.ndarray  # [U, k] padded
    candidates: list[np.ndarray]
    flags: list[np.ndarray]


def served_answers(
    client: redis.Redis, keys: Keys, model: ServingModel, req: TestRequests, k: int
) -> Served:
    """Two-stage and stage-1 top-k, and the candidates, per request, read back from Redis."""
    two_stage: list[np.ndarray] = []
    first: list[np.ndarray] = []
    candidates: list[np.ndarray] = []
    flags: list[np.ndarray] = []
    for start in range(0, len(req.users), BATCH):
        user_keys = req.user_keys[start : start + BATCH]
        pipe = client.pipeline(transaction=False)
        for u in user_keys:
            pipe.get(keys.user_state(model.version, u))
        blobs = pipe.execute()
        states = []
        for u, blob in zip(user_keys, blobs, strict=True):
            if blob is None:
                raise RuntimeError(f"build {model.version} has no state for user {u}")
            states.append(decode_user_state(blob))
        ranked = rank(model, states, req.contexts[start : start + BATCH], k)
        two_stage.extend(r.item_idx for r in ranked)
        first.extend(stage1(s, k).item_idx for s in states)
        candidates.extend(s.cand_item for s in states)
        flags.extend(s.cand_sources for s in states)
    return Served(_pad(two_stage, k), _pad(first, k), candidates, flags)


def als_top_k(build: BuildResult, users: np.ndarray, k: int, cfg: ALSConfig) -> np.ndarray:
    """Plain ALS, as a user of implicit would run it: a fresh full fit on the same training
    events (not the build's warm-started one), exact top-k over the catalogue, seen removed."""
    seen = build.stage1.seen
    f = fit_als(seen, cfg)
    out = np.empty((len(users), k), dtype=np.int64)
    for start in range(0, len(users), 1024):
        u = users[start : start + 1024]
        scores = f.user[u] @ f.item.T
        rows, cols = seen[u].nonzero()
        scores[rows, cols] = -np.inf
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
        out[start : start + len(u)] = np.take_along_axis(part, order, axis=1)
    return out


def popularity_top_k(build: BuildResult, users: np.ndarray, k: int) -> np.ndarray:
    """Most watched of all time (not the serving fallback's 'popular now'), seen items removed."""
    seen = build.stage1.seen
    popular = np.argsort(-build.stage1.items.pop_all, kind="stable").astype(np.int64)
    rows = []
    for u in users:
        user_seen = seen.indices[seen.indptr[u] : seen.indptr[u + 1]]
        pool = popular[: k + len(user_seen)]
        rows.append(pool[~np.isin(pool, user_seen)][:k])
    return _pad(rows, k)


def _recall(rows: list[np.ndarray], relevant: list[np.ndarray]) -> float:
    width = max(1, max((len(r) for r in rows), default=1))
    return round(summarize(ranking_metrics_at_k(_pad(rows, width), relevant, width)["recall"]), 5)


def candidate_recall(
    build: BuildResult,
    req: TestRequests,
    candidates: list[np.ndarray],
    candidate_flags: list[np.ndarray],
    settings: Settings,
) -> dict[str, Any]:
    """Recall of held-out items: of the merged candidates, of the part each source found, and
    of each source's own top ``per_user`` (seen removed) had it filled every slot alone."""
    stage1 = build.stage1
    per_user = settings.candidates.per_user
    n_items = stage1.items.n_items
    merged_share = {}
    for spec in stage1.sources:
        flag = spec.source.flag
        found = [c[(f & flag) != 0] for c, f in zip(candidates, candidate_flags, strict=True)]
        merged_share[SOURCE_NAMES[flag]] = {
            "recall_in_merged": _recall(found, req.relevant),
            "slots_per_user": round(float(np.mean([len(x) for x in found])), 1),
        }
    alone: dict[str, float] = {}
    for spec in stage1.sources:
        rows: list[np.ndarray] = []
        for start in range(0, len(req.users), 1024):
            users = req.users[start : start + 1024].astype(np.int64)
            seen_counts = np.diff(stage1.seen.indptr)[users]
            batch = UserBatch(
                users=users,
                factors=stage1.factors.user[users],
                recent=recent_items(stage1.history, users, settings.candidates.recent_items),
                max_seen=int(seen_counts.max()),
            )
            offered = spec.source.candidates(batch, per_user)
            lst = SourceList(offered, spec.source.flag, per_user, per_user)
            merged = merge([lst], seen_keys(stage1.seen, users, n_items), n_items, per_user)
            rows += np.split(merged.items, merged.offsets[1:-1])
        alone[SOURCE_NAMES[spec.source.flag]] = _recall(rows, req.relevant)
    return {
        "per_user": round(float(np.mean([len(c) for c in candidates])), 1),
        "recall": _recall(candidates, req.relevant),
        "sources": {name: {"recall_alone": alone[name], **merged_share[name]} for name in alone},
    }


ACTIVITY_BUCKETS: tuple[tuple[int, int], ...] = ((1, 5), (6, 20), (21, 100), (101, 10**12))


def segments(
    req: TestRequests, build: BuildResult, model: ServingModel, per_model: dict[str, np.ndarray]
) -> dict[str, dict[str, dict[str, float]]]:
    """NDCG@10 per request device and per user-activity bucket (training events), per model."""
    devices = np.array([model.items.devices[c.device] for c in req.contexts])
    activity = np.diff(build.stage1.seen.indptr)[req.users]
    groups: dict[str, dict[str, np.ndarray]] = {
        "device": {d: devices == d for d in np.unique(devices)},
        "activity": {
            (f"{lo}-{hi}" if hi < 10**12 else f"{lo}+"): (activity >= lo) & (activity <= hi)
            for lo, hi in ACTIVITY_BUCKETS
        },
    }
    out: dict[str, dict[str, dict[str, float]]] = {}
    for kind, masks in groups.items():
        out[kind] = {}
        for name, mask in masks.items():
            if mask.any():
                row = {"users": float(mask.sum())}
                row |= {m: round(summarize(v[mask]), 5) for m, v in per_model.items()}
                out[kind][str(name)] = row
    return out


def score(recommended: np.ndarray, relevant: list[np.ndarray], n_items: int) -> dict[str, float]:
    out: dict[str, float] = {}
    for k in KS:
        m = ranking_metrics_at_k(recommended, relevant, k)
        out[f"ndcg@{k}"] = round(summarize(m["ndcg"]), 5)
        out[f"hr@{k}"] = round(summarize(m["hit_rate"]), 5)
        out[f"recall@{k}"] = round(summarize(m["recall"]), 5)
        out[f"mrr@{k}"] = round(summarize(m["mrr"]), 5)
    out[f"coverage@{KS[0]}"] = round(catalogue_coverage(recommended, KS[0], n_items), 5)
    return out


def evaluate_build(
    split: Split, build: BuildResult, model: ServingModel, client: redis.Redis, settings: Settings
) -> dict[str, Any]:
    req = test_requests(split.test, build, model)
    if len(req.users) == 0:
        raise RuntimeError("no test user has training history; nothing to evaluate")
    k = max(KS)
    served = served_answers(client, Keys(settings.key_prefix), model, req, k)
    n_items = model.items.n_items
    answers = {
        "popularity": popularity_top_k(build, req.users, k),
        "als": als_top_k(build, req.users, k, settings.als),
        "stage1": served.stage1,
        "two_stage": served.two_stage,
    }
    per_user_ndcg = {
        name: ranking_metrics_at_k(answers[name], req.relevant, 10)["ndcg"]
        for name in ("als", "two_stage")
    }
    return {
        "protocol": split.protocol,
        "users": len(req.users),
        "results": {name: score(rec, req.relevant, n_items) for name, rec in answers.items()},
        "candidates": candidate_recall(build, req, served.candidates, served.flags, settings),
        "segments_ndcg@10": segments(req, build, model, per_user_ndcg),
    }


def train_dataset(dataset: Dataset, split: Split) -> Dataset:
    return Dataset(interactions=split.train, items=dataset.items)
