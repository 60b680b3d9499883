"""Every online metric, declared once: what ``recsys online-report`` and ``recsys ab report``
compute from impressions joined with the events that followed them (``online.py``).

An online metric is a ratio of two sums over *shown items* (one row per item of each logged
answer, with what the user did about it within the attribution window): its value for a group
of users is sum(numerator) / sum(denominator) over their rows, so every impression weighs the
same; its interval resamples users, and an A/B comparison tests arms as sets of users. The
report's tables, its Definitions section and docs/METRICS.md's online list read this table; the
live counterparts in ``/metrics`` are named in docs/API.md. Catalogue coverage is the one
metric that is not a per-user ratio (a set of items), declared here with the rest.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import polars as pl

# Columns of the shown-item rows (``online.shown_items``), named once.
POSITION: Final = "position"  # 0 = first item of the answer
CLICKED: Final = "clicked"  # a click or a watch of the item, attributed to this answer
WATCHED: Final = "watched"
COMPLETION: Final = "completion"  # the highest completion of the attributed watches (null: none)
SKIPPED: Final = "skipped"
DISLIKED: Final = "disliked"
HIT: Final = "hit"  # the answer this row belongs to got at least one click or watch
POP_PCT: Final = "pop_pct"  # the item's popularity percentile in the build (null: unknown)

CTR_KS: Final = (5, 10, 20)
"""The cut-offs of CTR@k: items at positions 1..k of each answer."""


@dataclass(frozen=True)
class OnlineMetric:
    key: str
    """Report key, e.g. ``ctr@10``."""
    label: str
    numerator: Callable[[], pl.Expr]
    """Per shown-item row, summed; its docstring is the metric's definition."""
    denominator: Callable[[], pl.Expr]
    digits: int = 4

    @property
    def definition(self) -> str:
        return " ".join((self.numerator.__doc__ or self.key).split())


def _count(flag: str) -> Callable[[], pl.Expr]:
    return lambda: pl.col(flag).cast(pl.Float64)


def _rows() -> pl.Expr:
    """1 per shown item (a column, not a literal: a literal sums to 1 per group)."""
    return pl.col(POSITION).is_not_null().cast(pl.Float64)


def _ctr(k: int) -> OnlineMetric:
    def clicked_in_top_k() -> pl.Expr:
        return (pl.col(CLICKED) & (pl.col(POSITION) < k)).cast(pl.Float64)

    clicked_in_top_k.__doc__ = (
        f"**CTR@{k}** (click-through rate): items at positions 1..{k} of an answer that the user "
        f"clicked or watched within the attribution window / items shown at positions 1..{k}, "
        "over all answers (an answer shorter than k counts the items it had)."
    )
    return OnlineMetric(
        f"ctr@{k}",
        f"CTR@{k}",
        clicked_in_top_k,
        lambda: (pl.col(POSITION) < k).cast(pl.Float64),
    )


def watched() -> pl.Expr:
    """**watch rate**: shown items the user then watched / items shown."""
    return pl.col(WATCHED).cast(pl.Float64)


def completion() -> pl.Expr:
    """**completion**: the mean completion (0..1) of the watches of shown items, over watches
    that report one."""
    return pl.col(COMPLETION).fill_null(0.0).cast(pl.Float64)


def hit() -> pl.Expr:
    """**hit rate** (online): answers with at least one item clicked or watched / answers."""
    return (pl.col(HIT) & (pl.col(POSITION) == 0)).cast(pl.Float64)


def skipped() -> pl.Expr:
    """**skip rate**: shown items the user skipped / items shown."""
    return pl.col(SKIPPED).cast(pl.Float64)


def disliked() -> pl.Expr:
    """**dislike rate**: shown items the user disliked / items shown."""
    return pl.col(DISLIKED).cast(pl.Float64)


def popularity() -> pl.Expr:
    """**pop pct** (popularity): the mean popularity percentile of the items shown, in the
    build that showed them (0 = least watched, 1 = most; as the offline report's pop pct@k)."""
    return pl.col(POP_PCT).fill_null(0.0).cast(pl.Float64)


ONLINE_METRICS: Final = (
    *(_ctr(k) for k in CTR_KS),
    OnlineMetric("watch_rate", "watch rate", watched, _rows),
    OnlineMetric(
        "completion",
        "completion",
        completion,
        lambda: (pl.col(WATCHED) & pl.col(COMPLETION).is_not_null()).cast(pl.Float64),
    ),
    OnlineMetric("hit_rate", "hit rate", hit, lambda: (pl.col(POSITION) == 0).cast(pl.Float64)),
    OnlineMetric("skip_rate", "skip rate", skipped, _rows),
    OnlineMetric("dislike_rate", "dislike rate", disliked, _rows),
    OnlineMetric(
        "pop_pct",
        "pop pct",
        popularity,
        lambda: pl.col(POP_PCT).is_not_null().cast(pl.Float64),
        digits=3,
    ),
)
ONLINE_METRIC_KEYS: Final = tuple(m.key for m in ONLINE_METRICS)
HEADLINE: Final = "ctr@10"
"""The metric an A/B report leads with."""

COVERAGE_KEY: Final = "coverage"
COVERAGE_DEFINITION: Final = (
    "**coverage** (catalogue coverage): distinct items shown / items in the largest catalogue of "
    "the builds that showed them; one number per group, without an interval."
)
DEFINITIONS: Final = (*(m.definition for m in ONLINE_METRICS), COVERAGE_DEFINITION)

DOC_BEGIN: Final = (
    "<!-- online metric table: generated from recsys/evaluation/online_metric_table.py -->"
)
DOC_END: Final = "<!-- end of online metric table -->"


def online_metrics_markdown() -> str:
    """The online metric list of docs/METRICS.md, between ``DOC_BEGIN`` and ``DOC_END``."""
    keys = [*ONLINE_METRIC_KEYS, COVERAGE_KEY]
    lines = [f"- `{key}`: {definition}" for key, definition in zip(keys, DEFINITIONS, strict=True)]
    return "\n".join([DOC_BEGIN, "", *lines, "", DOC_END])


def with_online_metrics_markdown(doc: str) -> str:
    """``doc`` (docs/METRICS.md) with its generated online metric list replaced."""
    start, end = doc.index(DOC_BEGIN), doc.index(DOC_END) + len(DOC_END)
    return doc[:start] + online_metrics_markdown() + doc[end:]
