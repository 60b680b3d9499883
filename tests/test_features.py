"""Features are defined once: the offline builder and the API must produce identical matrices,
and the training set must not read anything at or after its cut."""

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import redis

from recsys.columns import Columns
from recsys.config import Settings
from recsys.data.dataset import Dataset
from recsys.data.synth import generate_synthetic
from recsys.devices import device_vocabulary
from recsys.features import FEATURE_NAMES, RequestContext, build_features
from recsys.ids import IdIndex
from recsys.pipeline import run_build
from recsys.progress import StageTimer
from recsys.ranking.labels import temporal_labels
from recsys.ranking.training_set import relevance_grades, request_states, training_data
from recsys.serving import ServingModel, apply_events
from recsys.store.codec import decode_user_state
from recsys.store.keys import Keys
from recsys.store.user_store import read_user
from tests.conftest import small_settings


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return generate_synthetic(n_users=300, n_items=120, seed=5, events_per_user=20)


def test_online_and_offline_feature_matrices_are_identical(
    dataset: Dataset, redis_url: str, tmp_path: Path
) -> None:
    settings = small_settings(redis_url, ann={"kind": "exact"})
    client = redis.Redis.from_url(redis_url)
    build = run_build(dataset, tmp_path, client, settings)
    model = ServingModel.load(tmp_path, build.version)  # what the API loads from disk
    keys = Keys(settings.key_prefix)

    # offline path: the training-set builder's own request states, from the published stage 1
    users = np.arange(40, dtype=np.int32)
    rng = np.random.default_rng(0)
    contexts = [
        RequestContext(ts=int(t), device=int(d))
        for t, d in zip(
            rng.integers(1_700_000_000, 1_710_000_000, 40), rng.integers(0, 4, 40), strict=True
        )
    ]
    requests = label_requests_for(users, contexts)
    offline_states, offline_ctx, offline_users = [], [], []
    for states, ctxs, groups in request_states(requests, build.candidate_model, settings):
        offline_states += states
        offline_ctx += ctxs
        offline_users += [int(requests.users[g]) for g in groups]

    # online path: what the API reads from Redis for the same users, through its own code
    user_keys = build.users.keys()
    online_states = []
    for u in offline_users:
        record = read_user(client, keys, build.version, user_keys[u], 100)
        assert record.state is not None
        online_states.append(apply_events(decode_user_state(record.state), record.events, model))

    x_offline = build_features(offline_states, offline_ctx, build.candidate_model.items)
    x_online = build_features(online_states, offline_ctx, model.items)
    assert x_offline.shape == (40 * 60, len(FEATURE_NAMES))
    np.testing.assert_array_equal(x_offline, x_online)  # NaNs in the same places too


def label_requests_for(users: np.ndarray, contexts: list[RequestContext]):  # type: ignore[no-untyped-def]
    from recsys.ranking.training_set import LabelRequests

    return LabelRequests(
        users=users,
        context=contexts,
        label_offsets=np.zeros(len(users) + 1, dtype=np.int64),
        label_items=np.empty(0, np.int32),
        label_grades=np.empty(0, np.int32),
    )


def _training_set(
    dataset: Dataset, settings: Settings, cut_ts: int | None = None
) -> tuple[np.ndarray, np.ndarray, int]:
    inter = dataset.interactions
    split = temporal_labels(inter, settings.ranker.label_window_frac, cut_ts)
    assert split.cut_ts is not None
    _, ts, _ = training_data(
        split,
        dataset.items,
        IdIndex(dataset.items[Columns.item]),
        device_vocabulary(inter),
        settings,
        StageTimer("test"),
    )
    return ts.features, ts.relevance, split.cut_ts


def test_training_set_reads_nothing_after_its_cut(dataset: Dataset, redis_url: str) -> None:
    settings = small_settings(redis_url, ann={"kind": "exact"})
    x, rel, cut = _training_set(dataset, settings)
    assert len(rel) > 0 and rel.max() > 0

    # Change everything after the cut that is not a label: new users watching popular items
    # (popularity, factors and device mixes would all move if any of it were read), and the
    # device of the label events themselves (not their completion: it is the label's grade).
    inter = dataset.interactions
    after = inter.filter(pl.col(Columns.timestamp) >= cut)
    noise = after.with_columns(
        (pl.lit("intruder-") + pl.col(Columns.user).cast(pl.String)).alias(Columns.user),
        pl.lit("fridge").alias(Columns.device),
    )
    relabelled = inter.with_columns(
        pl.when(pl.col(Columns.timestamp) >= cut + 3600)
        .then(pl.lit("tv"))
        .otherwise(pl.col(Columns.device))
        .alias(Columns.device)
    )
    shifted = Dataset(
        interactions=pl.concat(
            [relabelled.with_columns(pl.col(Columns.user).cast(pl.String)), noise]
        ).sort(Columns.timestamp, maintain_order=True),
        items=dataset.items,
    )
    x2, rel2, _ = _training_set(shifted, settings, cut_ts=cut)
    np.testing.assert_array_equal(rel, rel2)
    # the request context (device of the first label event) may move; nothing else may
    device_col = FEATURE_NAMES.index("device")
    share_col = FEATURE_NAMES.index("item_device_share")
    others = [c for c in range(len(FEATURE_NAMES)) if c not in (device_col, share_col)]
    np.testing.assert_array_equal(x[:, others], x2[:, others])


def test_relevance_grades() -> None:
    nan = np.nan
    # completion decides where known; else the rating relative to the best rating
    weight = np.array([5.0, 4.0, 2.0, 1.0, 5.0], dtype=np.float32)
    completion = np.array([nan, nan, nan, 0.95, 0.3], dtype=np.float32)
    assert relevance_grades(weight, completion).tolist() == [3, 2, 1, 3, 1]
    # no rating spread and no completion: every watch is the same grade
    assert relevance_grades(np.ones(3, np.float32), np.full(3, nan, np.float32)).tolist() == [3] * 3


def test_features_tolerate_missing_optional_columns(redis_url: str, tmp_path: Path) -> None:
    """No device, completion, genres, release dates or durations: neutral values, no crash."""
    ds = generate_synthetic(n_users=200, n_items=80, seed=9, events_per_user=15)
    bare = Dataset(
        interactions=ds.interactions.with_columns(
            pl.lit("unknown").alias(Columns.device),
            pl.lit(None, dtype=pl.Float32).alias(Columns.completion),
            pl.lit(1.0, dtype=pl.Float32).alias(Columns.weight),
        ),
        items=ds.items.with_columns(
            pl.lit("").alias(Columns.genres),
            pl.lit(None, dtype=pl.Int64).alias(Columns.release_ts),
            pl.lit(None, dtype=pl.Float32).alias(Columns.duration_min),
        ),
    )
    client = redis.Redis.from_url(redis_url)
    build = run_build(bare, tmp_path, client, small_settings(redis_url))
    model = ServingModel.load(tmp_path, build.version)
    record = read_user(
        client,
        Keys(build.manifest.config["key_prefix"]),
        build.version,
        build.users.keys()[0],
        10,
    )
    assert record.state is not None
    state = decode_user_state(record.state)
    x = build_features([state], [RequestContext(ts=1_700_000_000, device=0)], model.items)
    for name in ("item_age_days", "item_duration_min", "recent_completion"):
        assert np.isnan(x[:, FEATURE_NAMES.index(name)]).all(), name
    assert np.isfinite(x[:, FEATURE_NAMES.index("stage1_score")]).all()


def test_each_feature_is_one_declaration() -> None:
    """Names and columns come from one table, so they cannot drift apart; a name twice is an
    error, and a new feature is one more line of the table."""
    from recsys.features import CATEGORICAL_FEATURES, FEATURES
    from recsys.features.table import Feature, FeatureTable

    assert tuple(f.name for f in FEATURES) == FEATURE_NAMES and len(FEATURES) == len(FEATURE_NAMES)
    assert CATEGORICAL_FEATURES == ("device",)
    with pytest.raises(ValueError, match="repeat"):
        FeatureTable([*FEATURES, Feature("device", "again", lambda x: x.device)])
    extended = FeatureTable([*FEATURES, Feature("cand_squared", "test", lambda x: x.rank**2)])
    assert extended.names[-1] == "cand_squared" and extended.names[:-1] == FEATURE_NAMES
