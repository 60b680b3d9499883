"""Synthetic streaming-service logs with planted structure that the two stages can learn.

The log is used by ``make demo``, by the tests and by load tests. It has to look like a real
video-on-demand log, and it has to carry signal. Matrix factorisation (stage 1) should beat
popularity. The context-aware ranker (stage 2) should beat matrix factorisation, because some of
what drives a watch is not in the user-item matrix: the device, the hour, how new the title is,
and what the user watched just before.

Generative story
----------------
World. There are 18 genres with a skewed prior. Each of 24 *personas* likes a few genres and has
a centre in an 8-dimensional "style" space. Each item has 1-3 related genres, a Zipf popularity
(exponent 1, in random order of ids), a style vector partly set by its main genre, a type (film of
80-150 min or episode of 20-50 min, with the share depending on genre) and a release date. About
88% of the catalogue was released over the past decades, more of it recently. The other 12%
comes out at a steady rate during the simulated window.

Users. A user is a persona plus personal noise: a genre preference, a style vector and a device
mix (Dirichlet around tv 45% / mobile 30% / web 15% / tablet 10%). The number of events is
lognormal (sigma 1, mean about ``events_per_user``, at least 2). Capped by what the window and
the catalogue allow, this gives a heavy tail. Some users join late and some churn early.

Time. Session start times are spread over the user's active days, with weekends 35% more likely.
The hour follows an evening-peaked daily rhythm, with more daytime viewing at weekends. After a
watch, the user keeps watching (same session, a few minutes after the title ends) or stops. The
chance of stopping is higher after a film and after an abandoned title. The next session starts
at the next pre-drawn start time, or after the last watch ends if that is later. The device is
chosen at the start of each session, from the user's mix tilted by the hour: tv in the evening,
mobile in the morning and at night.

Choice. Each event first draws a *mood* genre from the user's preference, tilted by the hour
(kids and family in the morning and afternoon, horror and thriller at night) and by weekend vs.
weekday. If the user liked the previous title in the same session, the mood stays in one of
that title's genres 60% of the time. Then 64 candidates are proposed: 40 from the mood genre in
proportion to popularity, 8 from the whole catalogue in proportion to popularity, 8 from titles
released in the last 45 days, and 8 uniformly at random. One candidate is picked by a Gumbel-max
draw over this score::

    2.5 style(user) . style(item)          taste that matrix factorisation can learn
    + 0.5 log pref(user, main genre)       long-term genre taste
    + 1.2 standardised log popularity      with the popularity-weighted proposals: a heavy head
    + 1.5 exp(-age / 14 days)              a boost for new releases; unreleased items excluded
    + 1.6 device x film/episode            films on tv (+0.9), not on mobile (-1.4)
    + 1.0 hour/weekend x genre             the item's mean genre affinity for this time slot
    + 1.2 [shares a genre with the previous title]  only if the previous title in this session
    + 0.3 style(previous) . style(item)             was liked (completion >= 0.5)

Items the user has already watched are excluded. A per-chunk bitmap records them.

Completion. Whether the user finishes the title depends on style match, genre taste, device fit
(a film on a phone is often abandoned), and whether it is an episode. Titles that are finished
get a completion of 0.95-1.0 (credits skipped). Abandoned titles get 0.05-0.9. A low completion
changes what comes next: the session more often ends, and the next title does not stay in the
genre. This is why "the user's recent completion" is a feature with real signal.

Scale
-----
Users are simulated in chunks, step by step through their event index. Every operation inside a
step is vectorised over the chunk's active users and their candidates. Memory is bounded by the
chunk size (the seen-bitmap is kept under about 64 MB) plus the output. Each chunk has its own
seed, spawned from ``seed``, so the output depends only on the arguments.
"""

import math
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import polars as pl

from recsys.columns import Columns
from recsys.data.dataset import Dataset
from recsys.feedback import DEFAULT_EVENT_TYPE, EVENT_TYPE_DTYPE

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
U8 = npt.NDArray[np.uint8]
Bool = npt.NDArray[np.bool_]

GENRES: Final[tuple[str, ...]] = (
    "drama",
    "comedy",
    "action",
    "thriller",
    "crime",
    "horror",
    "romance",
    "sci-fi",
    "fantasy",
    "animation",
    "kids",
    "family",
    "documentary",
    "reality",
    "anime",
    "mystery",
    "adventure",
    "music",
)
"""Genre names, in the order of every per-genre table below."""

DEVICES: Final[tuple[str, ...]] = ("tv", "mobile", "tablet", "web")
"""Device names, in the order of every per-device table below."""

_G = len(GENRES)
_GI = {name: i for i, name in enumerate(GENRES)}
_DAY = 86_400

# --- world -------------------------------------------------------------------------------------
_GENRE_PRIOR = np.array([14, 13, 8, 7, 6, 4, 6, 5, 4, 5, 5, 4, 6, 4, 3, 3, 5, 2], dtype=np.float64)
_GENRE_PRIOR /= _GENRE_PRIOR.sum()
# Genres that tend to be tagged together (secondary genres are drawn near the main one).
_RELATED: Final[tuple[tuple[str, str], ...]] = (
    ("kids", "animation"),
    ("kids", "family"),
    ("family", "animation"),
    ("family", "comedy"),
    ("action", "adventure"),
    ("action", "sci-fi"),
    ("action", "thriller"),
    ("thriller", "crime"),
    ("thriller", "mystery"),
    ("crime", "drama"),
    ("crime", "mystery"),
    ("horror", "thriller"),
    ("horror", "mystery"),
    ("romance", "drama"),
    ("romance", "comedy"),
    ("sci-fi", "fantasy"),
    ("fantasy", "adventure"),
    ("anime", "animation"),
    ("anime", "fantasy"),
    ("documentary", "music"),
    ("music", "drama"),
    ("reality", "comedy"),
)
# Probability that an item of this main genre is a film (else an episode of a series).
_FILM_SHARE = {"kids": 0.2, "animation": 0.4, "reality": 0.05, "anime": 0.15, "documentary": 0.45}
_SHORT_EPISODE_GENRES = ("comedy", "animation", "kids", "reality", "anime", "family")
_N_STYLE = 8
_ZIPF_EXPONENT = 1.0
_N_PERSONAS = 24
_PERSONA_GENRE_SPREAD = 2.0
_NEW_RELEASE_SHARE = 0.12
_CATALOGUE_AGE_SCALE_DAYS = 4 * 365.0

# --- time ----------------------------------------------------------------------------------------
# Session-start weight by hour of day (UTC taken as local time): evening peak, night trough.
_HOUR_WEEKDAY = np.array(
    [0.9, 0.5, 0.3, 0.2, 0.15, 0.15, 0.3, 0.6, 0.8, 0.8, 0.9, 1.0,
     1.2, 1.2, 1.1, 1.1, 1.3, 1.7, 2.3, 3.2, 3.8, 3.6, 2.8, 1.7],
    dtype=np.float64,
)  # fmt: skip
_HOUR_WEEKEND = _HOUR_WEEKDAY * np.array(
    [1.3, 1.3] + [1.0] * 7 + [1.6] * 9 + [1.0] * 6, dtype=np.float64
)
_WEEKEND_DAY_WEIGHT = 1.35
# Day parts: 0 night (23-06), 1 morning (06-12), 2 afternoon (12-18), 3 evening (18-23).
_DAYPART_OF_HOUR = np.array([0] * 6 + [1] * 6 + [2] * 6 + [3] * 5 + [0], dtype=np.int64)
_SESSION_GAP_S = 1800  # minimum pause between two sessions
_P_NEW_SESSION_EPISODE = 0.35
_P_NEW_SESSION_FILM = 0.6
_P_NEW_SESSION_ABANDONED = 0.65
_MAX_EVENTS_PER_DAY = 8

# --- context tables ----------------------------------------------------------------------------
_MOOD_DAYPART = {  # genre -> (night, morning, afternoon, evening) log-affinity
    "kids": (-2.0, 1.3, 1.0, -0.6),
    "family": (-1.2, 0.5, 0.6, 0.2),
    "animation": (-0.6, 0.8, 0.6, -0.2),
    "horror": (1.2, -1.2, -0.6, 0.3),
    "thriller": (0.6, -0.5, -0.2, 0.3),
    "crime": (0.4, -0.3, 0.0, 0.3),
    "mystery": (0.4, -0.3, 0.0, 0.2),
    "documentary": (-0.2, 0.6, 0.4, -0.2),
    "reality": (0.0, 0.0, 0.3, 0.2),
    "romance": (0.3, -0.3, 0.0, 0.3),
    "sci-fi": (0.3, -0.2, 0.0, 0.1),
    "comedy": (0.0, 0.0, 0.0, 0.2),
    "action": (0.1, -0.2, 0.0, 0.2),
    "anime": (0.5, -0.2, 0.0, 0.0),
    "adventure": (0.0, 0.0, 0.2, 0.0),
    "music": (-0.2, 0.3, 0.1, 0.0),
}
_MOOD_WEEKEND = {
    "kids": 0.4,
    "family": 0.5,
    "adventure": 0.3,
    "action": 0.2,
    "documentary": -0.2,
}
_DEVICE_PRIOR = np.array([0.45, 0.30, 0.10, 0.15], dtype=np.float64)
_DEVICE_DAYPART = np.array(  # device x (night, morning, afternoon, evening) log-affinity
    [[0.1, -0.5, -0.3, 0.6], [0.3, 0.5, 0.3, -0.3], [0.1, 0.0, 0.2, 0.0], [-0.3, 0.1, 0.4, -0.2]],
    dtype=np.float64,
)
_DEVICE_FILM = np.array(  # device x (episode, film): how well the device suits the length
    [[0.0, 0.9], [0.4, -1.4], [0.2, -0.3], [0.1, -0.1]], dtype=np.float32
)
_W_DEVICE = 1.6

# --- choice --------------------------------------------------------------------------------------
_K_MOOD, _K_POP, _K_FRESH, _K_UNIFORM = 40, 8, 8, 8
_FRESH_WINDOW_S = 45 * _DAY
_W_STYLE = 2.5
_W_GENRE = 0.5
_W_POP = 1.2
_W_FRESH = 1.5
_FRESH_TAU_S = 14.0 * _DAY
_W_DAYPART = 1.0
_W_SESSION_GENRE = 1.2
_W_PREV_STYLE = 0.3
_P_STAY_IN_GENRE = 0.6
_LOGPREF_FLOOR = 1e-3
_MAX_ATTEMPTS = 3
_SEEN_BITMAP_BYTES = 64 * 2**20
_MAX_CHUNK_USERS = 20_000


@dataclass(frozen=True)
class _World:
    """Everything shared by all users: the catalogue, its samplers, and the personas."""

    genre_bits: I32  # (n_items,) bit g set when the item has genre g
    primary: I64  # (n_items,) main genre
    style: F32  # (n_items, _N_STYLE)
    release_ts: I64
    duration_min: F32
    is_film: Bool
    context_score: F32  # (n_items, 4 * 8): popularity + device fit + daypart, by device*8 + slot
    pop_alias: tuple[F64, I64]  # alias table of the global popularity distribution
    genre_items: I64  # items of genre 0, then of genre 1, ... (an item appears once per genre)
    genre_alias: tuple[F64, I64]  # alias table per genre segment, positions into genre_items
    genre_start: I64  # (G,) first position of each genre in genre_items
    genre_size: I64  # (G,) number of items of each genre
    release_order: I64  # items sorted by release
    release_sorted: I64
    persona_weight: F64
    persona_genre: F64  # (P, G) genre logits
    persona_style: F64  # (P, _N_STYLE)
    mood_slot: F64  # (8, G) mood log-affinity at weekend*4 + daypart
    device_slot: F64  # (8, 4) device log-affinity at weekend*4 + daypart


def generate_synthetic(
    n_users: int = 5000,
    n_items: int = 1000,
    seed: int = 0,
    events_per_user: float = 40.0,
    start_ts: int = 1_700_000_000,
    days: int = 90,
) -> Dataset:
    """Simulate ``days`` days of a streaming service with ``n_users`` users and ``n_items`` titles.

    Returns a normalised :class:`Dataset`. Users are ``0..n_users-1`` and items ``0..n_items-1``
    (Int64). Every user has at least two events. Nobody watches the same title twice or before
    its release. Interactions are sorted by timestamp (then user), and all timestamps fall in
    ``[start_ts, start_ts + days * 86400)``. The same arguments always give the same output.

    The module docstring gives the generative story and the signals it plants.
    """
    if n_users < 1 or n_items < 10:
        raise ValueError(f"need n_users >= 1 and n_items >= 10, got {n_users}, {n_items}")
    if days < 3:
        raise ValueError(f"days must be >= 3 (sessions need whole days), got {days}")
    if events_per_user < 2:
        raise ValueError(f"events_per_user must be >= 2, got {events_per_user}")

    world, chunks = _plan(n_users, n_items, seed, start_ts, days)
    parts = [
        _simulate_chunk(rng, world, first, size, events_per_user, start_ts, days)
        for first, size, rng in chunks
    ]
    # Sort while the device is still a 1-byte code, then widen it; the chunks' numpy buffers are
    # shared with polars (no copy), so the peak is about two copies of the compact log.
    interactions = (
        pl.concat(parts, rechunk=False)
        .sort([Columns.timestamp, Columns.user])
        .select(
            Columns.user,
            Columns.item,
            Columns.timestamp,
            pl.lit(1.0, dtype=pl.Float32).alias(Columns.weight),
            pl.col(Columns.device).replace_strict(dict(enumerate(DEVICES)), return_dtype=pl.String),
            Columns.completion,
            pl.lit(DEFAULT_EVENT_TYPE, dtype=EVENT_TYPE_DTYPE).alias(Columns.event_type),
        )
    )
    return Dataset(interactions=interactions, items=_items_frame(world))


def _plan(
    n_users: int, n_items: int, seed: int, start_ts: int, days: int
) -> tuple[_World, list[tuple[int, int, np.random.Generator]]]:
    """The world, and the users in chunks (first user, size, generator): the seeds of both
    depend only on ``seed``, so the ground truth replays exactly what the log was drawn from."""
    world_ss, users_ss = np.random.SeedSequence(seed).spawn(2)
    world = _make_world(np.random.default_rng(world_ss), n_items, start_ts, days)
    chunk = int(np.clip(_SEEN_BITMAP_BYTES // ((n_items + 7) // 8), 256, _MAX_CHUNK_USERS))
    starts = range(0, n_users, chunk)
    return world, [
        (first, min(chunk, n_users - first), np.random.default_rng(ss))
        for first, ss in zip(starts, users_ss.spawn(len(starts)), strict=True)
    ]


@dataclass(frozen=True)
class SyntheticPopulation:
    """The ground truth behind ``generate_synthetic`` with the same arguments: what every user
    of the log likes, and how they choose, for simulating their answers to recommendations.

    ``utility`` is the generator's choice score without its session terms (what the previous
    title was) and without the Gumbel noise of one choice: taste (style match, genre
    preference), the item's popularity and freshness, and how the item suits the device and
    the time of day. Users are ids ``0..n_users-1``, items ``0..n_items-1``.
    """

    world: _World
    logpref: F32  # (U, G)
    style: F32  # (U, _N_STYLE)
    device_logmix: F64  # (U, 4)

    @property
    def n_users(self) -> int:
        return len(self.style)

    @property
    def n_items(self) -> int:
        return len(self.world.primary)

    @property
    def release_ts(self) -> I64:
        return self.world.release_ts

    def utility(self, users: I64, items: I64, ts: I64, device: I64) -> F32:
        """Score of ``items[r, c]`` for ``users[r]`` at time ``ts[r]`` on ``device[r]`` (a code
        of ``DEVICES``); ``-inf`` for items not released yet."""
        w = self.world
        hour = (ts // 3600) % 24
        weekend = (ts // _DAY + 3) % 7 >= 5
        slot = (weekend * 4 + _DAYPART_OF_HOUR[hour]).astype(np.int64)
        age = ts[:, None] - w.release_ts[items]
        score = _W_STYLE * np.einsum("rd,rcd->rc", self.style[users], w.style[items])
        score += _W_GENRE * self.logpref[users[:, None], w.primary[items]]
        score += _W_FRESH * np.exp(-np.maximum(age, 0) / _FRESH_TAU_S).astype(np.float32)
        score += w.context_score[items, (device * 8 + slot)[:, None]]
        return np.where(age >= 0, score, -np.inf).astype(np.float32)

    def completion(self, rng: np.random.Generator, users: I64, items: I64, device: I64) -> F32:
        """How much of each watched title the user watches (the generator's own model)."""
        return _completion(rng, self.world, items, self.style[users], self.logpref[users], device)

    def devices(self, rng: np.random.Generator, users: I64) -> I64:
        """A device code per user, drawn from the user's own device mix."""
        return _gumbel_argmax(rng, self.device_logmix[users])


def synthetic_population(
    n_users: int = 5000,
    n_items: int = 1000,
    seed: int = 0,
    start_ts: int = 1_700_000_000,
    days: int = 90,
) -> SyntheticPopulation:
    """The tastes of the users of ``generate_synthetic(n_users, n_items, seed, ..., start_ts,
    days)``, replayed from the same seeds (no event is simulated: fast at any size).
    ``events_per_user`` does not change who the users are, so it is not an argument."""
    world, chunks = _plan(n_users, n_items, seed, start_ts, days)
    drawn = [_draw_users(rng, world, size) for _, size, rng in chunks]
    return SyntheticPopulation(
        world=world,
        logpref=np.concatenate([u.logpref for u in drawn]),
        style=np.concatenate([u.style for u in drawn]),
        device_logmix=np.concatenate([u.device_logmix for u in drawn]),
    )


def _items_frame(world: _World) -> pl.DataFrame:
    """The public item table: ids, "Title <id>", pipe-joined genres (main genre first)."""
    n = len(world.primary)
    names = []
    for i in range(n):
        bits, main = int(world.genre_bits[i]), int(world.primary[i])
        rest = [GENRES[g] for g in range(_G) if bits >> g & 1 and g != main]
        names.append("|".join([GENRES[main], *rest]))
    ids = np.arange(n, dtype=np.int64)
    return pl.DataFrame(
        {
            Columns.item: pl.Series(ids, dtype=pl.Int64),
            Columns.title: pl.Series([f"Title {i}" for i in range(n)], dtype=pl.String),
            Columns.genres: pl.Series(names, dtype=pl.String),
            Columns.release_ts: pl.Series(world.release_ts, dtype=pl.Int64),
            Columns.duration_min: pl.Series(world.duration_min, dtype=pl.Float32),
        }
    )


def _make_world(rng: np.random.Generator, n_items: int, start_ts: int, days: int) -> _World:
    """Draw the catalogue and personas, and precompute the samplers the simulation needs."""
    # Genres: a main genre from the prior, then 0-2 extra genres drawn near it (Gumbel top-k).
    related = np.zeros((_G, _G))
    for a, b in _RELATED:
        related[_GI[a], _GI[b]] = related[_GI[b], _GI[a]] = 2.0
    primary = rng.choice(_G, size=n_items, p=_GENRE_PRIOR).astype(np.int64)
    logits = np.log(_GENRE_PRIOR)[None, :] + related[primary] + rng.gumbel(size=(n_items, _G))
    logits[np.arange(n_items), primary] = -np.inf
    extra = np.argsort(-logits, axis=1)[:, :2]
    n_extra = rng.choice(3, size=n_items, p=[0.35, 0.45, 0.2])
    genre_mask = np.zeros((n_items, _G), dtype=bool)
    genre_mask[np.arange(n_items), primary] = True
    for j in range(2):
        rows = np.flatnonzero(n_extra > j)
        genre_mask[rows, extra[rows, j]] = True
    genre_bits = (genre_mask.astype(np.int32) << np.arange(_G, dtype=np.int32)).sum(
        axis=1, dtype=np.int32
    )

    # Style: partly the main genre's centre, mostly the item's own.
    genre_centre = rng.normal(0.0, 0.7, size=(_G, _N_STYLE))
    style = (genre_centre[primary] + rng.normal(0.0, 1.0, size=(n_items, _N_STYLE))).astype(
        np.float32
    )

    # Type and length: films 80-150 min, episodes 20-50 min (sitcom-like genres shorter).
    film_share = np.array([_FILM_SHARE.get(g, 0.55) for g in GENRES])
    is_film = rng.random(n_items) < film_share[primary]
    short = np.isin(primary, [_GI[g] for g in _SHORT_EPISODE_GENRES])
    episode_len = np.where(short, rng.normal(26, 5, n_items), rng.normal(45, 5, n_items))
    film_len = rng.normal(108, 16, n_items)
    duration = np.round(np.where(is_film, np.clip(film_len, 80, 150), np.clip(episode_len, 20, 50)))

    # Release: back catalogue over past decades (denser recently) + a steady stream of new titles.
    window_end = start_ts + days * _DAY
    age_days = 1.0 + np.minimum(rng.exponential(_CATALOGUE_AGE_SCALE_DAYS, n_items), 40 * 365.0)
    release = start_ts - (age_days * _DAY).astype(np.int64)
    new = rng.random(n_items) < _NEW_RELEASE_SHARE
    release[new] = rng.integers(start_ts, window_end, size=int(new.sum()))

    # Zipf popularity, in random order of item ids.
    pop = np.power(1.0 + rng.permutation(n_items), -_ZIPF_EXPONENT, dtype=np.float64)
    log_pop = np.log(pop)
    log_pop_std = (log_pop - log_pop.mean()) / log_pop.std()

    mood_slot = np.zeros((8, _G))
    for name, parts in _MOOD_DAYPART.items():
        mood_slot[:4, _GI[name]] = parts
        mood_slot[4:, _GI[name]] = parts
    for name, bonus in _MOOD_WEEKEND.items():
        mood_slot[4:, _GI[name]] += bonus
    # Every static part of the choice score, folded into one table: one gather per candidate.
    slot_affinity = genre_mask @ mood_slot.T / genre_mask.sum(axis=1, keepdims=True)
    device_fit = _DEVICE_FILM[:, is_film.astype(np.int64)].T  # (n_items, 4)
    context_score = (
        _W_POP * log_pop_std[:, None, None]
        + _W_DEVICE * device_fit[:, :, None]
        + _W_DAYPART * slot_affinity[:, None, :]
    ).reshape(n_items, 4 * 8)

    genre_items = np.concatenate([np.flatnonzero(genre_mask[:, g]) for g in range(_G)])
    genre_size = genre_mask.sum(axis=0).astype(np.int64)
    genre_start = np.concatenate([[0], np.cumsum(genre_size)[:-1]]).astype(np.int64)
    probs, aliases = [], []
    for g in range(_G):
        segment = genre_items[genre_start[g] : genre_start[g] + genre_size[g]]
        prob_g, alias_g = _alias_table(pop[segment])
        probs.append(prob_g)
        aliases.append(alias_g + genre_start[g])
    order = np.argsort(release, kind="stable")

    return _World(
        genre_bits=genre_bits,
        primary=primary,
        style=style,
        release_ts=release,
        duration_min=duration.astype(np.float32),
        is_film=is_film,
        context_score=context_score.astype(np.float32),
        pop_alias=_alias_table(pop),
        genre_items=genre_items.astype(np.int64),
        genre_alias=(np.concatenate(probs), np.concatenate(aliases).astype(np.int64)),
        genre_start=genre_start,
        genre_size=genre_size,
        release_order=order.astype(np.int64),
        release_sorted=release[order],
        persona_weight=rng.dirichlet(np.full(_N_PERSONAS, 2.0)),
        persona_genre=np.log(_GENRE_PRIOR)[None, :]
        + rng.normal(0.0, _PERSONA_GENRE_SPREAD, (_N_PERSONAS, _G)),
        persona_style=rng.normal(0.0, 0.4, (_N_PERSONAS, _N_STYLE)),
        mood_slot=mood_slot,
        device_slot=np.concatenate([_DEVICE_DAYPART.T, _DEVICE_DAYPART.T]),
    )


def _alias_table(weights: F64) -> tuple[F64, I64]:
    """Walker/Vose alias table: O(1) draws from a fixed discrete distribution.

    Drawing candidates by popularity is the hottest operation of the simulation; a binary search
    per draw (``searchsorted`` on a CDF) was half of the run time. Built once, in O(n).
    """
    n = len(weights)
    if n == 0:
        return np.zeros(0, dtype=np.float64), np.zeros(0, dtype=np.int64)
    scaled = (weights * (n / weights.sum())).tolist()
    alias = list(range(n))
    small = [i for i, p in enumerate(scaled) if p < 1.0]
    large = [i for i, p in enumerate(scaled) if p >= 1.0]
    while small and large:
        lo, hi = small.pop(), large.pop()
        alias[lo] = hi
        scaled[hi] += scaled[lo] - 1.0
        (small if scaled[hi] < 1.0 else large).append(hi)
    for i in small + large:  # leftovers are 1 up to rounding
        scaled[i] = 1.0
    return np.array(scaled, dtype=np.float64), np.array(alias, dtype=np.int64)


def _alias_draw(
    rng: np.random.Generator, table: tuple[F64, I64], start: I64, size: I64, n_draws: int
) -> I64:
    """``n_draws`` positions per row, from the alias table segment ``[start, start + size)``.

    One uniform gives both the slot (integer part) and the coin (fractional part).
    """
    prob, alias = table
    u = rng.random((len(start), n_draws)) * size[:, None]
    slot = u.astype(np.int64)
    pos = slot + start[:, None]
    return np.where(u - slot < prob[pos], pos, alias[pos])


def _gumbel_argmax(rng: np.random.Generator, logits: npt.NDArray[np.floating]) -> I64:
    """One categorical draw per row: argmax(logits + Gumbel noise), via -log(Exp(1))."""
    return np.argmax(logits - _log_exponential(rng, logits.shape), axis=1).astype(np.int64)


def _log_exponential(rng: np.random.Generator, shape: tuple[int, ...]) -> F32:
    """log of Exp(1) draws; minus this is Gumbel noise. float32 draws can be exactly 0, so clip."""
    return np.log(np.maximum(rng.standard_exponential(shape, dtype=np.float32), 1e-30))


def _session_starts(
    rng: np.random.Generator, n_events: I64, start_ts: int, days: int
) -> tuple[I64, I64]:
    """Pre-draw one candidate session start per event and sort them within each user.

    Each user is active on a span of days. Most users are active from the start to the end, but
    some join late or churn early, and heavy users get longer spans. Inside the span, days are
    weighted towards weekends and hours follow the daily rhythm. The simulation uses only the
    starts of events that open a new session. Thinning sorted uniform draws keeps their spread
    over time. Returns the per-user CSR offsets and the flat sorted start times.
    """
    B = len(n_events)
    first_day = -(-start_ts // _DAY)
    n_days = (start_ts + days * _DAY) // _DAY - 1 - first_day
    if n_days < 1:
        raise ValueError(f"days={days} leaves no whole day after start_ts={start_ts}")
    day_ids = first_day + np.arange(n_days)
    weekend_day = (day_ids + 3) % 7 >= 5
    cum_w = np.concatenate([[0.0], np.cumsum(np.where(weekend_day, _WEEKEND_DAY_WEIGHT, 1.0))])

    min_span = np.clip(np.ceil(n_events / 6.0), min(7, n_days), n_days).astype(np.int64)
    late = rng.random(B) < 0.3
    span_first = np.where(late, (rng.random(B) * (n_days - min_span + 1)).astype(np.int64), 0)
    churn = rng.random(B) < 0.2
    room = n_days - span_first - min_span
    span_end = np.where(
        churn, span_first + min_span + (rng.random(B) * (room + 1)).astype(np.int64), n_days
    )

    offsets = np.concatenate([[0], np.cumsum(n_events)]).astype(np.int64)
    owner = np.repeat(np.arange(B), n_events)
    lo, hi = cum_w[span_first[owner]], cum_w[span_end[owner]]
    x = lo + rng.random(len(owner)) * (hi - lo)
    day = np.clip(np.searchsorted(cum_w, x, side="right") - 1, 0, n_days - 1)
    hour = np.where(
        weekend_day[day],
        _sample_hours(rng, _HOUR_WEEKEND, len(day)),
        _sample_hours(rng, _HOUR_WEEKDAY, len(day)),
    )
    rel = (day * _DAY + hour * 3600 + rng.integers(0, 3600, len(day))).astype(np.int64)
    rel = rel[np.lexsort((rel, owner))]
    return offsets, first_day * _DAY + rel


def _sample_hours(rng: np.random.Generator, weights: F64, n: int) -> I64:
    cdf = np.cumsum(weights) / weights.sum()
    return np.minimum(np.searchsorted(cdf, rng.random(n), side="right"), 23).astype(np.int64)


@dataclass(frozen=True)
class _Users:
    """The tastes of a chunk's users, in the order drawn: ids first_user, first_user + 1, ..."""

    logpref: F32  # (B, G) log genre preference
    style: F32  # (B, _N_STYLE)
    device_logmix: F64  # (B, 4) log share of each device


def _draw_users(rng: np.random.Generator, world: _World, B: int) -> _Users:
    """A persona plus personal noise per user: the first draws of each chunk's generator, so the
    ground truth (``synthetic_population``) replays them without simulating any event."""
    persona = rng.choice(_N_PERSONAS, size=B, p=world.persona_weight)
    genre_logit = world.persona_genre[persona] + rng.normal(0.0, 0.6, (B, _G))
    pref = np.exp(genre_logit - genre_logit.max(axis=1, keepdims=True))
    pref /= pref.sum(axis=1, keepdims=True)
    logpref = np.log(np.maximum(pref, _LOGPREF_FLOOR)).astype(np.float32)
    style = (world.persona_style[persona] + rng.normal(0.0, 0.25, (B, _N_STYLE))).astype(np.float32)
    device_logmix = np.log(np.maximum(rng.dirichlet(_DEVICE_PRIOR * 4.0, size=B), 1e-4))
    return _Users(logpref, style, device_logmix)


def _simulate_chunk(
    rng: np.random.Generator,
    world: _World,
    first_user: int,
    B: int,
    events_per_user: float,
    start_ts: int,
    days: int,
) -> pl.DataFrame:
    """Simulate users ``first_user .. first_user+B-1``, one event index at a time.

    Users are sorted by their number of events (most first), so the users still active at step
    ``t`` are a prefix of the chunk and each step works on contiguous slices. Returns the events
    that happened: user, item, timestamp (Int64), device code (UInt8), completion (Float32).
    """
    n_items = len(world.primary)
    window_end = start_ts + days * _DAY

    users = _draw_users(rng, world, B)
    logpref, user_style, device_logmix = users.logpref, users.style, users.device_logmix
    mood_base = np.where(world.genre_size > 0, logpref, -np.inf)

    # Activity: lognormal, mean ~events_per_user. Capped so a user fits in the window and the
    # catalogue.
    sigma = 1.0
    raw = rng.lognormal(math.log(events_per_user) - sigma**2 / 2, sigma, B)
    cap = max(2, min(days * _MAX_EVENTS_PER_DAY, int(0.3 * n_items)))
    n_events = np.clip(np.round(raw), 2, cap).astype(np.int64)
    order = np.argsort(-n_events, kind="stable")
    n_events = n_events[order]
    user_ids = (first_user + order).astype(np.int64)
    logpref, mood_base = logpref[order], mood_base[order]
    user_style, device_logmix = user_style[order], device_logmix[order]

    offsets, sess_start = _session_starts(rng, n_events, start_ts, days)
    total = int(offsets[-1])
    out_item = np.full(total, -1, dtype=np.int64)
    out_ts = np.zeros(total, dtype=np.int64)
    out_dev = np.zeros(total, dtype=np.uint8)
    out_compl = np.zeros(total, dtype=np.float32)

    seen = np.zeros((B, (n_items + 7) // 8), dtype=np.uint8)
    last_end = np.zeros(B, dtype=np.int64)
    prev_item = np.full(B, -1, dtype=np.int64)
    prev_compl = np.zeros(B, dtype=np.float32)
    device = np.zeros(B, dtype=np.int64)
    neg_n = -n_events
    bit_shift = np.arange(_G, dtype=np.int32)

    for t in range(int(n_events[0])):
        k = int(np.searchsorted(neg_n, -t, side="left"))
        idx = offsets[:k] + t
        prev = prev_item[:k]
        if t == 0:
            new = np.ones(k, dtype=bool)
        else:
            p_new = np.where(world.is_film[prev], _P_NEW_SESSION_FILM, _P_NEW_SESSION_EPISODE)
            p_new = np.where(prev_compl[:k] < 0.5, _P_NEW_SESSION_ABANDONED, p_new)
            new = (rng.random(k) < p_new) | (prev < 0)
        gap = rng.integers(30, 600, k)
        ts = np.where(
            new, np.maximum(sess_start[idx], last_end[:k] + _SESSION_GAP_S), last_end[:k] + gap
        )
        hour = (ts // 3600) % 24
        weekend = (ts // _DAY + 3) % 7 >= 5
        slot = weekend * 4 + _DAYPART_OF_HOUR[hour]

        dev_new = _gumbel_argmax(rng, device_logmix[:k] + world.device_slot[slot])
        device[:k] = np.where(new, dev_new, device[:k])

        mood = _gumbel_argmax(rng, mood_base[:k] + world.mood_slot[slot])
        liked_prev = ~new & (prev_compl[:k] >= 0.5)
        stay = liked_prev & (rng.random(k) < _P_STAY_IN_GENRE)
        prev_genres = (world.genre_bits[prev][:, None] >> bit_shift) & 1
        prev_genre = np.argmax(np.where(prev_genres == 1, rng.random((k, _G)), -1.0), axis=1)
        mood = np.where(stay, prev_genre, mood)

        chosen = np.full(k, -1, dtype=np.int64)
        todo = np.flatnonzero(ts < window_end)
        for _ in range(_MAX_ATTEMPTS):
            if todo.size == 0:
                break
            picked, ok = _choose(
                rng, world, todo, mood, ts, slot, device, prev_item, liked_prev,
                user_style, logpref, seen,
            )  # fmt: skip
            chosen[todo[ok]] = picked[ok]
            todo = todo[~ok]

        v = np.flatnonzero(chosen >= 0)
        it = chosen[v]
        compl = _completion(rng, world, it, user_style[v], logpref[v], device[v])
        out_item[idx] = chosen
        out_ts[idx] = ts
        out_dev[idx] = device[:k]
        out_compl[idx[v]] = compl

        watch_s = np.round(world.duration_min[it] * 60.0 * compl).astype(np.int64)
        last_end[v] = ts[v] + watch_s
        prev_item[v] = it
        prev_compl[v] = compl
        seen[v, it >> 3] |= (1 << (it & 7)).astype(np.uint8)

    keep = out_item >= 0
    return pl.DataFrame(
        {
            Columns.user: np.repeat(user_ids, n_events)[keep],
            Columns.item: out_item[keep],
            Columns.timestamp: out_ts[keep],
            Columns.device: out_dev[keep],
            Columns.completion: out_compl[keep],
        }
    )


def _choose(
    rng: np.random.Generator,
    world: _World,
    rows: I64,
    mood: I64,
    ts: I64,
    slot: I64,
    device: I64,
    prev_item: I64,
    liked_prev: Bool,
    user_style: F32,
    logpref: F32,
    seen: U8,
) -> tuple[I64, Bool]:
    """Propose candidates for ``rows`` and pick one by Gumbel-max over the score in the docstring.

    Returns the picked item per row and whether the row had any eligible candidate (released,
    unseen). Rows that had none are retried by the caller with fresh candidates.
    """
    r = len(rows)
    n_items = len(world.primary)
    m, now = mood[rows], ts[rows]

    # Proposals: mood genre by popularity, catalogue by popularity, fresh releases, uniform.
    by_mood = world.genre_items[
        _alias_draw(rng, world.genre_alias, world.genre_start[m], world.genre_size[m], _K_MOOD)
    ]
    every = np.full(r, n_items, dtype=np.int64)
    by_pop = _alias_draw(rng, world.pop_alias, np.zeros(r, dtype=np.int64), every, _K_POP)
    lo = np.searchsorted(world.release_sorted, now - _FRESH_WINDOW_S, side="left")
    hi = np.searchsorted(world.release_sorted, now, side="right")
    pos = np.minimum(lo[:, None] + (rng.random((r, _K_FRESH)) * (hi - lo)[:, None]), n_items - 1)
    uniform = rng.integers(0, n_items, (r, _K_FRESH))
    fresh = np.where((hi > lo)[:, None], world.release_order[pos.astype(np.int64)], uniform)
    cand = np.concatenate([by_mood, by_pop, fresh, rng.integers(0, n_items, (r, _K_UNIFORM))], 1)

    age = now[:, None] - world.release_ts[cand]
    seen_bit = (seen[rows[:, None], cand >> 3] >> (cand & 7).astype(np.uint8)) & 1
    eligible = (age >= 0) & (seen_bit == 0)

    liked = liked_prev[rows]
    prev = prev_item[rows]
    taste = _W_STYLE * user_style[rows] + (_W_PREV_STYLE * liked)[:, None] * world.style[prev]
    score = np.einsum("rd,rcd->rc", taste.astype(np.float32), world.style[cand])
    score += _W_GENRE * logpref[rows[:, None], world.primary[cand]]
    score += _W_FRESH * np.exp(-np.maximum(age, 0) / _FRESH_TAU_S).astype(np.float32)
    score += world.context_score[cand, (device[rows] * 8 + slot[rows])[:, None]]
    shares = (world.genre_bits[cand] & world.genre_bits[prev][:, None]) != 0
    score += _W_SESSION_GENRE * (shares & liked[:, None])
    score -= _log_exponential(rng, cand.shape)
    score = np.where(eligible, score, -np.inf)

    j = np.argmax(score, axis=1)
    at = np.arange(r)
    return cand[at, j], eligible[at, j]


def _completion(
    rng: np.random.Generator, world: _World, items: I64, style: F32, logpref: F32, device: I64
) -> F32:
    """How much of each title was watched.

    Completion is higher for a good style match, a liked genre, a device that suits the length
    (a film on a phone is often abandoned), and for episodes. Finished titles get 0.95-1.0
    (credits skipped). Abandoned ones get somewhere in 0.05-0.9, more often early.
    """
    n = len(items)
    match = np.einsum("nd,nd->n", style, world.style[items])
    genre = logpref[np.arange(n), world.primary[items]]
    fit = _DEVICE_FILM[device, world.is_film[items].astype(np.int64)]
    logit = (
        0.3
        + 0.6 * match
        + 0.4 * (genre + 2.5)
        + 1.0 * fit
        + 0.4 * ~world.is_film[items]
        + rng.normal(0.0, 0.8, n)
    )
    finished = rng.random(n) < 1.0 / (1.0 + np.exp(-logit))
    done = np.minimum(1.0, 0.95 + 0.06 * rng.random(n))
    partial = 0.05 + 0.85 * rng.random(n) ** 1.5
    return np.where(finished, done, partial).astype(np.float32)
