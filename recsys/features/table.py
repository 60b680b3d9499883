"""Every ranker feature, declared once: its name, what it means, and how it is computed.

The table's order is the column order of the feature matrix and of the trained model
(``Ranker`` refuses a model whose feature names differ). A feature is one ``Feature`` line:
a name, a one-line meaning, and a function of ``FeatureInputs`` returning one value per
candidate row (or one scalar, broadcast, when every row shares it). Shared intermediate arrays
belong in ``FeatureInputs`` as cached properties, so each is computed once per call.
"""

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from recsys.candidates.registry import SOURCES
from recsys.candidates.source import SourceTable
from recsys.features.inputs import FeatureInputs, popcount


@dataclass(frozen=True)
class Feature:
    name: str
    meaning: str
    compute: Callable[[FeatureInputs], Any]
    """One value per candidate row (anything numpy casts to float32), or a scalar."""
    categorical: bool = False


class FeatureTable:
    """The features in column order; names are checked distinct when the table is made."""

    def __init__(self, features: Sequence[Feature]) -> None:
        names = [f.name for f in features]
        if len(set(names)) != len(names):
            raise ValueError(f"feature names repeat: {names}")
        self._features = tuple(features)
        self.names: tuple[str, ...] = tuple(names)
        self.categorical: tuple[str, ...] = tuple(f.name for f in features if f.categorical)

    def __iter__(self) -> Iterator[Feature]:
        return iter(self._features)

    def __len__(self) -> int:
        return len(self._features)


def hour_of_day(ts: np.ndarray) -> np.ndarray:
    return ((ts % 86400) // 3600).astype(np.float32)


def is_weekend(ts: np.ndarray) -> np.ndarray:
    weekday = (ts // 86400 + 3) % 7  # 1970-01-01 was a Thursday (weekday 3, Monday = 0)
    return (weekday >= 5).astype(np.float32)


def source_flag_features(sources: SourceTable) -> list[Feature]:
    """``src_<name>``: this source found the candidate. In flag-bit order, so a new source's
    column comes after the existing ones."""

    def found_by(flag: int) -> Callable[[FeatureInputs], np.ndarray]:
        return lambda x: (x.sources & flag) != 0

    return [
        Feature(s.feature, f"found by the {s.name} source", found_by(s.flag))
        for s in sources.by_bit()
    ]


FEATURES: Final = FeatureTable(
    [
        Feature("stage1_score", "stage-1 score: ALS inner product", lambda x: x.score),
        Feature("stage1_rank", "position in stage-1 order, 0 = best", lambda x: x.rank),
        *source_flag_features(SOURCES),
        Feature("n_sources", "how many sources found it", lambda x: popcount(x.sources)),
        Feature("item_pop_log", "log(1 + training events of the item)", lambda x: x.item_pop),
        Feature(
            "item_pop_recent_log",
            "log(1 + the item's events in the last 7 days)",
            lambda x: x.items.pop_recent[x.cand],
        ),
        Feature(
            "item_age_days",
            "days from the item's release to the request",
            lambda x: (x.per_row(x.ts) - x.release) / 86400.0,
        ),
        Feature("item_duration_min", "item duration", lambda x: x.items.duration_min[x.cand]),
        Feature(
            "user_events_log",
            "log(1 + the user's events)",
            lambda x: x.per_row(np.log1p(x.user.n_events)),
        ),
        Feature(
            "hours_since_last",
            "hours from the user's last event to the request",
            lambda x: x.per_row(x.user.hours_since_last),
        ),
        Feature(
            "recent_completion",
            "mean completion of the user's recent watches",
            lambda x: x.per_row(x.user.recent_completion),
        ),
        Feature(
            "genre_overlap",
            "share of the item's genres among the user's recent genres",
            lambda x: (
                popcount(x.cand_genres & x.per_row(x.user.recent_genres))
                / np.maximum(popcount(x.cand_genres), 1.0)
            ),
        ),
        Feature(
            "genre_share_recent",
            "share of recent watches sharing a genre with the item",
            lambda x: x.genre_share(),
        ),
        Feature(
            "genre_match_last",
            "shares a genre with the last watch",
            lambda x: (x.cand_genres & x.per_row(x.user.last_genres)) != 0,
        ),
        Feature("hour_of_day", "UTC hour of the request", lambda x: x.per_row(hour_of_day(x.ts))),
        Feature(
            "is_weekend", "request on a Saturday or Sunday", lambda x: x.per_row(is_weekend(x.ts))
        ),
        Feature("device", "device of the request", lambda x: x.per_row(x.device), True),
        Feature(
            "item_device_share",
            "share of the item's views on the request's device",
            lambda x: x.items.device_share[x.cand, x.per_row(x.device)],
        ),
        Feature(
            "sim_last_item",
            "factor cosine with the last watch",
            lambda x: x.similarity(x.user.last_vec),
        ),
        Feature(
            "sim_recent_mean",
            "factor cosine with the mean of the last 5 watches",
            lambda x: x.similarity(x.user.mean_vec),
        ),
        Feature(
            "pop_pct_in_request",
            "popularity rank among the request's candidates, 0 to 1",
            lambda x: x.percentile_within_request(x.item_pop),
        ),
        Feature(
            "pop_vs_user",
            "item popularity minus the user's recent mean",
            lambda x: x.item_pop - x.per_row(x.user.recent_pop),
        ),
        Feature(
            "release_vs_user_days",
            "item release minus the user's recent mean release, in days",
            lambda x: (x.release - x.per_row(x.user.recent_release)) / 86400.0,
        ),
        Feature(
            "seq_trans_last1",
            "probability that the item comes next after the last watch (transition table)",
            lambda x: x.sequence.transition[1],
        ),
        Feature(
            "seq_trans_last3",
            "transition probabilities to the item from the last 3 watches, summed",
            lambda x: x.sequence.transition[3],
        ),
        Feature(
            "seq_trans_last10",
            "transition probabilities to the item from the last 10 watches, summed",
            lambda x: x.sequence.transition[10],
        ),
        Feature(
            "seq_rank_last",
            "rank among the last watch's next items (the table's width when absent)",
            lambda x: x.sequence.rank_last,
        ),
        Feature(
            "covisit_count_recent",
            "log(1 + co-visits with the last 10 watches)",
            lambda x: x.sequence.covisit_log,
        ),
    ]
)
