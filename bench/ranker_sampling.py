"""What sampling the ranker's training users costs: NDCG@10 on fixed held-out users against the
share of the other users whose requests the ranker trains on, and the training time.

    python bench/ranker_sampling.py bench-output/data/synth-m50 \\
        [--fractions 0.1,0.2,0.5,1] [--test-users 5000] [--blocks 10] [--out FILE]

One build's worth of work, done once: the label split (the build's own, ``ranker.label_split``),
stage 1 on the history, and every labelled request with no sampling
(``labelled_requests(..., max_requests=all)``). Users, not requests, are split: a fixed random
``--test-users`` are held out, and each of their requests is scored on all of its candidates
(not the negatives-sampled rows training sees) with NDCG@10 and LightGBM's graded gains
(2^grade - 1; a skip's negative grade counts 0), averaged over every held-out request (0 where
stage 1 missed every positive label). The other users, in one fixed random order, are cut into
``--blocks`` blocks whose training rows are built by the build's own ``build_training_set``; a
fraction f trains the build's own ``train_ranker`` (its validation split, early stopping) on
the first f x blocks blocks: nested samples, so differences come from the sample size, not the
draw. Each row gives NDCG@10 with a 95% bootstrap interval over the held-out requests, and the
paired difference from the largest sample with its own interval (same requests, resampled
together), the training requests and rows, and the training time.

The build itself trains on ``ranker.max_train_groups`` requests (20,000 by default) drawn at
random from every labelled request, whatever the number of users; the output says which
fraction of this log's users that corresponds to.
"""

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
from provenance import git_commit, load_average

from recsys.candidates.model import CandidateModel
from recsys.columns import Columns
from recsys.config import Settings
from recsys.data.load import load_dataset
from recsys.devices import device_vocabulary
from recsys.features import build_features
from recsys.ids import IdIndex
from recsys.ranking.labels import split_for_labels
from recsys.ranking.ranker import TrainingSet, train_ranker
from recsys.ranking.training_set import (
    EarlierEvents,
    LabelRequests,
    build_training_set,
    candidate_relevance,
    fit_on_history,
    labelled_requests,
    request_states,
)

BOOTSTRAP = 2000


def _slices(offsets: np.ndarray, picks: np.ndarray) -> np.ndarray:
    parts = [np.arange(offsets[g], offsets[g + 1]) for g in picks]
    return np.concatenate(parts) if parts else np.empty(0, np.int64)


def _offsets(offsets: np.ndarray, picks: np.ndarray) -> np.ndarray:
    return np.r_[0, np.cumsum(offsets[picks + 1] - offsets[picks])].astype(np.int64)


def subset(requests: LabelRequests, picks: np.ndarray) -> LabelRequests:
    """The requests at positions ``picks``, with their labels and earlier events."""
    rows = _slices(requests.label_offsets, picks)
    earlier = None
    if (e := requests.earlier) is not None:
        ev = _slices(e.offsets, picks)
        earlier = EarlierEvents(
            offsets=_offsets(e.offsets, picks),
            item=e.item[ev],
            ts=e.ts[ev],
            device=e.device[ev],
            completion=e.completion[ev],
            positive=e.positive[ev],
        )
    return LabelRequests(
        users=requests.users[picks],
        context=[requests.context[int(g)] for g in picks],
        label_offsets=_offsets(requests.label_offsets, picks),
        label_items=requests.label_items[rows],
        label_grades=requests.label_grades[rows],
        earlier=earlier,
    )


def ndcg_at_10(scores: np.ndarray, relevance: np.ndarray) -> float:
    gains = 2.0 ** np.maximum(relevance, 0).astype(np.float64) - 1
    if not gains.any():
        return 0.0
    discounts = 1 / np.log2(np.arange(2, 12))
    top = np.argsort(-scores, kind="stable")[:10]
    ideal = np.sort(gains)[::-1][:10]
    return float(
        (gains[top] * discounts[: len(top)]).sum() / (ideal * discounts[: len(ideal)]).sum()
    )


def held_out(
    requests: LabelRequests, model: CandidateModel, settings: Settings
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(features, stage-1 scores, relevance) of every candidate, per held-out request."""
    out = []
    for states, contexts, groups in request_states(requests, model, settings):
        x = build_features(states, contexts, model.items)
        start = 0
        for state, g in zip(states, groups, strict=True):
            n = len(state.cand_item)
            rel = candidate_relevance(state.cand_item, *requests.labels_of(g))
            out.append((x[start : start + n], state.cand_score, rel))
            start += n
    return out


def concat(parts: list[TrainingSet]) -> TrainingSet:
    return TrainingSet(
        np.concatenate([p.features for p in parts]),
        np.concatenate([p.relevance for p in parts]),
        np.concatenate([p.group_sizes for p in parts]),
    )


def interval(values: np.ndarray, rng: np.random.Generator) -> tuple[float, float]:
    """95% percentile bootstrap interval of the mean."""
    idx = rng.integers(0, len(values), size=(BOOTSTRAP, len(values)))
    means = values[idx].mean(axis=1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("data", type=Path)
    p.add_argument("--fractions", default="0.1,0.2,0.5,1")
    p.add_argument("--test-users", type=int, default=5_000)
    p.add_argument("--blocks", type=int, default=10, help="the smallest fraction is 1/blocks")
    p.add_argument("--out", type=Path, default=Path("bench-output/ranker_sampling.json"))
    args = p.parse_args()
    load_before = load_average()
    settings = Settings()
    cfg = settings.ranker
    dataset = load_dataset(args.data)
    item_ids = IdIndex(dataset.items[Columns.item])
    devices = device_vocabulary(dataset.interactions)
    t = time.perf_counter()
    split = split_for_labels(dataset.interactions, cfg)
    window = fit_on_history(split, dataset.items, item_ids, devices, settings)
    model = window.candidate_model
    every = labelled_requests(window, devices, 10**12, cfg.seed)
    fit_s = time.perf_counter() - t

    users = np.unique(every.users)
    order = np.random.default_rng(7).permutation(users)
    test_users = order[: args.test_users]
    pool_users = order[args.test_users :]
    is_test = np.isin(every.users, test_users)
    test = subset(every, np.flatnonzero(is_test))
    t = time.perf_counter()
    scored = held_out(test, model, settings)
    score_s = time.perf_counter() - t
    # the pool's users in blocks of the fixed order; a block's requests keep their order
    block_of_user = {int(u): i * args.blocks // len(pool_users) for i, u in enumerate(pool_users)}
    request_block = np.array(
        [block_of_user.get(int(u), -1) for u in every.users.tolist()], dtype=np.int64
    )
    t = time.perf_counter()
    blocks = [
        build_training_set(subset(every, np.flatnonzero(request_block == b)), model, settings)
        for b in range(args.blocks)
    ]
    training_set_s = time.perf_counter() - t
    block_requests = [int((request_block == b).sum()) for b in range(args.blocks)]
    block_users = np.bincount(list(block_of_user.values()), minlength=args.blocks)
    stage1 = np.array([ndcg_at_10(s, r) for _, s, r in scored])
    print(
        f"{len(users):,} users, {len(every.users):,} labelled requests; held out "
        f"{len(test_users):,} users ({len(scored):,} requests); stage 1 + requests {fit_s:.0f}s, "
        f"held-out features {score_s:.0f}s, training sets {training_set_s:.0f}s",
        flush=True,
    )

    fractions = sorted({float(f) for f in args.fractions.split(",")})
    per_request: dict[float, np.ndarray] = {}
    rows: list[dict[str, Any]] = []
    for f in fractions:
        k = max(1, round(f * args.blocks))
        part = concat(blocks[:k])
        t = time.perf_counter()
        result = train_ranker(part, cfg)
        train_s = time.perf_counter() - t
        ndcg = np.array(
            [
                ndcg_at_10(result.booster.predict(x, num_iteration=result.best_iteration), r)
                for x, _, r in scored
            ]
        )
        per_request[f] = ndcg
        lo, hi = interval(ndcg, np.random.default_rng(3))
        row = {
            "fraction_of_users": f,
            "users": int(block_users[:k].sum()),
            "requests": sum(block_requests[:k]),
            "train_groups": len(part.group_sizes),  # requests with a label in the candidates
            "rows": int(part.group_sizes.sum()),
            "trees": result.best_iteration,
            "train_s": round(train_s, 1),
            "ndcg@10": round(float(ndcg.mean()), 5),
            "ndcg@10_ci95": [round(lo, 5), round(hi, 5)],
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    top = per_request[fractions[-1]]
    for row, f in zip(rows, fractions, strict=True):
        diff = per_request[f] - top
        lo, hi = interval(diff, np.random.default_rng(5))
        row["diff_vs_largest"] = round(float(diff.mean()), 5)
        row["diff_vs_largest_ci95"] = [round(lo, 5), round(hi, 5)]
    all_requests = len(every.users)
    out = {
        "data": str(args.data),
        "commit": git_commit(),
        "users": len(users),
        "label_split": split.mode,
        "labels_per_user": cfg.labels_per_user,
        "labelled_requests": all_requests,
        "build_samples_requests": cfg.max_train_groups,
        "build_sample_share_of_requests": round(min(1.0, cfg.max_train_groups / all_requests), 4),
        "test_users": len(test_users),
        "test_requests": len(scored),
        "test_with_positive_label_in_candidates": int(sum((r > 0).any() for _, _, r in scored)),
        "stage1_ndcg@10": round(float(stage1.mean()), 5),
        "stage1_ndcg@10_ci95": [round(x, 5) for x in interval(stage1, np.random.default_rng(3))],
        "prep_s": {
            "stage1_and_requests": round(fit_s, 1),
            "held_out_features": round(score_s, 1),
            "training_sets": round(training_set_s, 1),
        },
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "rows": rows,
    }
    print(json.dumps({k: v for k, v in out.items() if k != "rows"}, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
