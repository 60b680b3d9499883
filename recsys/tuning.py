"""``recsys tune``: search the settings that matter most for quality, on a validation split cut
from the training events only.

The data are split twice with the evaluation's own protocol: the first split's test events (what
``recsys eval`` scores) are dropped and never read; its training events are split again, and each
trial builds on the second split's training events and scores the served two-stage answers
(NDCG@10, read back from Redis and ranked by the API's code) on its held-out events. Trial 0 is
the starting settings, so the report always shows what tuning gained over them.

The search (optuna's TPE sampler, seeded) covers ALS (factors, regularisation, alpha, iterations,
BM25 weighting), the quota of every candidate source in the registry, the sequential tables and
the ranker (leaves, learning rate, trees, negatives per request, label split, labels per user).
Each trial is one build on ml-latest-small: tens of seconds on a 2-core machine.
"""

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna

from recsys.candidates.registry import SOURCES
from recsys.config import Settings, with_overrides
from recsys.data.dataset import Dataset
from recsys.data.split import Split
from recsys.evaluation.protocol import (
    Protocol,
    held_out_requests,
    split_for_protocol,
    train_dataset,
)
from recsys.evaluation.ranking_metrics import ranking_metrics_at_k, summarize
from recsys.evaluation.runs import published_build
from recsys.evaluation.served import served_answers
from recsys.store.connect import SyncStore
from recsys.store.keys import Keys

log = logging.getLogger(__name__)

Overrides = dict[str, Any]
K = 10
MAX_SHARE = 0.4  # of the per-user slots, for any one source but the one that fills the rest


def quota_share_caps(per_user: int) -> dict[str, float]:
    """The largest share of each user's candidates the search gives a source: four times its
    default share, at most ``MAX_SHARE``. The source that fills the rest (ALS) gets what the
    others leave."""
    return {s.name: min(MAX_SHARE, 4 * s.quota / per_user) for s in SOURCES if not s.fills_rest}


class _Space:
    """Suggests from ``trial``, each range widened to hold the starting value, so that trial 0
    (the starting settings) lies inside the search space whatever they are."""

    def __init__(self, trial: optuna.Trial, start: dict[str, Any]) -> None:
        self.trial, self.start = trial, start

    def real(self, name: str, low: float, high: float, log: bool = False) -> float:
        v = self.start.get(name, low)
        return self.trial.suggest_float(name, min(low, v), max(high, v), log=log)

    def integer(self, name: str, low: int, high: int, log: bool = False) -> int:
        v = self.start.get(name, low)
        return self.trial.suggest_int(name, min(low, v), max(high, v), log=log)


def suggest(trial: optuna.Trial, per_user: int, start: dict[str, Any]) -> Overrides:
    """One point of the search space, as settings overrides (nested like ``Settings``)."""
    space = _Space(trial, start)
    quotas = {
        name: round(space.real(f"share_{name}", 0.0, cap) * per_user)
        for name, cap in quota_share_caps(per_user).items()
    }
    for spec in SOURCES:  # the sources that fill the rest get what the others leave
        if spec.fills_rest:
            quotas[spec.name] = max(per_user - sum(quotas.values()), 0)
    return {
        "als": {
            "factors": space.integer("als_factors", 16, 256, log=True),
            "regularization": space.real("als_regularization", 1e-3, 1.0, log=True),
            "alpha": space.real("als_alpha", 0.1, 50.0, log=True),
            "iterations": space.integer("als_iterations", 5, 30),
            "bm25_k1": space.real("als_bm25_k1", 1.0, 500.0, log=True),
            "bm25_b": space.real("als_bm25_b", 0.0, 1.0),
        },
        "candidates": {
            "quotas": quotas,
            "sequence": {
                "window": space.integer("seq_window", 1, 10),
                "position_decay": space.real("seq_position_decay", 0.3, 1.0),
                "half_life_days": space.real("seq_half_life_days", 7.0, 36500.0, log=True),
                "anchor_decay": space.real("seq_anchor_decay", 0.3, 1.0),
            },
        },
        "ranker": {
            "num_leaves": space.integer("ranker_num_leaves", 7, 127, log=True),
            "learning_rate": space.real("ranker_learning_rate", 0.02, 0.3, log=True),
            "num_trees": space.integer("ranker_num_trees", 50, 500, log=True),
            "negatives_per_request": space.integer("ranker_negatives", 20, 300, log=True),
            "labels_per_user": space.integer("ranker_labels_per_user", 1, 10),
            "label_split": trial.suggest_categorical(
                "ranker_label_split", ["auto", "temporal", "last-event"]
            ),
        },
    }


def flat_params(settings: Settings) -> dict[str, Any]:
    """The trial parameters ``suggest`` would name for ``settings``: lets trial 0 be them."""
    q, seq, als, ranker = (
        settings.candidates.quotas,
        settings.candidates.sequence,
        settings.als,
        settings.ranker,
    )
    per_user = settings.candidates.per_user
    return {
        **{f"share_{n}": q.of(n) / per_user for n in quota_share_caps(per_user)},
        "als_factors": als.factors,
        "als_regularization": als.regularization,
        "als_alpha": als.alpha,
        "als_iterations": als.iterations,
        "als_bm25_k1": als.bm25_k1,
        "als_bm25_b": als.bm25_b,
        "seq_window": seq.window,
        "seq_position_decay": seq.position_decay,
        "seq_half_life_days": seq.half_life_days,
        "seq_anchor_decay": seq.anchor_decay,
        "ranker_num_leaves": ranker.num_leaves,
        "ranker_learning_rate": ranker.learning_rate,
        "ranker_num_trees": ranker.num_trees,
        "ranker_negatives": ranker.negatives_per_request,
        "ranker_labels_per_user": ranker.labels_per_user,
        "ranker_label_split": ranker.label_split,
    }


def validation_split(dataset: Dataset, protocol: Protocol) -> Split:
    """The evaluation's split, then the same protocol again on its training events: trials see
    only the first split's training events."""
    train = split_for_protocol(dataset.interactions, protocol).train
    return split_for_protocol(train, protocol)


@dataclass(frozen=True)
class TrialResult:
    number: int
    ndcg_at_10: float
    hr_at_10: float
    seconds: float
    params: dict[str, Any]
    overrides: Overrides


@dataclass(frozen=True)
class TuneResult:
    best: TrialResult
    trials: list[TrialResult]
    protocol: str
    validation_users: int


def score_settings(
    split: Split, dataset: Dataset, settings: Settings, client: SyncStore, work: Path
) -> tuple[float, float, int]:
    """Build on ``split.train``, answer its test users as served: (NDCG@10, HR@10, users)."""
    with published_build(train_dataset(dataset, split), client, settings, work) as (build, model):
        req = held_out_requests(split.test, build.users, model.items)
        served = served_answers(client, Keys(settings.key_prefix), model, req, K)
        m = ranking_metrics_at_k(served.two_stage, req.relevant, K)
        return summarize(m["ndcg"]), summarize(m["hit_rate"]), len(req.users)


def tune(
    dataset: Dataset,
    settings: Settings,
    client: SyncStore,
    work: Path,
    trials: int,
    protocol: Protocol = "leave-last-out",
    seed: int = 0,
    on_trial: Callable[[TrialResult], None] | None = None,
) -> TuneResult:
    """``trials`` builds (the first with ``settings`` as given); the best by validation
    NDCG@10. ``settings.key_prefix`` must be one of the caller's own (its keys are deleted)."""
    split = validation_split(dataset, protocol)
    per_user = settings.candidates.per_user
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(trials // 3, 1)))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    start = flat_params(settings)
    study.enqueue_trial(start, skip_if_exists=True)
    results: list[TrialResult] = []
    users = 0

    def objective(trial: optuna.Trial) -> float:
        nonlocal users
        overrides = suggest(trial, per_user, start)
        started = time.perf_counter()
        ndcg, hr, users = score_settings(
            split, dataset, with_overrides(settings, overrides), client, work
        )
        result = TrialResult(
            number=trial.number,
            ndcg_at_10=round(ndcg, 5),
            hr_at_10=round(hr, 5),
            seconds=round(time.perf_counter() - started, 1),
            params=dict(trial.params),
            overrides=overrides,
        )
        results.append(result)
        log.info(
            "trial %d/%d: validation NDCG@10 %.4f (%.0f s)",
            trial.number + 1,
            trials,
            ndcg,
            result.seconds,
        )
        if on_trial is not None:
            on_trial(result)
        return ndcg if math.isfinite(ndcg) else 0.0

    study.optimize(objective, n_trials=trials)
    return TuneResult(
        best=best_trial(results), trials=results, protocol=protocol, validation_users=users
    )


def best_trial(trials: list[TrialResult]) -> TrialResult:
    """The highest validation NDCG@10; the earlier trial on a tie."""
    return max(trials, key=lambda r: (r.ndcg_at_10, -r.number))


def trials_table(result: TuneResult) -> str:
    """Markdown: every trial, best first, with its parameters."""
    names = sorted({k for t in result.trials for k in t.params})
    lines = [
        "| trial | NDCG@10 | HR@10 | s | " + " | ".join(names) + " |",
        "|---:|---:|---:|---:|" + "---|" * len(names),
    ]
    for t in sorted(result.trials, key=lambda r: -r.ndcg_at_10):
        cells = [_fmt(t.params.get(n)) for n in names]
        lines.append(
            f"| {t.number} | {t.ndcg_at_10:.4f} | {t.hr_at_10:.4f} | {t.seconds:.0f} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines) + "\n"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)


def improvement(result: TuneResult) -> float:
    """Best validation NDCG@10 over trial 0's (the starting settings)."""
    first = result.trials[0].ndcg_at_10
    return float(result.best.ndcg_at_10 / first) if first > 0 else float(np.inf)
