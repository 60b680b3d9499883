"""Bounded memory (issue 12): event lists expire, a flood of new user ids levels off at the
embedded server's ceiling while build data stays whole, and /metrics shows Redis' memory."""

import asyncio
import time
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from recsys.config import RedisServerConfig
from recsys.errors import StoreError
from recsys.pipeline import run_build
from recsys.store.events import WatchEvent
from recsys.store.keys import Keys
from recsys.store.server import LocalRedis
from recsys.store.user_store import BuildWriter, append_event_async
from tests.conftest import small_settings
from tests.test_api_support import Built, api_client, small_dataset

CEILING_MB = 3  # an empty Redis uses about 1 MB
BUILD_USERS = 200
STATE_BYTES = 2_000  # 200 users x 2 KB: 0.4 MB of build data
FLOOD_USERS = 10_000  # each with one ~300-byte event: ~4.5 MB offered, 1.5x the ceiling


def _small_build(client: redis.Redis, keys: Keys, version: str) -> list[str]:
    writer = BuildWriter(client, keys, version)
    users = [f"known-{i}" for i in range(BUILD_USERS)]
    for _ in writer.write(((u, bytes(STATE_BYTES)) for u in users), batch_size=100):
        pass
    writer.publish()
    return [keys.user_state(version, u) for u in users]


async def _flood(url: str, keys: Keys, samples: list[tuple[int, int]]) -> None:
    """New user ids, one event each, through the API's own write; memory sampled as it goes."""
    pool = aioredis.BlockingConnectionPool.from_url(url, max_connections=32, timeout=30)
    client = aioredis.Redis.from_pool(pool)
    try:
        event = WatchEvent(item_id="i" * 256, timestamp=1_700_000_000, device="tv")
        for start in range(0, FLOOD_USERS, 500):
            await asyncio.gather(
                *(
                    append_event_async(client, keys, f"flood-{n}", event, 100, 3600)
                    for n in range(start, start + 500)
                )
            )
            memory = await client.info("memory")
            stats = await client.info("stats")
            samples.append((int(memory["used_memory"]), int(stats["evicted_keys"])))
    finally:
        await client.aclose()


def test_a_flood_of_new_user_ids_levels_off_and_build_data_stays(tmp_path: Path) -> None:
    """Issue 12: each new id made a permanent key and the embedded Redis had no ceiling, so a
    loop of random ids grew memory until the kernel killed Redis."""
    cfg = RedisServerConfig(maxmemory_mb=CEILING_MB)
    keys = Keys("flood")
    samples: list[tuple[int, int]] = []
    with LocalRedis(tmp_path / "redis", config=cfg) as server:
        client = redis.Redis.from_url(server.url)
        build_keys = _small_build(client, keys, "20260101T000000Z-f100d0")
        asyncio.run(_flood(server.url, keys, samples))
        still_there = sum(client.exists(k) for k in build_keys)
        expiring = int(client.info("keyspace")["db0"]["expires"])
        client.close()
    ceiling = CEILING_MB * 2**20
    evicting = [used for used, evicted in samples if evicted > 0]
    assert evicting, "the flood never reached the ceiling: it proves nothing"
    assert len(evicting) >= len(samples) // 4  # levelled off for a good part of the flood
    assert max(used for used, _ in samples) <= ceiling * 1.05
    assert still_there == BUILD_USERS  # build data has no TTL: never evicted
    assert 0 < expiring < FLOOD_USERS  # the lists evicted were event lists


def test_a_build_that_does_not_fit_fails_loudly(tmp_path: Path) -> None:
    """Build data is never evicted: at the ceiling a build's write is refused, with a message
    that says what to change, instead of keys vanishing."""
    cfg = RedisServerConfig(maxmemory_mb=2)
    with LocalRedis(tmp_path / "redis", config=cfg) as server:
        client = redis.Redis.from_url(server.url)
        writer = BuildWriter(client, Keys("full"), "20260101T000000Z-0f0110")
        blobs = ((f"u{i}", bytes(10_000)) for i in range(1_000))  # 10 MB into 2 MB
        with pytest.raises(StoreError, match="Redis is full") as info:
            for _ in writer.write(blobs, batch_size=50):
                pass
        client.close()
    assert "MAXMEMORY_MB" in str(info.value)


def test_a_redis_that_may_evict_build_data_is_refused(tmp_path: Path) -> None:
    """allkeys-* policies would evict build keys silently: the build refuses to start."""
    with LocalRedis(tmp_path / "redis") as server:
        client = redis.Redis.from_url(server.url)
        client.config_set("maxmemory-policy", "allkeys-lru")
        settings = small_settings(server.url)
        with pytest.raises(StoreError, match="allkeys-lru"):
            run_build(small_dataset(), tmp_path / "artifacts", client, settings)
        assert client.dbsize() == 0
        client.close()


def test_events_expire_and_each_write_restarts_the_clock(built: Built) -> None:
    settings = built.with_serve(events_ttl_s=600)
    user = "ttl-user"
    key = built.keys.events(user)
    with (
        api_client(built, settings) as api,
        redis.Redis.from_url(built.settings.redis_url or "") as r,
    ):
        assert api.post("/events", json={"user_id": user, "item_id": 1}).status_code == 202
        assert 590 <= r.ttl(key) <= 600
        r.expire(key, 5)
        assert api.post("/events", json={"user_id": user, "item_id": 2}).status_code == 202
        assert 590 <= r.ttl(key) <= 600
        # a user's state in the build never expires
        assert r.ttl(built.keys.user_state(built.version, built.known_users(1)[0])) == -1


def _redis_gauges(api: TestClient) -> dict[tuple[str, str], float]:
    text = api.get("/metrics").text
    return {
        (s.name, s.labels.get("kind", "")): s.value
        for f in text_string_to_metric_families(text)
        if f.name.startswith("recsys_redis")
        for s in f.samples
    }


def test_metrics_show_redis_memory_and_keys(built: Built) -> None:
    with api_client(built) as api:
        deadline = time.monotonic() + 10
        while ("recsys_redis_memory_bytes", "used") not in (gauges := _redis_gauges(api)):
            assert time.monotonic() < deadline, "Redis was never read for /metrics"
            time.sleep(0.05)
        for n in range(5):
            api.post("/events", json={"user_id": f"metrics-new-{n}", "item_id": 1})
        deadline = time.monotonic() + 10
        while _redis_gauges(api)[("recsys_redis_keys", "expiring")] < 5:
            assert time.monotonic() < deadline, "new event lists never showed in /metrics"
            time.sleep(0.1)
    with redis.Redis.from_url(built.settings.redis_url or "") as r:
        memory = r.info("memory")
    assert gauges[("recsys_redis_memory_bytes", "used")] > int(memory["used_memory"]) / 4
    assert gauges[("recsys_redis_memory_bytes", "max")] == int(memory["maxmemory"])
    assert gauges[("recsys_redis_keys", "all")] >= len(built.result.users)
    assert ("recsys_redis_evicted_keys", "") in gauges
