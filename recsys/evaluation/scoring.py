"""Every metric of the metric table at every k, for one model's answers, and NDCG@10 by segment.

Answers are item indices ``[requests, DEPTH]``, best first, -1 padded; relevant items are each
request's held-out items. Definitions are in ``metric_table.METRICS`` (and docs/METRICS.md).
"""

from dataclasses import dataclass
from typing import Final

import numpy as np

from recsys.evaluation.metric_table import (
    INTERVAL_METRICS,
    KS,
    METRICS,
    SUMMARY_K,
    AnswersAtK,
    Metric,
)
from recsys.evaluation.protocol import HeldOutRequests
from recsys.evaluation.ranking_metrics import popularity_percentile, summarize
from recsys.evaluation.records import MetricRow, PopularityReference, Segments
from recsys.items import ItemTable


@dataclass(frozen=True)
class Scored:
    row: MetricRow  # metric@k -> mean over users, the report's row
    per_user: dict[str, np.ndarray]  # INTERVAL_METRICS -> value per test user


@dataclass(frozen=True)
class Reference:
    """What the answers of every model are compared with."""

    relevant: list[np.ndarray]
    n_items: int
    pop_pct: np.ndarray  # each item's popularity percentile among the training events
    held_out_pop_pct: float  # the same, for the held-out items

    @classmethod
    def of(cls, req: HeldOutRequests, items: ItemTable) -> "Reference":
        pop_pct = popularity_percentile(items.pop_all)
        held_out = summarize([pop_pct[r].mean() if len(r) else np.nan for r in req.relevant])
        return cls(req.relevant, items.n_items, pop_pct, held_out)

    def popularity(self) -> PopularityReference:
        return PopularityReference(held_out_pop_pct=round(self.held_out_pop_pct, 5))


def score(recommended: np.ndarray, ref: Reference) -> Scored:
    """Every metric at every k of one model's answers, in table order at each k; metrics that
    read others of the row (``after_reference``) come after all the others."""
    row: MetricRow = {}
    per_user: dict[str, np.ndarray] = {}

    def put(metrics: list[Metric], k: int) -> None:
        answers = AnswersAtK(
            recommended, ref.relevant, k, ref.n_items, ref.pop_pct, ref.held_out_pop_pct, row
        )
        for m in metrics:
            value = m.value(answers)
            if isinstance(value, np.ndarray):
                if m.at(k) in INTERVAL_METRICS:
                    per_user[m.at(k)] = value
                value = summarize(value)
            row[m.at(k)] = round(float(value), 5)

    first = [m for m in METRICS if not m.after_reference]
    last = [m for m in METRICS if m.after_reference]
    for k in KS:
        put(first, k)
    for k in KS:
        put(last, k)
    return Scored(row, per_user)


ACTIVITY_BUCKETS: Final[tuple[tuple[int, int], ...]] = (
    (1, 5),
    (6, 20),
    (21, 100),
    (101, 10**12),
)
SEGMENT_METRIC: Final = f"ndcg@{SUMMARY_K}"


def segments(
    req: HeldOutRequests,
    devices: list[str],
    activity: np.ndarray,
    per_model: dict[str, np.ndarray],
) -> Segments:
    """NDCG@10 per request device and per user-activity bucket (``activity``: training events
    of each request's user), per model (``per_model``: its per-user NDCG@10)."""
    device = np.array([devices[c.device] for c in req.contexts])
    groups: dict[str, dict[str, np.ndarray]] = {
        "device": {d: device == d for d in np.unique(device)},
        "activity": {
            (f"{lo}-{hi}" if hi < 10**12 else f"{lo}+"): (activity >= lo) & (activity <= hi)
            for lo, hi in ACTIVITY_BUCKETS
        },
    }
    out: Segments = {}
    for kind, masks in groups.items():
        out[kind] = {}
        for name, mask in masks.items():
            if mask.any():
                row = {"users": float(mask.sum())}
                row |= {m: round(summarize(v[mask]), 5) for m, v in per_model.items()}
                out[kind][str(name)] = row
    return out
