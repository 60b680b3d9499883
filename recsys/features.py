"""Ranker features, defined once and called by both the offline training-set builder and the API.

Inputs are the same on both paths: a user's state as stored in Redis (candidates with stage-1
scores and sources, recent history, activity), the request context (time, device) and the build's
item table. The offline builder passes its states through the Redis codec first, so both paths
see identical, equally quantised inputs. Missing values are NaN, which LightGBM treats as missing.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from recsys.candidates.sources import Source
from recsys.items import ItemTable
from recsys.store.codec import UserState

RECENT_N = 10  # history events that describe the user's current taste
SIM_N = 5  # last items compared with each candidate in factor space

FEATURE_NAMES: tuple[str, ...] = (
    "stage1_score",
    "stage1_rank",
    "src_als",
    "src_popular",
    "src_item_factors",
    "src_item_content",
    "src_fresh",
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


def build_features(
    states: Sequence[UserState], contexts: Sequence[RequestContext], items: ItemTable
) -> np.ndarray:
    """Feature matrix [total candidates, n features], rows in each state's candidate order."""
    n_per = np.array([len(s.cand_item) for s in states], dtype=np.int64)
    group = np.repeat(np.arange(len(states)), n_per)
    cand = np.concatenate([s.cand_item for s in states]).astype(np.int64)
    score = np.concatenate([s.cand_score for s in states])
    sources = np.concatenate([s.cand_sources for s in states])
    rank = np.concatenate([np.arange(n, dtype=np.float32) for n in n_per])

    ts = np.array([c.ts for c in contexts], dtype=np.int64)
    device = np.array([c.device for c in contexts], dtype=np.int64)
    user = _user_features(states, ts, items)

    cand_genres = items.genre_mask[cand]
    cand_genre_count = np.maximum(_popcount(cand_genres), 1.0)
    overlap = _popcount(cand_genres & user.recent_genres[group]) / cand_genre_count
    match_last = ((cand_genres & user.last_genres[group]) != 0).astype(np.float32)
    share_recent = _genre_share(cand_genres, user, group)

    cand_vec = items.factors_normed[cand]
    sim_last = np.einsum("nd,nd->n", cand_vec, user.last_vec[group])
    sim_mean = np.einsum("nd,nd->n", cand_vec, user.mean_vec[group])
    has_hist = user.has_history[group]
    sim_last[~has_hist] = np.nan
    sim_mean[~has_hist] = np.nan

    item_pop = items.pop_all[cand]
    release = items.release_ts[cand]
    columns = (
        score,
        rank,
        (sources & Source.ALS) != 0,
        (sources & Source.POPULAR) != 0,
        (sources & Source.ITEM_FACTORS) != 0,
        (sources & Source.ITEM_CONTENT) != 0,
        (sources & Source.FRESH) != 0,
        _popcount(sources),
        item_pop,
        items.pop_recent[cand],
        (ts[group] - release) / 86400.0,
        items.duration_min[cand],
        np.log1p(user.n_events)[group],
        user.hours_since_last[group],
        user.recent_completion[group],
        overlap,
        share_recent,
        match_last,
        hour_of_day(ts)[group],
        is_weekend(ts)[group],
        device[group],
        items.device_share[cand, device[group]],
        sim_last,
        sim_mean,
        _percentile_within(item_pop, n_per),
        item_pop - user.recent_pop[group],
        (release - user.recent_release[group]) / 86400.0,
    )
    return np.column_stack([np.asarray(c, dtype=np.float32) for c in columns])


def _percentile_within(values: np.ndarray, n_per: np.ndarray) -> np.ndarray:
    """Rank of each value within its request's candidates, 0 (lowest) to 1 (highest)."""
    out = np.empty(len(values), dtype=np.float32)
    start = 0
    for n in n_per.tolist():
        if n:
            ranks = np.argsort(np.argsort(values[start : start + n], kind="stable"), kind="stable")
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


def _genre_share(cand_genres: np.ndarray, user: _UserFeatures, group: np.ndarray) -> np.ndarray:
    """Share of the user's recent watches that have a genre in common with the candidate."""
    shares = np.zeros(len(cand_genres), dtype=np.float32)
    for k in range(RECENT_N):
        shares += ((cand_genres & user.recent_masks[group, k]) != 0).astype(np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = shares / user.recent_count[group]
    return np.where(user.recent_count[group] > 0, out, np.nan).astype(np.float32)
