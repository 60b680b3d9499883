"""What one call's features are computed from: the users' stored states, the request contexts and
the build's item table, plus the arrays several features share, each computed once.

Built for one request (the API, ~500 rows) or for a batch (the offline training set, millions of
rows). For one request a per-request value is broadcast as a scalar instead of gathered onto
every row, since fixed numpy overheads dominate at that size. The values are the same either way
(elementwise operations on the same inputs; ``tests/test_features.py`` compares batched offline
and single-request online matrices bit for bit).
"""

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Final

import numpy as np

from recsys.items import ItemTable
from recsys.user_state import UserState

RECENT_N = 10  # history events that describe the user's current taste
SIM_N = 5  # last items compared with each candidate in factor space
SEQ_LAST: Final = (1, 3, 10)  # last watches whose transition weights to a candidate are summed


@dataclass(frozen=True)
class RequestContext:
    ts: int  # unix seconds of the request
    device: int  # device code in the build's vocabulary (0 = unknown)


def popcount(x: np.ndarray) -> np.ndarray:
    return np.bitwise_count(x).astype(np.float32)


class FeatureInputs:
    """Candidates of every request, flattened in each state's candidate order, and what the
    features read about them, their users and their requests."""

    def __init__(
        self,
        states: Sequence[UserState],
        contexts: Sequence[RequestContext],
        items: ItemTable,
    ) -> None:
        self.items = items
        self.states = states
        self.n_per = np.array([len(s.cand_item) for s in states], dtype=np.int64)
        self.group: np.ndarray | None  # request of each row; None for a single request
        if len(states) == 1:
            only = states[0]
            self.group = None
            self.cand = only.cand_item.astype(np.int64)
            self.score, self.sources = only.cand_score, only.cand_sources
            self.rank = np.arange(len(self.cand), dtype=np.float32)
        else:
            self.group = np.repeat(np.arange(len(states)), self.n_per)
            self.cand = np.concatenate([s.cand_item for s in states]).astype(np.int64)
            self.score = np.concatenate([s.cand_score for s in states])
            self.sources = np.concatenate([s.cand_sources for s in states])
            self.rank = np.concatenate([np.arange(n, dtype=np.float32) for n in self.n_per])
        self.ts = np.array([c.ts for c in contexts], dtype=np.int64)
        self.device = np.array([c.device for c in contexts], dtype=np.int64)
        # shared by several features, so gathered once
        self.user = UserAggregates.of(states, self.ts, items)
        self.item_pop = items.pop_all[self.cand]
        self.release = items.release_ts[self.cand]
        self.cand_genres = items.genre_mask[self.cand]
        self.cand_vec = items.factors_normed[self.cand]

    @property
    def n_rows(self) -> int:
        return len(self.cand)

    def per_row(self, values: np.ndarray) -> Any:
        """A per-request value on each candidate's row (a broadcastable scalar for one)."""
        return values[0] if self.group is None else values[self.group]

    def similarity(self, user_vec: np.ndarray) -> np.ndarray:
        """Each candidate's cosine with its request's user vector, NaN for users without
        history. One einsum kernel either way (a broadcast view for one request), so both paths
        sum in the same order."""
        cand_vec = self.cand_vec
        if self.group is None:
            other = np.broadcast_to(user_vec[0], cand_vec.shape)
        else:
            other = user_vec[self.group]
        sims = np.einsum("nd,nd->n", cand_vec, other)
        sims[~self.per_row(self.user.has_history)] = np.nan
        return sims

    def genre_share(self) -> np.ndarray:
        """Share of the user's recent watches that have a genre in common with the candidate.

        One request: one [rows, RECENT_N] pass. A batch: a loop over the RECENT_N slots, so the
        temporaries stay one column wide (an offline batch has millions of rows)."""
        cand_genres, user = self.cand_genres, self.user
        if self.group is None:
            hits = np.count_nonzero(cand_genres[:, None] & user.recent_masks[0], axis=1)
            shares = hits.astype(np.float32)
            recent_count = user.recent_count[0]
        else:
            shares = np.zeros(len(cand_genres), dtype=np.float32)
            for k in range(RECENT_N):
                shares += (cand_genres & user.recent_masks[self.group, k]) != 0
            recent_count = user.recent_count[self.group]
        with np.errstate(invalid="ignore", divide="ignore"):
            out = shares / recent_count
        return np.where(recent_count > 0, out, np.nan).astype(np.float32)

    @cached_property
    def sequence(self) -> "SequenceFeatures":
        """What the build's transition and co-visit tables say about each candidate, given the
        user's last watches (events posted to the API included).

        One request at a time, offline too: each request's sums then run over the same entries
        in the same order on both paths, so the features are bit-identical."""
        blocks = [SequenceFeatures.of(s.cand_item, s.hist_item, self.items) for s in self.states]
        if len(blocks) == 1:
            return blocks[0]
        return SequenceFeatures(
            transition={n: np.concatenate([b.transition[n] for b in blocks]) for n in SEQ_LAST},
            rank_last=np.concatenate([b.rank_last for b in blocks]),
            covisit_log=np.concatenate([b.covisit_log for b in blocks]),
        )

    def percentile_within_request(self, values: np.ndarray) -> np.ndarray:
        """Rank of each value within its request's candidates, 0 (lowest) to 1 (highest).

        The rank is the inverse of the stable sort order, scattered in one step (the same
        integers as a second argsort, at half the cost)."""
        out = np.empty(len(values), dtype=np.float32)
        start = 0
        for n in self.n_per.tolist():
            if n:
                ranks = np.empty(n, dtype=np.int64)
                ranks[np.argsort(values[start : start + n], kind="stable")] = np.arange(n)
                out[start : start + n] = ranks / max(n - 1, 1)
            start += n
        return out


@dataclass(frozen=True)
class UserAggregates:
    """Per-request summaries of each user's recent history [G = requests]."""

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

    @classmethod
    def of(cls, states: Sequence[UserState], ts: np.ndarray, items: ItemTable) -> "UserAggregates":
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
            [recent_masks[j, int(n) - 1] if n else 0 for j, n in enumerate(n_recent)],
            dtype=np.uint64,
        )
        return cls(
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


@dataclass(frozen=True)
class SequenceFeatures:
    """Per candidate row, from the order of events (``ItemTable.transitions`` and ``covisits``);
    NaN for a user without history."""

    transition: dict[int, np.ndarray]  # n -> sum over the last n watches of P(candidate | watch)
    rank_last: np.ndarray  # rank among the last watch's next items; the table's width if absent
    covisit_log: np.ndarray  # log(1 + co-visits with the last max(SEQ_LAST) watches)

    @classmethod
    def of(cls, cand: np.ndarray, hist_item: np.ndarray, items: ItemTable) -> "SequenceFeatures":
        """One request's rows (``cand`` in its candidate order)."""
        n = len(cand)
        anchors = hist_item[hist_item >= 0][-max(SEQ_LAST) :]
        if not len(anchors) or not n:
            blank = np.full(n, np.nan, dtype=np.float32)
            return cls(dict.fromkeys(SEQ_LAST, blank), blank, blank)
        order = np.argsort(cand, kind="stable")
        sorted_cand = cand[order]

        def hits(table: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            """(candidate row, anchor position, neighbour rank) of every anchor's neighbour
            that is a candidate."""
            ids = table[anchors]  # [A, M]
            at = np.minimum(np.searchsorted(sorted_cand, ids), n - 1)
            a, r = np.nonzero((ids >= 0) & (sorted_cand[at] == ids))
            return order[at[a, r]], a, r

        row, anchor, rank = hits(items.transitions.ids)
        prob = items.transitions.sims[anchors[anchor], rank]
        a_n = len(anchors)
        transition = {}
        for last in SEQ_LAST:
            near = anchor >= a_n - last
            transition[last] = np.bincount(row[near], weights=prob[near], minlength=n)
        rank_last = np.full(n, items.transitions.ids.shape[1], dtype=np.float32)
        is_last = anchor == a_n - 1
        rank_last[row[is_last]] = rank[is_last]
        row, anchor, rank = hits(items.covisits.ids)
        counts = items.covisits.sims[anchors[anchor], rank]
        covisit_log = np.log1p(np.bincount(row, weights=counts, minlength=n))
        f32 = np.float32
        return cls(
            {k: v.astype(f32) for k, v in transition.items()}, rank_last, covisit_log.astype(f32)
        )
