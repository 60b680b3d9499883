"""Build on tiny synthetic data through a real Redis, then ask the API."""

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import redis
from fastapi.testclient import TestClient

from api.app import create_app
from recsys.columns import Columns
from recsys.config import Settings
from recsys.data.dataset import Dataset
from recsys.data.synth import generate_synthetic
from recsys.errors import BuildError
from recsys.inspection.history import read_history
from recsys.pipeline import BuildResult, run_build
from recsys.store.keys import Keys
from recsys.store.user_store import current_build
from tests.conftest import small_settings


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return generate_synthetic(n_users=400, n_items=150, seed=11, events_per_user=20)


@pytest.fixture(scope="module")
def built(
    dataset: Dataset, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Settings, BuildResult, Path]:
    settings = small_settings(redis_url)
    artifacts = tmp_path_factory.mktemp("artifacts")
    client = redis.Redis.from_url(redis_url)
    result = run_build(dataset, artifacts, client, settings)
    return settings, result, artifacts


@pytest.fixture(scope="module")
def api(built: tuple[Settings, BuildResult, Path]) -> Iterator[TestClient]:
    settings, _, artifacts = built
    with TestClient(create_app(settings, artifacts)) as client:
        yield client


def _watched(dataset: Dataset, user: str) -> set[str]:
    rows = dataset.interactions.filter(pl.col(Columns.user).cast(pl.String) == user)
    return {str(i) for i in rows[Columns.item].to_list()}


def test_build_publishes_version_and_manifest(
    built: tuple[Settings, BuildResult, Path], redis_client: redis.Redis
) -> None:
    settings, result, artifacts = built
    assert current_build(redis_client, Keys(settings.key_prefix)) == result.version
    m = result.manifest
    assert m.build_version == result.version
    assert m.candidates.users_written == 400
    assert m.candidates.bytes_per_user > 0
    assert {"stage 1 on all events", "train ranker", "candidates -> redis"} <= set(m.timings_s)
    assert 0.0 < m.ranker.valid_ndcg_at_10 <= 1.0
    assert (artifacts / result.version / "ranker.txt").is_file()


def test_recommendations_have_the_contract_shape(
    api: TestClient, built: tuple[Settings, BuildResult, Path], dataset: Dataset
) -> None:
    _, result, _ = built
    user = result.users.keys()[0]
    r = api.get(f"/recommendations/{user}", params={"k": 7, "device": "tv", "ts": 1_700_500_000})
    assert r.status_code == 200
    body = r.json()
    assert body["user_id"] == user
    assert body["model_version"] == result.version
    assert body["fallback"] is None
    assert len(body["items"]) == 7
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True)
    catalogue = set(dataset.items[Columns.item].to_list())
    assert all(i["item_id"] in catalogue for i in body["items"])  # the user's own ids and types


def test_watched_items_never_come_back(
    api: TestClient, built: tuple[Settings, BuildResult, Path], dataset: Dataset
) -> None:
    _, result, _ = built
    for user in result.users.keys()[:25]:
        body = api.get(f"/recommendations/{user}", params={"k": 50}).json()
        returned = {str(i["item_id"]) for i in body["items"]}
        assert len(returned) == len(body["items"]) > 0
        assert not returned & _watched(dataset, user)


def test_unknown_user_gets_cold_start(api: TestClient) -> None:
    body = api.get("/recommendations/never-seen-before", params={"k": 5}).json()
    assert body["fallback"] == "cold-start"
    assert len(body["items"]) == 5


def test_an_event_changes_the_next_answer(
    api: TestClient, built: tuple[Settings, BuildResult, Path]
) -> None:
    _, result, _ = built
    user = result.users.keys()[1]
    first = api.get(f"/recommendations/{user}", params={"k": 5}).json()["items"][0]["item_id"]
    r = api.post(
        "/events", json={"user_id": user, "item_id": first, "device": "tv", "completion": 0.9}
    )
    assert r.status_code == 202
    after = [
        i["item_id"] for i in api.get(f"/recommendations/{user}", params={"k": 50}).json()["items"]
    ]
    assert first not in after
    # a cold user's event is honoured too
    top = api.get("/recommendations/brand-new", params={"k": 1}).json()["items"][0]["item_id"]
    api.post("/events", json={"user_id": "brand-new", "item_id": top})
    assert top not in [i["item_id"] for i in api.get("/recommendations/brand-new").json()["items"]]


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("/recommendations/1?k=0", "greater than or equal to 1"),
        ("/recommendations/1?k=501", "less than or equal to 500"),
        ("/recommendations/1?ts=yesterday", "valid integer"),
        ("/recommendations/" + "u" * 257, "at most 256"),
        ("/recommendations/1?device=" + "d" * 40, "at most 32"),
    ],
)
def test_bad_query_is_a_4xx_with_a_message(api: TestClient, path: str, fragment: str) -> None:
    r = api.get(path)
    assert r.status_code == 422
    assert fragment in r.text


@pytest.mark.parametrize(
    "body",
    [
        {"user_id": "1"},
        {"user_id": "1", "item_id": 3, "completion": 1.5},
        {"user_id": "", "item_id": 3},
        {"user_id": "1", "item_id": 3, "timestamp": "soon"},
        {"user_id": "1", "item_id": 3, "colour": "red"},
    ],
)
def test_bad_event_is_a_4xx(api: TestClient, body: dict[str, object]) -> None:
    r = api.post("/events", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["detail"]


def test_health_and_readiness(api: TestClient, built: tuple[Settings, BuildResult, Path]) -> None:
    assert api.get("/healthz").json()["status"] == "ok"
    ready = api.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["model_version"] == built[1].version


def test_rebuilds_keep_the_previous_build_and_drop_older(
    dataset: Dataset, redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    # no serving worker holds a build and no grace period: a build past keep_builds goes at once
    settings = small_settings(redis_url, keep_builds=2, retire_grace_s=0)
    keys = Keys(settings.key_prefix)
    versions = [run_build(dataset, tmp_path, redis_client, settings).version for _ in range(3)]
    assert current_build(redis_client, keys) == versions[-1]
    kept = {v.decode() for v in redis_client.zrange(keys.builds, 0, -1)}
    assert kept == set(versions[1:])
    assert not list(redis_client.scan_iter(match=keys.build_pattern(versions[0])))
    assert list(redis_client.scan_iter(match=keys.build_pattern(versions[1]), count=1000))
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == sorted(versions[1:])
    # the history keeps the removed build too (issue 16: the dashboard's builds page)
    history = read_history(tmp_path, settings.key_prefix)
    assert [e.build_version for e in history] == versions[::-1]


def test_failed_build_leaves_the_current_one_untouched(
    built: tuple[Settings, BuildResult, Path], redis_client: redis.Redis
) -> None:
    settings, result, artifacts = built
    keys = Keys(settings.key_prefix)
    before = sorted(redis_client.scan_iter(match=f"{settings.key_prefix}:*", count=10_000))
    one_event_each = Dataset(
        interactions=pl.DataFrame(
            {
                Columns.user: [1, 2, 3],
                Columns.item: [0, 1, 2],
                Columns.timestamp: [1, 2, 3],
                Columns.weight: [1.0, 1.0, 1.0],
                Columns.device: ["tv", "tv", "tv"],
                Columns.completion: [None, None, None],
            },
            schema_overrides={Columns.weight: pl.Float32, Columns.completion: pl.Float32},
        ),
        items=built_items(),
    )
    with pytest.raises(BuildError, match="label"):
        run_build(one_event_each, artifacts, redis_client, settings)
    assert current_build(redis_client, keys) == result.version
    assert sorted(redis_client.scan_iter(match=f"{settings.key_prefix}:*", count=10_000)) == before
    assert [p.name for p in artifacts.iterdir() if p.is_dir()] == [result.version]
    assert [e.build_version for e in read_history(artifacts, settings.key_prefix)] == [
        result.version
    ]  # a failed build adds no line to the history


def built_items() -> pl.DataFrame:
    return pl.DataFrame(
        {
            Columns.item: [0, 1, 2],
            Columns.title: ["a", "b", "c"],
            Columns.genres: ["x", "y", "x|y"],
            Columns.release_ts: [None, None, None],
            Columns.duration_min: [None, None, None],
        },
        schema_overrides={Columns.release_ts: pl.Int64, Columns.duration_min: pl.Float32},
    )


def test_candidates_exclude_history_in_redis(built: tuple[Settings, BuildResult, Path]) -> None:
    _, result, _ = built
    seen = result.candidate_model.seen
    # every stored candidate list is disjoint from what the user watched
    from recsys.store.codec import decode_user_state

    client = redis.Redis.from_url(built[0].redis_url or "")
    keys = Keys(built[0].key_prefix)
    for u, key in enumerate(result.users.keys()[:50]):
        state = decode_user_state(client.get(keys.user_state(result.version, key)) or b"")
        watched = seen.indices[seen.indptr[u] : seen.indptr[u + 1]]
        assert len(state.cand_item) == 60
        assert not np.isin(state.cand_item, watched).any()
