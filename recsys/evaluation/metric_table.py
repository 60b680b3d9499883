"""Every number a report gives per model, declared once: the metrics, the cut-offs, and the
models that answer.

Scoring computes each ``Metric`` at every k of ``KS``; the report's tables, its Definitions
section and its plots, and the metric list of ``docs/METRICS.md`` (``metrics_markdown``; a test
keeps the file in step) all read this table. A metric is one function (its value from one
model's answers at k, its definition as docstring) and one line of ``METRICS`` (report key,
name, and where it shows).
"""

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Final

import numpy as np

from recsys.evaluation.ranking_metrics import (
    Hits,
    catalogue_coverage,
    mean_popularity_percentile,
)

KS: Final[tuple[int, ...]] = (1, 5, 10, 20, 50, 100)
"""Every metric is reported at each of these k; every model answers ``DEPTH`` items."""
DEPTH: Final = max(KS)
SUMMARY_K: Final = 10
"""The k of the report's summary table, its intervals and its paired comparisons."""


class AnswersAtK:
    """One model's answers to every test request, cut at k, with what metrics compare them to."""

    def __init__(
        self,
        recommended: np.ndarray,
        relevant: list[np.ndarray],
        k: int,
        n_items: int,
        pop_pct: np.ndarray,
        held_out_pop_pct: float,
        row: dict[str, float],
    ) -> None:
        self.recommended = recommended  # [U, DEPTH] item indices, -1 padded
        self.relevant = relevant  # held-out items per request
        self.k = k
        self.n_items = n_items
        self.pop_pct = pop_pct  # each item's popularity percentile
        self.held_out_pop_pct = held_out_pop_pct  # the same, averaged over held-out items
        self.row = row  # the model's values so far (rounded as reported)

    @cached_property
    def hits(self) -> Hits:
        return Hits.at_k(self.recommended, self.relevant, self.k)


def ndcg(a: AnswersAtK) -> np.ndarray:
    """**NDCG@k** (normalised discounted cumulative gain) = DCG@k / IDCG@k. Gains are binary:
    DCG@k = sum over ranks r <= k holding a relevant item of 1 / log2(r + 1). The ideal DCG puts
    the user's held-out items first: IDCG@k = sum for r = 1..min(|held-out items|, k) of
    1 / log2(r + 1), so a list shorter than k is not rescued. One held-out item found at rank 3
    gives 1/log2(4) = 0.5; two held-out items at ranks 1 and 3 give
    (1 + 0.5) / (1 + 1/log2(3)) = 0.9197. Averaged over users."""
    return a.hits.ndcg()


def hit_rate(a: AnswersAtK) -> np.ndarray:
    """**HR@k** (hit rate): 1 if at least one held-out item is in the top k, else 0; averaged,
    the share of users with at least one hit."""
    return a.hits.hit_rate()


def recall(a: AnswersAtK) -> np.ndarray:
    """**Recall@k**: held-out items in the top k / held-out items (not capped at k), averaged
    over users. With one held-out item per user it equals HR@k."""
    return a.hits.recall()


def mrr(a: AnswersAtK) -> np.ndarray:
    """**MRR@k**: 1 / rank of the first held-out item in the top k (0 without one), averaged over
    users."""
    return a.hits.mrr()


def coverage(a: AnswersAtK) -> float:
    """**coverage@k**: the share of the catalogue that appears in at least one user's top k."""
    return catalogue_coverage(a.recommended, a.k, a.n_items)


def popularity(a: AnswersAtK) -> np.ndarray:
    """**pop pct@k** (popularity): the mean popularity percentile of the items in a top k,
    averaged over users. An item's percentile is its mid-rank among all catalogue items by
    training events, scaled to [0, 1]: (rank - 1) / (n_items - 1), ties sharing their average
    rank. The most watched item is 1 and the catalogue averages exactly 0.5, so the number reads
    the same on any dataset."""
    return mean_popularity_percentile(a.recommended, a.k, a.pop_pct)


def popularity_bias(a: AnswersAtK) -> float:
    """**pop bias@k** = pop pct@k minus the same number for the held-out items
    (popularity_reference.held_out_pop_pct, what users really watched next): above 0, a model
    recommends more popular items than users went on to watch; the popularity baseline is the
    extreme case."""
    return a.row[f"pop_pct@{a.k}"] - a.held_out_pop_pct


@dataclass(frozen=True)
class Metric:
    key: str
    """Report key: ``<key>@<k>`` in every row of ``results``."""
    label: str
    """Its name in tables and definitions, with a literal ``k``: ``NDCG@k``."""
    value: Callable[[AnswersAtK], "np.ndarray | float"]
    """Per-user values (averaged over the users a metric is defined for) or one number. Its
    docstring is the metric's definition, in the report and in docs/METRICS.md."""
    digits: int = 4
    """Decimals in the summary table; 0: not in the summary."""
    plotted: bool = False
    """A panel of ``metrics_at_k.png``."""
    interval: bool = False
    """Bootstrap interval and paired comparisons at ``SUMMARY_K`` (per-user values kept)."""
    after_reference: bool = False
    """Reads other metrics of the row (at every k), so it is computed after them."""

    @property
    def definition(self) -> str:
        """One paragraph of markdown: the docstring of ``value``."""
        return " ".join((self.value.__doc__ or self.key).split())

    def at(self, k: int) -> str:
        return f"{self.key}@{k}"

    def label_at(self, k: int) -> str:
        return self.label.replace("@k", f"@{k}")


METRICS: Final = (
    Metric("ndcg", "NDCG@k", ndcg, plotted=True, interval=True),
    Metric("hr", "HR@k", hit_rate, plotted=True, interval=True),
    Metric("recall", "Recall@k", recall, plotted=True),
    Metric("mrr", "MRR@k", mrr, plotted=True),
    Metric("coverage", "coverage@k", coverage),
    Metric("pop_pct", "pop pct@k", popularity, digits=3),
    Metric("pop_bias", "pop bias@k", popularity_bias, digits=0, after_reference=True),
)
METRIC_KEYS: Final = tuple(m.key for m in METRICS)
INTERVAL_METRICS: Final = tuple(m.at(SUMMARY_K) for m in METRICS if m.interval)
"""Per-user values kept for bootstrap intervals and paired comparisons."""


@dataclass(frozen=True)
class ScoredModel:
    """A row of the report: a model whose answers are scored."""

    key: str
    name: str  # short, for tables and legends
    title: str  # long, for the summary table
    colour: str  # in every plot


MODELS: Final = (
    ScoredModel("popularity", "popularity", "popularity (most watched, seen removed)", "#9e9e9e"),
    ScoredModel(
        "item_knn", "item-kNN", "item-kNN (cosine, 100 neighbours, seen removed)", "#8c6d31"
    ),
    ScoredModel("als", "ALS", "ALS (exact top-k, seen removed)", "#1f77b4"),
    ScoredModel("stage1", "stage 1", "stage 1 as served (candidates in score order)", "#17becf"),
    ScoredModel("two_stage", "two-stage", "two-stage (LambdaRank over candidates)", "#d62728"),
)
MODEL_NAMES: Final = tuple(m.key for m in MODELS)
_BY_KEY: Final = {m.key: m for m in MODELS}


def model_name(key: str) -> str:
    """Short name of a row (or the key itself for a row this table does not know)."""
    return _BY_KEY[key].name if key in _BY_KEY else key


def model_title(key: str) -> str:
    return _BY_KEY[key].title if key in _BY_KEY else key


def model_colour(key: str) -> str | None:
    return _BY_KEY[key].colour if key in _BY_KEY else None


DOC_BEGIN: Final = "<!-- metric table: generated from recsys/evaluation/metric_table.py -->"
DOC_END: Final = "<!-- end of metric table -->"


def metrics_markdown() -> str:
    """The metric list of docs/METRICS.md, between ``DOC_BEGIN`` and ``DOC_END``."""
    lines = [DOC_BEGIN, ""]
    lines += [f"- `{m.key}@k`: {m.definition}" for m in METRICS]
    return "\n".join([*lines, "", DOC_END])


def with_metrics_markdown(doc: str) -> str:
    """``doc`` (docs/METRICS.md) with its generated metric list replaced by the current one."""
    start, end = doc.index(DOC_BEGIN), doc.index(DOC_END) + len(DOC_END)
    return doc[:start] + metrics_markdown() + doc[end:]
