"""Offline evaluation: hold out, build on the rest, score each stage and baseline as served.

Two-stage and stage-1 answers are read back from Redis and ranked by ``recsys.serving``, the code
the API runs, so the report measures what users would get. Baselines are computed on the same
training events: popularity (most watched, seen items removed), item-kNN (cosine, 100
neighbours) and plain ALS (a fresh full fit, exact top-k, seen items removed). Every answer is
computed to depth 100, so each metric is reported at k in ``KS``.

One build is scored by :func:`evaluate`, which also keeps each test user's NDCG@10 and HR@10:
bootstrap intervals (:func:`confidence`) and paired comparisons (:func:`paired`) resample those
users, over one split or over the folds of walk-forward (:func:`walk_forward_report`). The
definitions of every number are in ``docs/METRICS.md`` and in each report.
"""

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

import numpy as np
import polars as pl
import redis

from recsys.baselines import als_top_k, item_knn_top_k, pad_rows, popularity_top_k
from recsys.candidates.generate import recent_items, seen_keys
from recsys.candidates.merge import SourceList, merge
from recsys.candidates.source import UserBatch
from recsys.columns import Columns
from recsys.config import Settings
from recsys.data.dataset import Dataset
from recsys.data.split import Split, leave_last_out, temporal_split, walk_forward
from recsys.drift import describe_shift, feature_drift
from recsys.features import FEATURE_NAMES, RequestContext, build_features
from recsys.metrics import (
    catalogue_coverage,
    mean_popularity_percentile,
    popularity_percentile,
    ranking_metrics_at_k,
    summarize,
)
from recsys.pipeline import BuildResult
from recsys.ranking.training_set import labelled_requests, request_states
from recsys.serving import ServingModel, rank, stage1_order
from recsys.stats import bootstrap_ci, paired_comparison
from recsys.store.codec import decode_user_state
from recsys.store.keys import Keys
from recsys.user_state import UserState

log = logging.getLogger(__name__)

Protocol = Literal["leave-last-out", "temporal", "walk-forward"]
KS: Final[tuple[int, ...]] = (1, 5, 10, 20, 50, 100)
DEPTH: Final = max(KS)
CANDIDATE_DEPTHS: Final = (1, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
MODELS: Final = ("popularity", "item_knn", "als", "stage1", "two_stage")
CI_METRICS: Final = ("ndcg@10", "hr@10")
BATCH: Final = 256


@dataclass(frozen=True)
class EvalOptions:
    """What an evaluation run computes beyond the metrics, and how hard it tries."""

    folds: int = 3
    """Walk-forward: number of folds, the last ending at the last event."""
    fold_days: int = 30
    """Walk-forward: length of each test window."""
    resamples: int = 1000
    """Bootstrap resamples of the test users, for every interval."""
    permutations: int = 10_000
    """Sign-flip resamples of each paired comparison's p-value (resolution ~1/permutations)."""
    seed: int = 0
    drift_requests: int = 1000
    """Requests per side whose candidates' features are compared for drift; 0 turns drift off."""


DEFAULT_OPTIONS: Final = EvalOptions()


def protocol_splits(
    interactions: pl.DataFrame, protocol: Protocol, options: EvalOptions = DEFAULT_OPTIONS
) -> list[Split]:
    """One split per build to score: one for leave-last-out and temporal, one per fold."""
    if protocol == "walk-forward":
        return walk_forward(interactions, options.folds, options.fold_days)
    return [split_for_protocol(interactions, protocol)]


def split_for_protocol(interactions: pl.DataFrame, protocol: Protocol) -> Split:
    """The single split of leave-last-out or temporal (walk-forward has several)."""
    if protocol == "leave-last-out":
        return leave_last_out(interactions)
    if protocol == "temporal":
        return temporal_split(interactions)
    raise ValueError(f"{protocol} has one split per fold: use protocol_splits")


def train_dataset(dataset: Dataset, split: Split) -> Dataset:
    """What a build of this split may read: its training events and the catalogue."""
    return Dataset(interactions=split.train, items=dataset.items)


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


@dataclass(frozen=True)
class Served:
    two_stage: np.ndarray  # [U, k] padded
    stage1: np.ndarray  # [U, k] padded
    candidates: list[np.ndarray]
    flags: list[np.ndarray]
    sample_states: list[UserState]  # as read from Redis, for the requests in ``sample``
    sample_contexts: list[RequestContext]


def served_answers(
    client: redis.Redis,
    keys: Keys,
    model: ServingModel,
    req: TestRequests,
    k: int,
    sample: np.ndarray | None = None,
) -> Served:
    """Two-stage and stage-1 top-k, and the candidates, per request, read back from Redis; the
    states of the request positions in ``sample`` are kept too (drift reads their features)."""
    keep = np.zeros(len(req.users), dtype=bool)
    if sample is not None:
        keep[sample] = True
    two_stage: list[np.ndarray] = []
    first: list[np.ndarray] = []
    candidates: list[np.ndarray] = []
    flags: list[np.ndarray] = []
    kept_states: list[UserState] = []
    kept_contexts: list[RequestContext] = []
    for start in range(0, len(req.users), BATCH):
        user_keys = req.user_keys[start : start + BATCH]
        contexts = req.contexts[start : start + BATCH]
        pipe = client.pipeline(transaction=False)
        for u in user_keys:
            pipe.get(keys.user_state(model.version, u))
        blobs = pipe.execute()
        states = []
        for u, blob in zip(user_keys, blobs, strict=True):
            if blob is None:
                raise RuntimeError(f"build {model.version} has no state for user {u}")
            states.append(decode_user_state(blob))
        ranked = rank(model, states, contexts, k)
        two_stage.extend(r.item_idx for r in ranked)
        first.extend(stage1_order(s, k).item_idx for s in states)
        candidates.extend(s.cand_item for s in states)
        flags.extend(s.cand_sources for s in states)
        for j in np.flatnonzero(keep[start : start + BATCH]):
            kept_states.append(states[j])
            kept_contexts.append(contexts[j])
    return Served(
        pad_rows(two_stage, k), pad_rows(first, k), candidates, flags, kept_states, kept_contexts
    )


def candidate_depths(per_user: int) -> list[int]:
    return sorted({d for d in CANDIDATE_DEPTHS if d < per_user} | {per_user})


def recall_at_depths(
    rows: Sequence[np.ndarray], relevant: list[np.ndarray], depths: Sequence[int], name: str
) -> dict[str, float]:
    """``{f"{name}@{d}": recall}`` of ranked rows cut at each depth."""
    padded = pad_rows(list(rows), max(depths))
    return {
        f"{name}@{d}": round(summarize(ranking_metrics_at_k(padded, relevant, d)["recall"]), 5)
        for d in depths
    }


def _recall(rows: Sequence[np.ndarray], relevant: list[np.ndarray]) -> float:
    width = max(1, max((len(r) for r in rows), default=1))
    return round(
        summarize(ranking_metrics_at_k(pad_rows(list(rows), width), relevant, width)["recall"]), 5
    )


def candidate_recall(
    build: BuildResult,
    req: TestRequests,
    candidates: list[np.ndarray],
    candidate_flags: list[np.ndarray],
    settings: Settings,
) -> dict[str, Any]:
    """Recall of held-out items: of the merged candidates (in stored, stage-1 order, at several
    depths), of the part each source found, and of each source's own top ``per_user`` (seen
    removed, in the source's order) had it filled every slot alone."""
    model = build.candidate_model
    per_user = settings.candidates.per_user
    depths = candidate_depths(per_user)
    n_items = model.items.n_items
    merged_share = {}
    for active in model.sources:
        flag = active.spec.flag
        found = [c[(f & flag) != 0] for c, f in zip(candidates, candidate_flags, strict=True)]
        merged_share[active.spec.name] = {
            "recall_in_merged": _recall(found, req.relevant),
            "slots_per_user": round(float(np.mean([len(x) for x in found])), 1),
        }
    alone: dict[str, dict[str, float]] = {}
    for active in model.sources:
        rows: list[np.ndarray] = []
        for start in range(0, len(req.users), 1024):
            users = req.users[start : start + 1024].astype(np.int64)
            seen_counts = np.diff(model.seen.indptr)[users]
            batch = UserBatch(
                users=users,
                factors=model.factors.user[users],
                recent=recent_items(model.history, users, settings.candidates.recent_items),
                max_seen=int(seen_counts.max()),
            )
            offered = active.source.candidates(batch, per_user)
            lst = SourceList(offered, active.spec.flag, per_user, per_user)
            merged = merge([lst], seen_keys(model.seen, users, n_items), n_items, per_user)
            rows += np.split(merged.items, merged.offsets[1:-1])
        alone[active.spec.name] = {
            "recall_alone": _recall(rows, req.relevant),
            **recall_at_depths(rows, req.relevant, depths, "recall_alone"),
        }
    return {
        "per_user": round(float(np.mean([len(c) for c in candidates])), 1),
        "recall": _recall(candidates, req.relevant),
        **recall_at_depths(candidates, req.relevant, depths, "recall"),
        "sources": {name: {**alone[name], **merged_share[name]} for name in alone},
    }


ACTIVITY_BUCKETS: tuple[tuple[int, int], ...] = ((1, 5), (6, 20), (21, 100), (101, 10**12))


def segments(
    req: TestRequests, build: BuildResult, model: ServingModel, per_model: dict[str, np.ndarray]
) -> dict[str, dict[str, dict[str, float]]]:
    """NDCG@10 per request device and per user-activity bucket (training events), per model."""
    devices = np.array([model.items.devices[c.device] for c in req.contexts])
    activity = np.diff(build.candidate_model.seen.indptr)[req.users]
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


@dataclass(frozen=True)
class Scored:
    row: dict[str, float]  # metric@k -> mean over users, the report's row
    per_user: dict[str, np.ndarray]  # CI_METRICS -> value per test user


def score(
    recommended: np.ndarray, relevant: list[np.ndarray], n_items: int, pop_pct: np.ndarray
) -> Scored:
    """Every metric at every k of one model's answers; see ``recsys.metrics`` for definitions.

    ``pop_bias@k`` needs the held-out reference and is added by :func:`evaluate`."""
    row: dict[str, float] = {}
    per_user: dict[str, np.ndarray] = {}
    for k in KS:
        m = ranking_metrics_at_k(recommended, relevant, k)
        named = {"ndcg": m["ndcg"], "hr": m["hit_rate"], "recall": m["recall"], "mrr": m["mrr"]}
        for name, values in named.items():
            key = f"{name}@{k}"
            row[key] = round(summarize(values), 5)
            if key in CI_METRICS:
                per_user[key] = values
        row[f"coverage@{k}"] = round(catalogue_coverage(recommended, k, n_items), 5)
        row[f"pop_pct@{k}"] = round(
            summarize(mean_popularity_percentile(recommended, k, pop_pct)), 5
        )
    return Scored(row, per_user)


@dataclass(frozen=True)
class Evaluation:
    """One build's report, and the per-user values behind its intervals and comparisons."""

    report: dict[str, Any]
    user_keys: list[str]
    per_user: dict[str, dict[str, np.ndarray]]  # model -> CI_METRICS -> value per test user


class _Clock:
    def __init__(self) -> None:
        self.timings_s: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        yield
        self.timings_s[name] = round(time.perf_counter() - start, 3)


def evaluate(
    split: Split,
    build: BuildResult,
    model: ServingModel,
    client: redis.Redis,
    settings: Settings,
    options: EvalOptions = DEFAULT_OPTIONS,
    train: Dataset | None = None,
) -> Evaluation:
    """Score one published build on its split's test users: every model at every k, candidate
    recall, segments and, given the training dataset ``train``, feature drift."""
    clock = _Clock()
    req = test_requests(split.test, build, model)
    if len(req.users) == 0:
        raise RuntimeError("no test user has training history; nothing to evaluate")
    rng = np.random.default_rng(options.seed)
    n_sample = min(options.drift_requests, len(req.users)) if train is not None else 0
    sample = np.sort(rng.choice(len(req.users), n_sample, replace=False))
    with clock.stage("served answers"):
        served = served_answers(client, Keys(settings.key_prefix), model, req, DEPTH, sample)
    seen = build.candidate_model.seen
    users = req.users.astype(np.int64)
    answers: dict[str, np.ndarray] = {}
    with clock.stage("popularity"):
        answers["popularity"] = popularity_top_k(
            seen, build.candidate_model.items.pop_all, users, DEPTH
        )
    with clock.stage("item_knn"):
        answers["item_knn"] = item_knn_top_k(seen, users, DEPTH)
    with clock.stage("als"):
        answers["als"] = als_top_k(seen, users, DEPTH, settings.als)
    answers["stage1"] = served.stage1
    answers["two_stage"] = served.two_stage

    n_items = model.items.n_items
    pop_pct = popularity_percentile(build.candidate_model.items.pop_all)
    held_out_pct = summarize([pop_pct[r].mean() if len(r) else np.nan for r in req.relevant])
    with clock.stage("metrics"):
        scored = {name: score(rec, req.relevant, n_items, pop_pct) for name, rec in answers.items()}
    results = {}
    for name, s in scored.items():
        bias = {f"pop_bias@{k}": round(s.row[f"pop_pct@{k}"] - held_out_pct, 5) for k in KS}
        results[name] = s.row | bias
    with clock.stage("candidate recall"):
        candidates = candidate_recall(build, req, served.candidates, served.flags, settings)
    per_user_ndcg = {name: s.per_user["ndcg@10"] for name, s in scored.items()}
    report: dict[str, Any] = {
        "protocol": split.protocol,
        "users": len(req.users),
        "ks": list(KS),
        "window": split_window(split),
        "results": results,
        "popularity_reference": {"held_out_pop_pct": round(held_out_pct, 5)},
        "candidates": candidates,
        "segments_ndcg@10": segments(req, build, model, per_user_ndcg),
    }
    if train is not None and n_sample:
        with clock.stage("drift"):
            report["drift"] = drift(train, build, model, served, settings, options)
    report |= {
        "build_version": build.version,
        "ranker": build.manifest["ranker"],
        "timings_s": build.manifest["timings_s"],
        "eval_timings_s": clock.timings_s,
    }
    return Evaluation(
        report=report,
        user_keys=req.user_keys,
        per_user={name: s.per_user for name, s in scored.items()},
    )


def evaluate_build(
    split: Split, build: BuildResult, model: ServingModel, client: redis.Redis, settings: Settings
) -> dict[str, Any]:
    """The report of one build, without drift (kept for callers that only want the numbers)."""
    return evaluate(split, build, model, client, settings).report


def _iso(ts: int | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def split_window(split: Split) -> dict[str, Any]:
    """When training stops and what the test holds, for the report."""
    return {
        "train_events": split.train.height,
        "test_events": split.test.height,
        "train_until": _iso(split.cut_ts),
        "test_until": _iso(split.test_end_ts),
    }


# --------------------------------------------------------------------------- drift


def training_window_features(
    train: Dataset, build: BuildResult, settings: Settings, max_requests: int
) -> tuple[np.ndarray, int]:
    """Features of every candidate of the ranker's training requests, as of its label cut.

    The same steps as the build's ``training_data`` (same label split, same stage 1 on history,
    same request sample: ``labelled_requests`` draws the same permutation, so these requests are
    the first of the ranker's own), but without negative sampling: drift compares candidate
    distributions, and sampling 100 negatives of 500 would itself look like drift."""
    window = build.training_window
    if window is None:
        raise ValueError("drift needs the build's training window: run_build(keep_training_window)")
    devices = build.candidate_model.items.devices
    requests = labelled_requests(window, devices, max_requests, settings.ranker.seed)
    model = window.candidate_model
    parts = [
        build_features(states, contexts, model.items)
        for states, contexts, _ in request_states(requests, model, settings)
    ]
    if not parts:
        return np.empty((0, len(FEATURE_NAMES)), np.float32), 0
    return np.concatenate(parts), len(requests.users)


def drift(
    train: Dataset,
    build: BuildResult,
    model: ServingModel,
    served: Served,
    settings: Settings,
    options: EvalOptions,
) -> dict[str, Any]:
    """PSI of each ranker feature and of the ranker's score, training window vs test window."""
    reference, n_requests = training_window_features(train, build, settings, options.drift_requests)
    current = build_features(served.sample_states, served.sample_contexts, model.items)
    return {
        "reference": "candidates of the ranker's training requests, as of its label cut",
        "current": "candidates of the test requests, as served",
        "reference_requests": n_requests,
        "current_requests": len(served.sample_states),
        "reference_rows": int(reference.shape[0]),
        "current_rows": int(current.shape[0]),
        "features": feature_drift(reference, current, FEATURE_NAMES),
        "score": describe_shift(model.ranker.score(reference), model.ranker.score(current)),
    }


# --------------------------------------------------------------------------- across users, folds


def confidence(evaluations: Sequence[Evaluation], options: EvalOptions) -> dict[str, Any]:
    """Bootstrap 95% intervals of ``CI_METRICS`` for every model; folds are strata."""
    intervals: dict[str, dict[str, list[float]]] = {}
    for name in evaluations[0].per_user:
        intervals[name] = {
            metric: bootstrap_ci(
                [ev.per_user[name][metric] for ev in evaluations], options.resamples, options.seed
            ).as_list()
            for metric in CI_METRICS
        }
    return {
        "level": 0.95,
        "method": "percentile bootstrap over test users"
        + (", folds resampled separately" if len(evaluations) > 1 else ""),
        "resamples": options.resamples,
        "seed": options.seed,
        "intervals": intervals,
    }


def _aligned(a: Evaluation, b: Evaluation) -> tuple[np.ndarray, np.ndarray]:
    """Positions in ``a`` and ``b`` of the users both scored, in ``a``'s order."""
    pos_b = {u: i for i, u in enumerate(b.user_keys)}
    both = [(i, pos_b[u]) for i, u in enumerate(a.user_keys) if u in pos_b]
    idx = np.array(both, dtype=np.int64).reshape(-1, 2)
    return idx[:, 0], idx[:, 1]


def paired(
    champion: Sequence[Evaluation],
    challenger: Sequence[Evaluation],
    champion_model: str,
    challenger_model: str,
    options: EvalOptions,
) -> dict[str, dict[str, Any]]:
    """Challenger minus champion on ``CI_METRICS``, per user, paired within each fold."""
    out = {}
    for metric in CI_METRICS:
        a_strata, b_strata = [], []
        for a, b in zip(champion, challenger, strict=True):
            ia, ib = _aligned(a, b)
            a_strata.append(a.per_user[champion_model][metric][ia])
            b_strata.append(b.per_user[challenger_model][metric][ib])
        result = paired_comparison(
            a_strata,
            b_strata,
            resamples=options.resamples,
            permutations=options.permutations,
            seed=options.seed,
        )
        out[metric] = result.as_dict()
    return out


def _intervals_and_pairs(evaluations: Sequence[Evaluation], options: EvalOptions) -> dict[str, Any]:
    """Confidence intervals of every row, and two-stage against each other row on the same
    users (pooled over folds)."""
    return {
        "confidence": confidence(evaluations, options),
        "paired": {
            name: paired(evaluations, evaluations, name, "two_stage", options)
            for name in MODELS
            if name != "two_stage"
        },
    }


def single_report(evaluation: Evaluation, options: EvalOptions) -> dict[str, Any]:
    """The report of one split: the build's numbers, intervals, and two-stage against each
    other row on the same users."""
    return evaluation.report | _intervals_and_pairs([evaluation], options)


def _mean_rows(rows: Sequence[dict[str, float]]) -> dict[str, float]:
    return {key: round(float(np.mean([r[key] for r in rows])), 5) for key in rows[0]}


def walk_forward_report(evaluations: Sequence[Evaluation], options: EvalOptions) -> dict[str, Any]:
    """Per-fold results and their mean (each fold weighs the same, as monthly monitoring
    would); candidates, segments, drift and ranker describe the latest fold, the build that
    production would ship."""
    latest = evaluations[-1].report
    folds = [
        {
            "fold": i + 1,
            "users": ev.report["users"],
            "build_version": ev.report["build_version"],
            **ev.report["window"],
            "ranker_valid_ndcg@10": ev.report["ranker"]["valid_ndcg@10"],
            "results": ev.report["results"],
        }
        for i, ev in enumerate(evaluations)
    ]
    results = {
        name: _mean_rows([ev.report["results"][name] for ev in evaluations])
        for name in latest["results"]
    }
    return {
        **latest,
        "users": int(sum(ev.report["users"] for ev in evaluations)),
        "results": results,
        "walk_forward": {"folds": options.folds, "fold_days": options.fold_days},
        "folds": folds,
        "popularity_reference": _mean_rows(
            [ev.report["popularity_reference"] for ev in evaluations]
        ),
        **_intervals_and_pairs(evaluations, options),
    }


def protocol_report(evaluations: Sequence[Evaluation], options: EvalOptions) -> dict[str, Any]:
    # by protocol, not by count: one walk-forward fold is still a walk-forward report
    if evaluations[0].report["protocol"] == "walk-forward":
        return walk_forward_report(evaluations, options)
    return single_report(evaluations[0], options)


def compare_report(
    champion: Sequence[Evaluation],
    challenger: Sequence[Evaluation],
    overrides: dict[str, dict[str, Any]],
    options: EvalOptions,
) -> dict[str, Any]:
    """Two configurations built and scored on the same splits and users: each one's full
    report, and the challenger's rows minus the champion's, paired per user."""
    champ, chall = protocol_report(champion, options), protocol_report(challenger, options)
    return {
        "protocol": champ["protocol"],
        "mode": "compare",
        "users": champ["users"],
        "ks": list(KS),
        "settings": overrides,
        "paired": {
            name: paired(champion, challenger, name, name, options)
            for name in ("two_stage", "stage1", "als")
        },
        "champion": champ,
        "challenger": chall,
    }
