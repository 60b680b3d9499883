"""The store on a real Redis Cluster (3 masters + 3 replicas, started by this module): key
placement, one round trip per user read, builds that answer like on one server, deletion across
every master, and several `recsys serve` replicas sharing builds and events."""

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import numpy as np
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from redis.cluster import RedisCluster, key_slot

from api.prometheus import REQUEST_METRIC
from cli.main import main
from eval.run import run_eval
from loadtest.run import RECOMMEND_ROUTE, stop_server
from recsys.data.dataset import write_dataset
from recsys.data.synth import generate_synthetic
from recsys.errors import StoreError
from recsys.evaluation.protocol import EvalOptions
from recsys.features import FEATURE_NAMES
from recsys.inspection.live_drift import SCORE, LiveCounts
from recsys.net import free_port
from recsys.store.connect import async_client_for, client_for, cluster_node_url, read_slot_map
from recsys.store.drift_counts import add_live_counts, read_live_counts
from recsys.store.events import WatchEvent
from recsys.store.keys import Keys
from recsys.store.local_cluster import LocalRedisCluster
from recsys.store.user_store import (
    BuildWriter,
    append_event_async,
    current_build,
    delete_build,
    line_pointers,
    master_stats,
    promote,
    read_user,
    read_user_async,
)
from tests.conftest import small_settings
from tests.test_api_support import Built, api_client, build_small

ROOT = Path(__file__).resolve().parents[1]
TS = 1_700_000_000
USER_IDS = ["1", "42", "user-7", "a{b}c", "{}", "ünïcode", "x" * 200, "7}{", "{tag}"]


@pytest.fixture(scope="module")
def cluster_client(redis_cluster: LocalRedisCluster) -> Iterator[RedisCluster]:
    client = client_for(redis_cluster.url)
    assert isinstance(client, RedisCluster)
    yield client
    client.close()


@pytest.fixture(scope="module")
def on_cluster(redis_cluster: LocalRedisCluster, tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build_small(redis_cluster.url, tmp_path_factory.mktemp("cluster-artifacts"))


@pytest.fixture(scope="module")
def on_single(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build_small(redis_url, tmp_path_factory.mktemp("single-artifacts"))


def _commands_per_node(client: RedisCluster) -> dict[str, int]:
    """Commands each master has processed so far (INFO commandstats, summed)."""
    out = {}
    for node in client.get_primaries():
        stats = node.redis_connection.info("commandstats")
        out[node.name] = sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")
    return out


def test_cluster_urls_name_one_node_and_nothing_else() -> None:
    assert cluster_node_url("redis+cluster://10.0.0.5:7000") == "redis://10.0.0.5:7000"
    assert cluster_node_url("rediss+cluster://:pw@h:7000") == "rediss://:pw@h:7000"
    assert cluster_node_url("redis://h:6379/0") is None
    assert cluster_node_url("unix:///tmp/r.sock") is None
    for bad in ("redis+cluster://h", "redis+cluster://h:7000/3"):
        with pytest.raises(Exception, match="Cluster"):
            cluster_node_url(bad)


def test_a_users_state_and_events_share_a_slot_and_one_round_trip(
    cluster_client: RedisCluster, redis_cluster: LocalRedisCluster
) -> None:
    keys = Keys("test-slots")
    slots = set()
    for user in USER_IDS:
        state_key, events_key = keys.user_state("v1", user), keys.events(user)
        assert key_slot(state_key.encode()) == key_slot(events_key.encode()), user
        slots.add(key_slot(state_key.encode()))
        cluster_client.set(state_key, b"state")
        cluster_client.lpush(events_key, WatchEvent(3, TS, "tv").to_bytes())
    assert len(slots) == len(USER_IDS)  # users spread over slots, not one tag for everyone
    # every user is read with one pipelined round trip, answered by one master only
    for user in USER_IDS:
        before = _commands_per_node(cluster_client)
        record = read_user(cluster_client, keys, "v1", user, 10)
        after = _commands_per_node(cluster_client)
        moved = {n: after[n] - before[n] for n in after if after[n] != before[n]}
        assert record.state == b"state" and [e.item_id for e in record.events] == [3]
        owner = cluster_client.get_node_from_key(keys.events(user)).name
        assert moved == {owner: 2}, (user, moved)  # GET + LRANGE on the owner, nothing elsewhere


def test_the_async_client_reads_and_appends_on_the_cluster(
    redis_cluster: LocalRedisCluster,
) -> None:
    keys = Keys("test-async")

    async def scenario() -> list[list[int | str]]:
        client = async_client_for(redis_cluster.url, timeout_s=1.0, max_connections=8)
        try:
            out = []
            for user in USER_IDS:
                for item in range(5):
                    event = WatchEvent(item, TS + item, "tv")
                    await append_event_async(client, keys, user, event, cap=3, ttl_s=600)
                record = await read_user_async(client, keys, "none", user, 10)
                assert record.state is None
                out.append([e.item_id for e in record.events])
            return out
        finally:
            await client.aclose()

    # the script (LPUSH + LTRIM + EXPIRE) keeps the newest 3, oldest first when read
    assert asyncio.run(scenario()) == [[2, 3, 4]] * len(USER_IDS)
    client = client_for(redis_cluster.url)
    assert all(0 < client.ttl(keys.events(user)) <= 600 for user in USER_IDS)
    client.close()


def test_serving_writes_on_the_cluster_hold_the_event_loop_briefly(
    redis_cluster: LocalRedisCluster,
) -> None:
    """A live-drift flush (~700 counters, one worker's background report) and event writes on
    the cluster leave the event loop free: as MULTI/EXEC pipelines through redis-py's asyncio
    cluster client a flush held it 340-530 ms, stalling every request in flight (issue 11).
    The counts still add up, every bin present, with their TTL."""
    keys = Keys("test-loop")
    version = "20260101T000000Z-abcdef"
    bins = np.arange(20, dtype=np.int64) % 3  # zeros included: they must be stored too
    live = LiveCounts(requests=2, rows=100, counts=dict.fromkeys([*FEATURE_NAMES, SCORE], bins))

    async def scenario() -> tuple[float, LiveCounts]:
        client = async_client_for(redis_cluster.url, timeout_s=2.0, max_connections=4)
        await read_slot_map(client, 2.0)
        gaps: list[float] = []
        stop = asyncio.Event()

        async def ticker() -> None:  # how long the loop went without running it
            last = time.perf_counter()
            while not stop.is_set():
                await asyncio.sleep(0.001)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        try:
            await add_live_counts(client, keys, version, live, 60)  # connections opened
            task = asyncio.create_task(ticker())
            await asyncio.sleep(0.01)
            for _ in range(2):
                await add_live_counts(client, keys, version, live, 60)
            for i in range(30):
                event = WatchEvent(i, TS + i, "tv")
                await append_event_async(client, keys, f"u{i}", event, cap=3, ttl_s=600)
            stop.set()
            await task
            return max(gaps), await read_live_counts(client, keys, version)
        finally:
            await client.aclose()

    stall, got = asyncio.run(scenario())
    assert got.requests == 6 and got.rows == 300
    assert set(got.counts) == {*FEATURE_NAMES, SCORE}
    assert all(np.array_equal(c, 3 * bins) for c in got.counts.values())
    client = client_for(redis_cluster.url)
    assert 0 < client.ttl(keys.live_drift(version)) <= 60
    client.close()
    assert stall < 0.1, f"the event loop stalled {stall * 1000:.0f} ms"


def test_a_build_spreads_over_every_master_and_its_deletion_reaches_them_all(
    redis_cluster: LocalRedisCluster, cluster_client: RedisCluster, tmp_path: Path
) -> None:
    for node in cluster_client.get_primaries():  # count this build's redirections alone
        node.redis_connection.config_resetstat()
    built = build_small(redis_cluster.url, tmp_path / "artifacts")
    keys = built.keys
    pattern = keys.build_pattern(built.version)

    def per_master() -> list[int]:
        return [
            sum(1 for _ in node.redis_connection.scan_iter(match=pattern, count=1000))
            for node in cluster_client.get_primaries()
        ]

    counts = per_master()
    assert len(counts) == 3 and min(counts) > 0, counts
    # every pipelined SET went straight to its slot's master: no redirection was ever answered
    for node in cluster_client.get_primaries():
        errors = node.redis_connection.info("errorstats")
        assert not {k for k in errors if "MOVED" in k or "ASK" in k}, (node.name, errors)
    assert sum(counts) == len(built.result.users) + 1  # and the build's ready key
    stats = master_stats(cluster_client)
    assert len(stats) == 3 and all(s.keys > 0 for s in stats)
    extra = built.rebuild()  # a second build that must survive the deletion
    deleted = delete_build(cluster_client, keys, built.version)
    assert deleted == sum(counts) - 1  # the ready key goes first, on its own
    assert per_master() == [0, 0, 0]
    assert cluster_client.get(keys.user_state(extra.version, built.known_users(1)[0]))


def test_a_build_waits_for_the_replicas_before_it_can_be_published(
    redis_cluster: LocalRedisCluster, cluster_client: RedisCluster
) -> None:
    """The pointer may flip only once every replica holds the build: a master that died just
    after would otherwise hand its users to a replica without their states."""
    keys = Keys("test-replicas")
    writer = BuildWriter(cluster_client, keys, "v1")
    writer.wait_replicated(timeout_s=10)  # nothing pending: returns
    user = "stalled"
    master = redis_cluster.port_of_slot(key_slot(keys.events(user).encode()))
    [replica] = next(reps for port, reps in redis_cluster.slot_owners().values() if port == master)
    redis_cluster.pause_node(replica)
    try:
        list(writer.write([(user, b"state")]))
        started = time.monotonic()
        with pytest.raises(StoreError, match=f"127.0.0.1:{master}.*not publishing"):
            writer.wait_replicated(timeout_s=1.0)
        assert time.monotonic() - started < 5
    finally:
        redis_cluster.resume_node(replica)
    writer.wait_replicated(timeout_s=30)  # caught up once the replica runs again
    redis_cluster.wait_healthy()


def test_build_lines_and_promotion_on_the_cluster_wait_for_the_replicas(
    redis_cluster: LocalRedisCluster, cluster_client: RedisCluster
) -> None:
    """Issue 15's build lines on a cluster: each line's pointer is its own key, and a promotion
    (one SET of the champion's pointer) returns only once the replicas hold it, like a
    publication: a master lost right after the flip must not bring the old champion back."""
    keys = Keys("test-lines")
    for version, name in (
        ("20260101T000000Z-aaaaaa", "champion"),
        ("20260101T000001Z-bbbbbb", "challenger"),
    ):
        writer = BuildWriter(cluster_client, keys, version, name)
        list(writer.write([("u1", version.encode())]))
        writer.publish()
    assert line_pointers(cluster_client, keys) == {
        "champion": "20260101T000000Z-aaaaaa",
        "challenger": "20260101T000001Z-bbbbbb",
    }
    assert promote(cluster_client, keys, "challenger") == (
        "20260101T000000Z-aaaaaa",
        "20260101T000001Z-bbbbbb",
    )
    assert current_build(cluster_client, keys) == "20260101T000001Z-bbbbbb"
    # with the replica of the pointer's master stopped, the promotion cannot be acknowledged
    master = redis_cluster.port_of_slot(key_slot(keys.current.encode()))
    [replica] = next(reps for port, reps in redis_cluster.slot_owners().values() if port == master)
    cluster_client.set(keys.current, "20260101T000000Z-aaaaaa")
    redis_cluster.pause_node(replica)
    try:
        with pytest.raises(StoreError, match=f"127.0.0.1:{master}.*promote again"):
            promote(cluster_client, keys, "challenger", replication_timeout_s=1.0)
    finally:
        redis_cluster.resume_node(replica)
    redis_cluster.wait_healthy()


def test_a_build_on_the_cluster_stores_and_answers_like_one_on_a_single_server(
    on_cluster: Built, on_single: Built, cluster_client: RedisCluster, redis_url: str
) -> None:
    single = redis.Redis.from_url(redis_url)
    users = on_single.result.users.keys()
    assert users == on_cluster.result.users.keys()
    for user in users:
        a = single.get(on_single.keys.user_state(on_single.version, user))
        b = cluster_client.get(on_cluster.keys.user_state(on_cluster.version, user))
        assert a is not None and a == b, user
    single.close()
    sample = users[:: max(1, len(users) // 25)]
    answers = []
    for built in (on_single, on_cluster):
        # answers are compared, not latency: on a busy machine a cold connection past the 20 ms
        # read budget, or a ranker past the deadline, would answer from a fallback
        with api_client(built, built.with_serve(redis_timeout_ms=2000, deadline_ms=10_000)) as api:
            got = []
            for user in sample:
                r = api.get(f"/recommendations/{user}", params={"k": 10, "ts": TS})
                body = r.json()
                assert r.status_code == 200 and body["fallback"] is None
                got.append([(i["item_id"], i["score"]) for i in body["items"]])
            answers.append(got)
    assert answers[0] == answers[1]


# ---------------------------------------------------------------------- serve replicas


def _serve(built: Built, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "RECSYS_KEY_PREFIX": built.settings.key_prefix,
        "RECSYS_SERVE__BUILD_POLL_S": "0.2",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    cmd = [sys.executable, "-m", "cli.main", "serve", "--artifacts", str(built.artifacts)]
    cmd += ["--port", str(port), "--redis-url", built.settings.redis_url or ""]
    return subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


def _wait_ready(http: httpx.Client, base: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 90
    while True:
        if server.poll() is not None:
            assert server.stderr is not None
            raise AssertionError(f"recsys serve exited: {server.stderr.read().decode()[-2000:]}")
        try:
            if http.get(f"{base}/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "recsys serve did not become ready"
        time.sleep(0.2)


def _version(http: httpx.Client, base: str, user: str) -> str:
    body = http.get(f"{base}/recommendations/{user}", params={"ts": TS}).json()
    return str(body["model_version"])


def _served(http: httpx.Client, base: str) -> float:
    """Recommendations this server has answered (its /metrics)."""
    text = http.get(f"{base}/metrics").text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == f"{REQUEST_METRIC}_count" and s.labels.get("route") == RECOMMEND_ROUTE
    )


def test_two_serve_replicas_share_builds_and_events_through_the_cluster(
    on_cluster: Built, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Replicas coordinate through Redis only: an event posted to one changes the other's
    answers at once, and a new build is swapped into both without a restart. `recsys loadtest
    --host A,B` spreads its clients over both."""
    bases, servers = [], []
    with httpx.Client(timeout=10) as http:
        try:
            for _ in range(2):
                port = free_port()
                servers.append(_serve(on_cluster, port))
                bases.append(f"http://127.0.0.1:{port}")
            for base, server in zip(bases, servers, strict=True):
                _wait_ready(http, base, server)
            a, b = bases
            user = on_cluster.known_users(3)[2]
            top = http.get(f"{b}/recommendations/{user}", params={"k": 5, "ts": TS}).json()
            watched = top["items"][0]["item_id"]
            r = http.post(
                f"{a}/events", json={"user_id": user, "item_id": watched, "timestamp": TS}
            )
            assert r.status_code == 202
            after = http.get(f"{b}/recommendations/{user}", params={"k": 5, "ts": TS}).json()
            assert after["fallback"] is None
            assert watched not in [i["item_id"] for i in after["items"]]

            old = _version(http, a, user)
            assert _version(http, b, user) == old
            new = on_cluster.rebuild().version
            deadline = time.monotonic() + 20
            while {_version(http, a, user), _version(http, b, user)} != {new}:
                assert time.monotonic() < deadline, "a replica did not swap the new build in"
                time.sleep(0.1)
            # the event outlives the swap: it is build-independent
            again = http.get(f"{a}/recommendations/{user}", params={"k": 5, "ts": TS}).json()
            assert watched not in [i["item_id"] for i in again["items"]]

            write_dataset(on_cluster.dataset, tmp_path / "data")
            before = [_served(http, base) for base in bases]
            argv = ["loadtest", "--host", f"{a},{b}", "--data", str(tmp_path / "data")]
            argv += ["--users-rate", "20", "--duration", "3s", "--ramp", "1s"]
            # spreading is judged here, not latency: this machine may be busy with other tests
            argv += ["--out", str(tmp_path / "out"), "--max-p99-ms", "5000", "--max-failures", "9"]
            assert main(argv) == 0, capsys.readouterr().out
            summary = json.loads((tmp_path / "out" / "rate-20" / "summary.json").read_text())
            after = [_served(http, base) for base in bases]
            got = [x - y for x, y in zip(after, before, strict=True)]
            assert min(got) > 0.25 * sum(got), got  # both replicas took a fair share
            # the server-side breakdown is summed over both replicas' /metrics
            assert summary["total"]["requests"] > 30 and summary["stages_ms"]["redis"] > 0
        finally:
            for server in servers:
                stop_server(server)
                assert server.stderr is not None
                server.stderr.close()


# ---------------------------------------------------------------------- commands


def test_eval_on_the_cluster_scores_like_on_one_server_and_leaves_no_keys(
    redis_cluster: LocalRedisCluster,
    redis_url: str,
    cluster_client: RedisCluster,
    tmp_path: Path,
) -> None:
    write_dataset(generate_synthetic(n_users=200, n_items=80, seed=4, events_per_user=15), tmp_path)
    options = EvalOptions(resamples=20, permutations=50, drift_requests=0)
    reports = [
        run_eval(
            tmp_path,
            tmp_path / name,
            "leave-last-out",
            small_settings(url, key_prefix="ev"),
            options,
        )
        for name, url in (("single", redis_url), ("cluster", redis_cluster.url))
    ]
    assert reports[0].results == reports[1].results
    left = list(cluster_client.scan_iter(match="ev-eval-*", count=1000))  # every master
    assert left == []


def test_cluster_and_ray_flags_fail_as_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_dataset(generate_synthetic(n_users=50, n_items=30, seed=1, events_per_user=5), tmp_path)
    base = ["build", str(tmp_path), "--artifacts", str(tmp_path / "art")]
    closed = free_port()
    cases = [
        (["--redis-url", f"redis+cluster://127.0.0.1:{closed}"], "cannot reach the Redis Cluster"),
        (["--redis-url", "redis+cluster://127.0.0.1"], "names one node as HOST:PORT"),
        (["--ray-address", "nonsense"], "expected auto or HOST:PORT"),
        (["--ray-address", f"127.0.0.1:{closed}"], "cannot connect to the Ray cluster"),
    ]
    for flags, message in cases:
        started = time.monotonic()
        assert main(base + flags) == 2, flags
        err = capsys.readouterr().err.strip()
        assert err.startswith("recsys: error:") and message in err, err
        assert time.monotonic() - started < 30, flags  # fails fast, before any training
    assert not (tmp_path / "art").exists() or not any((tmp_path / "art").iterdir())
