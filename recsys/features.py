"""Ranker features, defined once and called by both the offline training-set builder and the API.

Inputs are the same on both paths: a user's state as stored in Redis (candidates with stage-1
scores and sources, recent history, activity), the request context (time, device) and the build's
item table. The offline builder passes its states through the Redis codec first, so both paths
see identical, equally quantised inputs. Missing values are NaN, which LightGBM treats as missing.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from recsys.candidates.registry import SOURCES
from recsys.items import ItemTable
from recsys.user_state import UserState

RECENT_N = 10  # history events that describe the user's current taste
SIM_N = 5  # last items compared with each candidate in factor space

FEATURE_NAMES: tuple[str, ...] = (
    "stage1_score",
    "stage1_rank",
    *(s.feature for s in SOURCES.by_bit()),
    "n_sources",
    "item_pop_log",
    "item_pop_recent_log",
    "item_age_days",
    "item_duration_min",
    "user_events_log",
    "hours_since_last",
    "recent_completion",
    "genre_overlap",
    "genre_share_recent",
    "genre_match_last",
    "hour_of_day",
    "is_weekend",
    "device",
    "item_device_share",
    "sim_last_item",
    "sim_recent_mean",
    "pop_pct_in_request",
    "pop_vs_user",
    "release_vs_user_days",
)
CATEGORICAL_FEATURES: tuple[str, ...] = ("device",)


@dataclass(frozen=True)
class RequestContext:
    ts: int  # unix seconds of the request
    device: int  # device code in the build's vocabulary (0 = unknown)


def hour_of_day(ts: np.ndarray) -> np.ndarray:
    return ((ts % 86400) // 3600).astype(np.float32)


def is_weekend(ts: np.ndarray) -> np.ndarray:
    weekday = (ts // 86400 + 3) % 7  # 1970-01-01 was a Thursday (weekday 3, Monday = 0)
    return (weekday >= 5).astype(np.float32)


def _popcount(x: np.ndarray) -> np.ndarray:
    return np.bitwise_count(x).astype(np.float32)


# src_* columns, in flag-bit order (recsys.candidates.registry)
_SOURCE_BITS = tuple(s.flag for s in SOURCES.by_bit())


def build_features(
    states: Sequence[UserState], contexts: Sequence[RequestContext], items: ItemTable
) -> np.ndarray:
    """Feature matrix [total candidates, n features], rows in each state's candidate order.

    The API calls this for one request at a time (~500 rows), where fixed numpy overheads
    dominate: a per-request value is then broadcast as a scalar instead of gathered onto every
    row, and columns are written into one preallocated matrix. The values are the same either
    way (elementwise operations on the same inputs; tests/test_features.py compares batched
    offline and single-request online matrices bit for bit).
    """
    n_per = np.array([len(s.cand_item) for s in states], dtype=np.int64)
    if len(states) == 1:
        group = None
        only = states[0]
        cand = only.cand_item.astype(np.int64)
        score, sources = only.cand_score, only.cand_sources
        rank = np.arange(len(cand), dtype=np.float32)
    else:
        group = np.repeat(np.arange(len(states)), n_per)
        cand = np.concatenate([s.cand_item for s in states]).astype(np.int64)
        score = np.concatenate([s.cand_score for s in states])
        sources = np.concatenate([s.cand_sources for s in states])
        rank = np.concatenate([np.arange(n, dtype=np.float32) for n in n_per])

    def per_row(values: np.ndarray) -> np.ndarray:
        """A per-request value on each candidate's row (a broadcastable scalar for one)."""
        return values[0] if group is None else values[group]

    ts = np.array([c.ts for c in contexts], dtype=np.int64)
    device = np.array([c.device for c in contexts], dtype=np.int64)
    user = _user_features(states, ts, items)

    cand_genres = items.genre_mask[cand]
    cand_genre_count = np.maximum(_popcount(cand_genres), 1.0)
    overlap = _popcount(cand_genres & per_row(user.recent_genres)) / cand_genre_count
    match_last = (cand_genres & per_row(user.last_genres)) != 0
    share_recent = _genre_share(cand_genres, user, group)

    cand_vec = items.factors_normed[cand]
    sim_last = _row_dot(cand_vec, user.last_vec, group)
    sim_mean = _row_dot(cand_vec, user.mean_vec, group)
    no_hist = ~per_row(user.has_history)
    sim_last[no_hist] = np.nan
    sim_mean[no_hist] = np.nan

    item_pop = items.pop_all[cand]
    release = items.release_ts[cand]
    columns = (
        score,
        rank,
        *((sources & bit) != 0 for bit in _SOURCE_BITS),
        _popcount(sources),
        item_pop,
        items.pop_recent[cand],
        (per_row(ts) - release) / 86400.0,
        items.duration_min[cand],
        per_row(np.log1p(user.n_events)),
        per_row(user.hours_since_last),
        per_row(user.recent_completion),
        overlap,
        share_recent,
        match_last,
        per_row(hour_of_day(ts)),
        per_row(is_weekend(ts)),
        per_row(device),
        items.device_share[cand, per_row(device)],
        sim_last,
        sim_mean,
        _percentile_within(item_pop, n_per),
        item_pop - per_row(user.recent_pop),
        (release - per_row(user.recent_release)) / 86400.0,
    )
    out = np.empty((len(cand), len(columns)), dtype=np.float32)
    for j, column in enumerate(columns):
        out[:, j] = column  # casts to float32 as np.asarray(column, dtype=np.float32) would
    return out


def _row_dot(cand_vec: np.ndarray, user_vec: np.ndarray, group: np.ndarray | None) -> np.ndarray:
    """Each candidate's dot product with its request's user vector. One einsum kernel either
    way (a broadcast view for one request), so both paths sum in the same order."""
    other = np.broadcast_to(user_vec[0], cand_vec.shape) if group is None else user_vec[group]
    return np.einsum("nd,nd->n", cand_vec, other)


def _percentile_within(values: np.ndarray, n_per: np.ndarray) -> np.ndarray:
    """Rank of each value within its request's candidates, 0 (lowest) to 1 (highest).

    The rank is the inverse of the stable sort order, scattered in one step (the same integers
    as a second argsort, at half the cost)."""
    out = np.empty(len(values), dtype=np.float32)
    start = 0
    for n in n_per.tolist():
        if n:
            ranks = np.empty(n, dtype=np.int64)
            ranks[np.argsort(values[start : start + n], kind="stable")] = np.arange(n)
            out[start : start + n] = ranks / max(n - 1, 1)
        start += n
    return out


@dataclass(frozen=True)
class _UserFeatures:
    n_events: np.ndarray  # float32 [G]
    hours_since_last: np.ndarray
    recent_completion: np.ndarray
    recent_genres: np.ndarray  # uint64 [G] union of the last RECENT_N watches' genres
    last_genres: np.ndarray  # uint64 [G]
    recent_masks: np.ndarray  # uint64 [G, RECENT_N] (0 = padding)
    recent_count: np.ndarray  # float32 [G]
    last_vec: np.ndarray  # float32 [G, d]
    mean_vec: np.ndarray  # float32 [G, d]
    has_history: np.ndarray  # bool [G]
    recent_pop: np.ndarray  # float32 [G] mean log popularity of recent watches (nan: none)
    recent_release: np.ndarray  # float64 [G] mean release time of recent watches (nan: unknown)


def _user_features(states: Sequence[UserState], ts: np.ndarray, items: ItemTable) -> _UserFeatures:
    g, d = len(states), items.factors_normed.shape[1]
    recent_masks = np.zeros((g, RECENT_N), dtype=np.uint64)
    last_vec = np.zeros((g, d), dtype=np.float32)
    mean_vec = np.zeros((g, d), dtype=np.float32)
    hours = np.full(g, np.nan, dtype=np.float32)
    recent_pop = np.full(g, np.nan, dtype=np.float32)
    recent_release = np.full(g, np.nan, dtype=np.float64)
    completion = np.full(g, np.nan, dtype=np.float32)
    for j, s in enumerate(states):
        known = s.hist_item >= 0
        hist = s.hist_item[known][-RECENT_N:]
        if len(s.hist_ts):
            hours[j] = (ts[j] - s.hist_ts[-1]) / 3600.0
        recent_c = s.hist_completion[-RECENT_N:]
        if np.isfinite(recent_c).any():
            completion[j] = np.nanmean(recent_c)
        if len(hist):
            recent_pop[j] = items.pop_all[hist].mean()
            released = items.release_ts[hist]
            if np.isfinite(released).any():
                recent_release[j] = np.nanmean(released)
            recent_masks[j, : len(hist)] = items.genre_mask[hist]
            vecs = items.factors_normed[hist[-SIM_N:]]
            last_vec[j] = vecs[-1]
            mean = vecs.mean(axis=0)
            mean_vec[j] = mean / max(float(np.linalg.norm(mean)), 1e-9)
    n_recent = np.array(
        [min(int((s.hist_item >= 0).sum()), RECENT_N) for s in states], dtype=np.float32
    )
    last_genres = np.array(
        [recent_masks[j, int(n) - 1] if n else 0 for j, n in enumerate(n_recent)], dtype=np.uint64
    )
    return _UserFeatures(
        n_events=np.array([s.n_events for s in states], dtype=np.float32),
        hours_since_last=hours,
        recent_completion=completion,
        recent_genres=np.bitwise_or.reduce(recent_masks, axis=1),
        last_genres=last_genres,
        recent_masks=recent_masks,
        recent_count=n_recent,
        last_vec=last_vec,
        mean_vec=mean_vec,
        has_history=n_recent > 0,
        recent_pop=recent_pop,
        recent_release=recent_release,
    )


def _genre_share(
    cand_genres: np.ndarray, user: _UserFeatures, group: np.ndarray | None
) -> np.ndarray:
    """Share of the user's recent watches that have a genre in common with the candidate.

    One request: one [rows, RECENT_N] pass. A batch: a loop over the RECENT_N slots, so the
    temporaries stay one column wide (an offline batch has millions of rows)."""
    if group is None:
        hits = np.count_nonzero(cand_genres[:, None] & user.recent_masks[0], axis=1)
        shares = hits.astype(np.float32)
        recent_count = user.recent_count[0]
    else:
        shares = np.zeros(len(cand_genres), dtype=np.float32)
        for k in range(RECENT_N):
            shares += (cand_genres & user.recent_masks[group, k]) != 0
        recent_count = user.recent_count[group]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = shares / recent_count
    return np.where(recent_count > 0, out, np.nan).astype(np.float32)
