"""The deadline and the fallbacks against a real Redis that is stopped, paused and restarted.

The server here is a LocalRedis of this module's own on a fixed TCP port, so that it can be
stopped and started again at the same address while the app keeps running.
"""

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from httpx2 import Response

from recsys.items import ItemTable
from recsys.net import free_port
from recsys.store.codec import decode_user_state
from recsys.store.server import LocalRedis
from tests.test_api_support import Built, api_client, build_small

DEADLINE_S = 0.100


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedis]:
    # DEBUG SLEEP stalls it below; Redis 7 refuses DEBUG unless allowed (local connections)
    server = LocalRedis(tmp_path_factory.mktemp("redis"), port=free_port(), debug_command=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def built(own_redis: LocalRedis, tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build_small(own_redis.url, tmp_path_factory.mktemp("artifacts"))


@pytest.fixture(scope="module")
def api(built: Built) -> Iterator[TestClient]:
    with api_client(built) as client:
        yield client


def _answer_in_time(api: TestClient, path: str, **params: str | int) -> dict[str, Any]:
    """A 200 within the deadline, timed at the client. One retry: on a shared 2-core machine
    the whole process is sometimes descheduled (seen: 300 ms at load average 4), which no
    server can prevent; a miss that happens twice in a row is the server's own."""
    for _ in range(2):
        started = time.perf_counter()
        r = api.get(path, params=params)
        wall_s = time.perf_counter() - started
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        if wall_s < DEADLINE_S and body["latency_ms"] < DEADLINE_S * 1000:
            return body
    raise AssertionError(f"{path} {params}: {wall_s * 1000:.0f} ms, twice over the deadline")


def test_every_answer_is_inside_the_deadline(api: TestClient, built: Built) -> None:
    """The contract: known users, unknown users, the largest k, with events, each < 100 ms."""
    users = built.known_users(40)
    api.post("/events", json={"user_id": users[0], "item_id": 1, "completion": 1.0})
    paths = [f"/recommendations/{u}" for u in users] + [
        f"/recommendations/new-{i}" for i in range(10)
    ]
    fallbacks = set()
    for path in paths:
        for k in (1, 20, 500):
            fallbacks.add(_answer_in_time(api, path, k=k, device="tv")["fallback"])
    assert None in fallbacks and "cold-start" in fallbacks


def test_slow_redis_answers_from_popular_items_within_the_deadline(
    api: TestClient, built: Built, own_redis: LocalRedis
) -> None:
    """CLIENT PAUSE stalls every Redis client for a second: a real slow Redis, not a mock."""
    user = built.known_users(1)[0]
    assert _answer_in_time(api, f"/recommendations/{user}")["fallback"] is None
    with redis.Redis.from_url(own_redis.url) as admin:
        admin.execute_command("CLIENT", "PAUSE", 1000, "ALL")
        body = _answer_in_time(api, f"/recommendations/{user}", k=7)
    assert body["fallback"] == "redis-unavailable"
    assert body["model_version"] == built.version
    assert len(body["items"]) == 7
    time.sleep(1.1)  # the pause is over: the next answer is the ranker's again
    assert _answer_in_time(api, f"/recommendations/{user}")["fallback"] is None


def test_a_stalled_redis_fails_reads_over_but_still_stores_events(
    api: TestClient, built: Built, own_redis: LocalRedis
) -> None:
    """A read gives up after redis_timeout_ms (20) and answers from popular items; an event
    write has no fallback, so it waits up to event_timeout_ms (100) and lands once Redis moves.

    DEBUG SLEEP blocks the (single-threaded) server for exactly its time; CLIENT PAUSE would
    not do here, as it ends on the server's cron tick, up to 100 ms late."""
    user = built.known_users(2)[1]
    key = built.keys.events(user)
    with redis.Redis.from_url(own_redis.url) as admin:
        before = admin.llen(key)
        stall = threading.Thread(target=admin.execute_command, args=("DEBUG", "SLEEP", 0.09))
        stall.start()
        time.sleep(0.01)  # the sleep has reached the server
        read = api.get(f"/recommendations/{user}", params={"k": 5})
        started = time.perf_counter()
        write = api.post("/events", json={"user_id": user, "item_id": 1})
        write_s = time.perf_counter() - started
        stall.join()
        stored = admin.llen(key)
    assert read.status_code == 200 and read.json()["fallback"] == "redis-unavailable"
    assert write.status_code == 202, write.text
    assert write_s > 0.02, "the write did not wait through the stall: it proves nothing"
    assert stored == before + 1


def test_redis_stopped_then_started_again_without_restarting_the_app(
    api: TestClient, built: Built, own_redis: LocalRedis
) -> None:
    users = built.known_users(3)
    # ready to begin with (polled: the stall test before may have left a broken connection,
    # and a reconnect on a busy 2-core machine can take longer than the 20 ms readiness budget)
    _wait_for(api, "/readyz", lambda r: r.status_code == 200)
    own_redis.stop()
    try:
        for user in users:
            body = _answer_in_time(api, f"/recommendations/{user}", k=5)
            assert body["fallback"] == "redis-unavailable"
            assert [i["item_id"] for i in body["items"]] == _popular(built, 5)
        ready = api.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["detail"].startswith("redis")
        assert ready.json()["model_version"] == built.version
        event = api.post("/events", json={"user_id": users[0], "item_id": 1})
        assert event.status_code == 503
        assert "retry later" in event.json()["detail"]
        assert api.get("/healthz").status_code == 200
    finally:
        own_redis.start()
    body = _wait_for(api, f"/recommendations/{users[0]}", lambda r: r.json()["fallback"] is None)
    assert body["model_version"] == built.version
    _wait_for(api, "/readyz", lambda r: r.status_code == 200)
    top = body["items"][0]["item_id"]
    assert api.post("/events", json={"user_id": users[0], "item_id": top}).status_code == 202
    after = api.get(f"/recommendations/{users[0]}", params={"k": 50}).json()
    assert top not in [i["item_id"] for i in after["items"]]


def _popular(built: Built, k: int) -> list[object]:
    items = ItemTable.load(built.artifacts / built.version)
    return [items.ids_list[i] for i in items.popular[:k]]


def _wait_for(
    api: TestClient, path: str, ok: Callable[[Response], bool], timeout_s: float = 10.0
) -> dict[str, Any]:
    """Redis is back: answers return to normal by themselves (reconnect, no restart). Polled,
    because the first request may still meet a connection from before the restart."""
    deadline = time.monotonic() + timeout_s
    while True:
        r = api.get(path)
        assert r.status_code in (200, 503)
        if ok(r):
            return dict(r.json())
        assert time.monotonic() < deadline, f"{path} did not recover after Redis came back"
        time.sleep(0.05)


def test_ranker_timeout_answers_in_stage1_order(built: Built, own_redis: LocalRedis) -> None:
    """A 1 ms deadline leaves no time to rank (Redis still has its own, longer timeout)."""
    settings = built.with_serve(deadline_ms=1.0, redis_timeout_ms=1000.0)
    user = built.known_users(5)[-1]
    with api_client(built, settings) as api:
        body = api.get(f"/recommendations/{user}", params={"k": 10}).json()
    assert body["fallback"] == "ranker-timeout"
    with redis.Redis.from_url(own_redis.url) as client:
        state = decode_user_state(client.get(built.keys.user_state(built.version, user)) or b"")
    ids = ItemTable.load(built.artifacts / built.version).ids_list
    assert [i["item_id"] for i in body["items"]] == [ids[i] for i in state.cand_item[:10]]


def test_concurrent_requests_all_rank_and_release_the_pool(built: Built) -> None:
    """Eight threads at once: every answer is a ranked 200, and the rank-job accounting that
    the deadline estimate relies on returns to zero in flight.

    Generous budgets here: eight client threads in the test process compete with the app for
    the GIL, which is not what this test is about (the deadline tests above are)."""
    settings = built.with_serve(deadline_ms=2000.0, redis_timeout_ms=1000.0)
    users = built.known_users(8)
    fallbacks: list[object] = []
    with api_client(built, settings) as api:

        def fire(user: str) -> None:
            for _ in range(15):
                r = api.get(f"/recommendations/{user}", params={"k": 20})
                fallbacks.append(r.json()["fallback"] if r.status_code == 200 else r.status_code)

        threads = [threading.Thread(target=fire, args=(u,)) for u in users]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        service = api.app.state.service  # type: ignore[attr-defined]
        deadline = time.monotonic() + 5
        while service.rank_time.in_flight and time.monotonic() < deadline:
            time.sleep(0.01)
        assert service.rank_time.in_flight == 0
    assert fallbacks == [None] * 8 * 15
