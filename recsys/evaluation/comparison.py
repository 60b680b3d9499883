"""How sure the numbers are, across users and folds: bootstrap intervals of every row, paired
comparisons on the same users, the walk-forward mean over folds, and champion vs challenger.

Each function takes ``Evaluation``s, one per build: its report and the per-user values of
``INTERVAL_METRICS`` behind it, which these resample.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from recsys.evaluation.metric_table import INTERVAL_METRICS, KS, MODEL_NAMES
from recsys.evaluation.protocol import EvalOptions
from recsys.evaluation.records import (
    CompareReport,
    Confidence,
    EvalReport,
    Fold,
    MetricRow,
    Paired,
    PairedDifference,
    PopularityReference,
    WalkForward,
)
from recsys.evaluation.stats import bootstrap_ci, paired_comparison

COMPARED_ROWS = ("two_stage", "stage1", "als")
"""Rows a champion-vs-challenger report compares (the baselines do not depend on settings)."""


@dataclass(frozen=True)
class Evaluation:
    """One build's report, and the per-user values behind its intervals and comparisons."""

    report: EvalReport
    user_keys: list[str]
    per_user: dict[str, dict[str, np.ndarray]]  # model -> INTERVAL_METRICS -> value per user


def confidence(evaluations: Sequence[Evaluation], options: EvalOptions) -> Confidence:
    """Bootstrap 95% intervals of ``INTERVAL_METRICS`` for every model; folds are strata."""
    intervals: dict[str, dict[str, list[float]]] = {}
    for name in evaluations[0].per_user:
        intervals[name] = {
            metric: bootstrap_ci(
                [ev.per_user[name][metric] for ev in evaluations], options.resamples, options.seed
            ).as_list()
            for metric in INTERVAL_METRICS
        }
    return Confidence(
        level=0.95,
        method="percentile bootstrap over test users"
        + (", folds resampled separately" if len(evaluations) > 1 else ""),
        resamples=options.resamples,
        seed=options.seed,
        intervals=intervals,
    )


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
) -> dict[str, PairedDifference]:
    """Challenger minus champion on ``INTERVAL_METRICS``, per user, paired within each fold."""
    out = {}
    for metric in INTERVAL_METRICS:
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
        out[metric] = PairedDifference.of(result)
    return out


def _intervals_and_pairs(evaluations: Sequence[Evaluation], options: EvalOptions) -> dict[str, Any]:
    """Confidence intervals of every row, and two-stage against each other row on the same
    users (pooled over folds)."""
    pairs: Paired = {
        name: paired(evaluations, evaluations, name, "two_stage", options)
        for name in MODEL_NAMES
        if name != "two_stage"
    }
    return {"confidence": confidence(evaluations, options), "paired": pairs}


def single_report(evaluation: Evaluation, options: EvalOptions) -> EvalReport:
    """The report of one split: the build's numbers, intervals, and two-stage against each
    other row on the same users."""
    return evaluation.report.model_copy(update=_intervals_and_pairs([evaluation], options))


def _mean_rows(rows: Sequence[MetricRow]) -> MetricRow:
    return {key: round(float(np.mean([r[key] for r in rows])), 5) for key in rows[0]}


def walk_forward_report(evaluations: Sequence[Evaluation], options: EvalOptions) -> EvalReport:
    """Per-fold results and their mean (each fold weighs the same, as monthly monitoring
    would); candidates, segments, drift and ranker describe the latest fold, the build that
    production would ship."""
    latest = evaluations[-1].report
    folds = [
        Fold(
            fold=i + 1,
            users=ev.report.users,
            build_version=ev.report.build_version,
            **ev.report.window.model_dump(),
            ranker_valid_ndcg_at_10=ev.report.ranker.valid_ndcg_at_10,
            results=ev.report.results,
        )
        for i, ev in enumerate(evaluations)
    ]
    results = {
        name: _mean_rows([ev.report.results[name] for ev in evaluations]) for name in latest.results
    }
    held_out = [ev.report.popularity_reference.held_out_pop_pct for ev in evaluations]
    return latest.model_copy(
        update={
            "users": int(sum(ev.report.users for ev in evaluations)),
            "results": results,
            "walk_forward": WalkForward(folds=options.folds, fold_days=options.fold_days),
            "folds": folds,
            "popularity_reference": PopularityReference(
                held_out_pop_pct=round(float(np.mean(held_out)), 5)
            ),
            **_intervals_and_pairs(evaluations, options),
        }
    )


def protocol_report(evaluations: Sequence[Evaluation], options: EvalOptions) -> EvalReport:
    # by protocol, not by count: one walk-forward fold is still a walk-forward report
    if evaluations[0].report.protocol == "walk-forward":
        return walk_forward_report(evaluations, options)
    return single_report(evaluations[0], options)


def compare_report(
    champion: Sequence[Evaluation],
    challenger: Sequence[Evaluation],
    overrides: dict[str, dict[str, Any]],
    options: EvalOptions,
) -> CompareReport:
    """Two configurations built and scored on the same splits and users: each one's full
    report, and the challenger's rows minus the champion's, paired per user."""
    champ, chall = protocol_report(champion, options), protocol_report(challenger, options)
    return CompareReport(
        protocol=champ.protocol,
        users=champ.users,
        ks=list(KS),
        settings=overrides,
        paired={name: paired(champion, challenger, name, name, options) for name in COMPARED_ROWS},
        champion=champ,
        challenger=chall,
    )
