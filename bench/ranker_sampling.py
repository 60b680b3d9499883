"""What sampling the ranker's training requests costs: NDCG@10 on fixed held-out requests
against the number of training requests (``ranker.max_train_groups``, 20,000 by default).

    python bench/ranker_sampling.py bench-output/data/synth-medium \\
        [--groups 1250,2500,5000,10000,20000,40000] [--test 10000] [--pool N] [--out FILE]

One build's worth of work, done once: the label split, stage 1 on the history, and every
labelled request (no sampling). A fixed random ``--test`` of those requests is held out and
scored on all of its candidates (not the negatives-sampled rows training sees): NDCG@10 with
LightGBM's graded gains (2^grade - 1), the metric the ranker is early-stopped on, averaged over
every held-out request (0 where stage 1 missed every label). The rest is the training pool;
each size trains the build's own ``train_ranker`` on the first N of one fixed permutation of it
(nested samples, so differences are the sample size, not the draw), with its own validation
split and early stopping, and records the training time.
"""

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

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
    LabelRequests,
    build_training_set,
    candidate_relevance,
    fit_on_history,
    labelled_requests,
    request_states,
)


def subset(requests: LabelRequests, picks: np.ndarray) -> LabelRequests:
    items, grades, offsets = [], [], [0]
    for g in picks:
        i, gr = requests.labels_of(int(g))
        items.append(i)
        grades.append(gr)
        offsets.append(offsets[-1] + len(i))
    return LabelRequests(
        users=requests.users[picks],
        context=[requests.context[int(g)] for g in picks],
        label_offsets=np.asarray(offsets, dtype=np.int64),
        label_items=np.concatenate(items).astype(np.int32),
        label_grades=np.concatenate(grades).astype(np.int32),
    )


def ndcg_at_10(scores: np.ndarray, relevance: np.ndarray) -> float:
    if not relevance.any():
        return 0.0
    gains = 2.0 ** relevance.astype(np.float64) - 1
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


def first_groups(ts: TrainingSet, n: int) -> TrainingSet:
    rows = int(ts.group_sizes[:n].sum())
    return TrainingSet(ts.features[:rows], ts.relevance[:rows], ts.group_sizes[:n])


def shuffled(ts: TrainingSet, seed: int) -> TrainingSet:
    offsets = np.r_[0, np.cumsum(ts.group_sizes)]
    order = np.random.default_rng(seed).permutation(len(ts.group_sizes))
    rows = np.concatenate([np.arange(offsets[g], offsets[g + 1]) for g in order])
    return TrainingSet(ts.features[rows], ts.relevance[rows], ts.group_sizes[order])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("data", type=Path)
    p.add_argument("--groups", default="1250,2500,5000,10000,20000,40000")
    p.add_argument("--test", type=int, default=10_000)
    p.add_argument(
        "--pool",
        type=int,
        help="training pool: this many of the other requests (default: all of them); the "
        "training set of every request is most of the run's time at 200k users",
    )
    p.add_argument("--out", type=Path, default=Path("bench-output/ranker_sampling.json"))
    args = p.parse_args()
    settings = Settings()
    cfg = settings.ranker
    dataset = load_dataset(args.data)
    item_ids = IdIndex(dataset.items[Columns.item])
    devices = device_vocabulary(dataset.interactions)
    t = time.perf_counter()
    split = split_for_labels(dataset.interactions, cfg)
    window = fit_on_history(split, dataset.items, item_ids, devices, settings)
    model, users = window.candidate_model, window.users
    every = labelled_requests(window, devices, 10**9, cfg.seed)
    n = len(every.users)
    order = np.random.default_rng(7).permutation(n)
    test = subset(every, np.sort(order[: args.test]))
    end = args.test + args.pool if args.pool else n
    pool = subset(every, np.sort(order[args.test : end]))
    scored = held_out(test, model, settings)
    training = shuffled(build_training_set(pool, model, settings), seed=11)
    prep_s = time.perf_counter() - t
    stage1_ndcg = float(np.mean([ndcg_at_10(s, r) for _, s, r in scored]))
    print(f"{n:,} labelled requests, {len(training.group_sizes):,} trainable; prep {prep_s:.0f}s")

    rows: list[dict[str, Any]] = []
    sizes = [int(g) for g in args.groups.split(",")] + [len(training.group_sizes)]
    for size in sorted({min(s, len(training.group_sizes)) for s in sizes}):
        part = first_groups(training, size)
        t = time.perf_counter()
        result = train_ranker(part, cfg)
        train_s = time.perf_counter() - t
        ndcg = float(
            np.mean(
                [
                    ndcg_at_10(result.booster.predict(x, num_iteration=result.best_iteration), r)
                    for x, _, r in scored
                ]
            )
        )
        row = {
            "train_groups": size,
            "rows": int(part.group_sizes.sum()),
            "trees": result.best_iteration,
            "train_s": round(train_s, 1),
            "ndcg@10": round(ndcg, 5),
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    out = {
        "data": str(args.data),
        "users": len(users),
        "label_split": split.mode,
        "labelled_requests": n,
        "pool_requests": end - args.test,
        "trainable_requests": len(training.group_sizes),
        "test_requests": len(scored),
        "test_with_label_in_candidates": int(sum(r.any() for _, _, r in scored)),
        "stage1_ndcg@10": round(stage1_ndcg, 5),
        "prep_s": round(prep_s, 1),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
