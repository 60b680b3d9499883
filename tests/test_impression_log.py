"""The impression log never makes an answer wait or fail: a full backlog drops, a Redis that
stops answering fails the batch, both are counted, and logging resumes by itself."""

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from recsys.store.feedback_log import read_impressions
from recsys.store.server import LocalRedis
from tests.test_api_support import Built, api_client, build_small


def _counted(api: TestClient, outcome: str) -> float:
    line = f'recsys_impressions_total{{outcome="{outcome}"}}'
    for row in api.get("/metrics").text.splitlines():
        if row.startswith(line):
            return float(row.split()[-1])
    raise AssertionError(f"{line} is not exported")


def test_a_full_backlog_drops_and_counts(built: Built, redis_client: redis.Redis) -> None:
    """Nothing is written while the flush interval runs (a minute here); past max_pending,
    answers still come, their impressions are dropped and counted; the rest are written when
    the app stops."""
    settings = built.settings.model_copy(
        update={"log": built.settings.log.model_copy(update={"flush_ms": 60_000, "max_pending": 3})}
    )
    since_ms = time.time_ns() // 1_000_000
    users = built.known_users(5)
    with api_client(built, settings) as api:
        for user in users:
            assert api.get(f"/recommendations/{user}", params={"k": 3}).status_code == 200
        assert _counted(api, "dropped") == 2
        assert _counted(api, "logged") == 0
    logged = read_impressions(redis_client, built.keys, settings.log.shards, since_ms)
    assert sorted(i.user_id for i in logged) == sorted(users[:3])


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[LocalRedis]:
    server = LocalRedis(tmp_path / "redis")
    server.start()
    yield server
    if server.pid is not None:
        os.kill(server.pid, signal.SIGCONT)
    server.stop()


def test_a_stalled_redis_fails_the_batch_not_the_answer(
    own_redis: LocalRedis, tmp_path: Path
) -> None:
    built = build_small(own_redis.url, tmp_path / "artifacts")
    log = built.settings.log.model_copy(update={"flush_ms": 10, "write_timeout_ms": 100})
    settings = built.settings.model_copy(update={"log": log})
    user = built.known_users(1)[0]
    assert own_redis.pid is not None
    with api_client(built, settings) as api:
        assert api.get(f"/recommendations/{user}").json()["fallback"] is None
        os.kill(own_redis.pid, signal.SIGSTOP)  # the process is there, and answers nothing
        try:
            stalled = [api.get(f"/recommendations/{user}", params={"k": 5}) for _ in range(3)]
            deadline = time.monotonic() + 10
            while _counted(api, "failed") < 3:
                assert time.monotonic() < deadline, "the stalled batch was not counted as failed"
                time.sleep(0.05)
        finally:
            os.kill(own_redis.pid, signal.SIGCONT)
        for r in stalled:
            assert r.status_code == 200
            assert r.json()["fallback"] == "redis-unavailable"
            assert r.json()["latency_ms"] < built.settings.serve.deadline_ms
        before = _counted(api, "logged")
        api.get(f"/recommendations/{user}")
        deadline = time.monotonic() + 10
        while _counted(api, "logged") < before + 1:  # resumed by itself
            assert time.monotonic() < deadline, "logging did not resume"
            time.sleep(0.05)
