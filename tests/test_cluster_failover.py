"""A master of the Redis Cluster is killed (SIGKILL) while `recsys serve` answers requests: its
replica is promoted, every answer still comes within the deadline with no 5xx (a fallback is
allowed while the master is gone), and answers go back to normal by themselves.

Events are durable, not fast: a `POST /events` for a user of the dead master waits (retrying
within `serve.event_timeout_ms`) until the replica takes over, and is then acknowledged. Here
the budget is longer than the test cluster's failover (cluster-node-timeout 1 s, then the
election), so every event must be acknowledged, inside the budget, and stored exactly once."""

import asyncio
import itertools
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx2 as httpx
import pytest
import redis
from redis.cluster import key_slot

from api.service import REDIS_ERRORS
from loadtest.run import stop_server
from recsys.config import FeedbackLogConfig
from recsys.net import free_port
from recsys.store.connect import ServingCluster, async_client_for, client_for, read_slot_map
from recsys.store.events import WatchEvent
from recsys.store.feedback_log import read_impressions
from recsys.store.local_cluster import LocalRedisCluster
from tests.test_api_support import Built, build_small

ROOT = Path(__file__).resolve().parents[1]
DEADLINE_MS = 100.0
UNAVAILABLE = "redis-unavailable"
EVENT_TS = itertools.count(1_700_000_000)  # unique over every run of the module
# An event's budget: longer than a failover of the test cluster (promoted 1.4-2.0 s after the
# kill in our runs), as an operator who wants no 503 during a failover would set it.
EVENT_TIMEOUT_MS = 4000.0
# A dead master is replaced no sooner than about half cluster-node-timeout (LocalRedisCluster's
# 1 s: a ping unanswered that long) plus the election's 0.5-1 s delay (Redis Cluster
# specification, "Replica election and promotion"): an event for its users posted at its death
# cannot be stored sooner than this.
NO_PROMOTION_BEFORE_S = 0.5


@dataclass(frozen=True)
class Shot:
    at: float  # monotonic time the request was sent
    route: str  # "get" or "event"
    victim: bool  # the user's slot is on the killed master
    status: int
    client_ms: float
    server_ms: float | None
    fallback: str | None
    request_id: str | None = None
    user: str | None = None  # events: whose
    ts: int | None = None  # events: the timestamp posted


@pytest.fixture(scope="module")
def served(
    redis_cluster: LocalRedisCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Built, str]]:
    built = build_small(redis_cluster.url, tmp_path_factory.mktemp("artifacts"))
    port = free_port()
    env = {
        **os.environ,
        "RECSYS_KEY_PREFIX": built.settings.key_prefix,
        # production's 20 ms read budget is tight on a 2-core machine busy with other tests;
        # 50 ms still leaves half the deadline, and a timeout still means a fallback
        "RECSYS_SERVE__REDIS_TIMEOUT_MS": "50",
        "RECSYS_SERVE__EVENT_TIMEOUT_MS": str(EVENT_TIMEOUT_MS),
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    cmd = [sys.executable, "-m", "cli.main", "serve", "--artifacts", str(built.artifacts)]
    cmd += ["--port", str(port), "--redis-url", redis_cluster.url]
    server = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(timeout=10) as http:
            deadline = time.monotonic() + 90
            while True:
                if server.poll() is not None:
                    assert server.stderr is not None
                    raise AssertionError(server.stderr.read().decode()[-2000:])
                try:
                    if http.get(f"{base}/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "recsys serve did not become ready"
                time.sleep(0.2)
        yield built, base
    finally:
        stop_server(server)
        assert server.stderr is not None
        server.stderr.close()


def _fire(
    base: str, victims: list[str], others: list[str], stop: threading.Event, route: str
) -> list[Shot]:
    """GETs without pause, or events (one every 50 ms), alternating users of the killed master
    and of the others. GETs and events come from threads of their own, and each event is posted
    without waiting for the previous one (an event may wait for the promotion), as many clients
    would: a waiting event holds back no other request."""
    if route == "event":
        with httpx.Client(timeout=10) as http, ThreadPoolExecutor(64) as pool:
            posted = []
            for i in itertools.count():
                if stop.is_set():
                    break
                victim = i % 2 == 0
                user = (victims if victim else others)[
                    (i // 2) % len(victims if victim else others)
                ]
                posted.append(pool.submit(_post_event, http, base, user, victim))
                time.sleep(0.05)
            return [f.result() for f in posted]
    shots: list[Shot] = []
    with httpx.Client(timeout=10) as http:
        i = 0
        while not stop.is_set():
            victim, user = _user_of(i, victims, others)
            started = time.monotonic()
            r = http.get(f"{base}/recommendations/{user}", params={"k": 10})
            body = r.json() if r.status_code == 200 else {}
            shots.append(
                Shot(
                    started,
                    "get",
                    victim,
                    r.status_code,
                    _ms(started),
                    body.get("latency_ms"),
                    body.get("fallback"),
                    body.get("request_id"),
                )
            )
            time.sleep(0.002)
            i += 1
    return shots


def _post_event(http: httpx.Client, base: str, user: str, victim: bool) -> Shot:
    # a timestamp of its own: the test finds each event in the user's list
    ts = next(EVENT_TS)
    started = time.monotonic()
    r = http.post(f"{base}/events", json={"user_id": user, "item_id": 1, "timestamp": ts})
    return Shot(started, "event", victim, r.status_code, _ms(started), None, None, user=user, ts=ts)


def _user_of(i: int, victims: list[str], others: list[str]) -> tuple[bool, str]:
    """The i-th request's user: of the killed master (even i) or of the others (odd i)."""
    victim = i % 2 == 0
    users = victims if victim else others
    return victim, users[(i // 2) % len(users)]


def _ms(started: float) -> float:
    return (time.monotonic() - started) * 1000


@dataclass(frozen=True)
class Failover:
    shots: list[Shot]
    started_at: float  # when the traffic started
    killed_at: float
    dead_at: float  # the killed process had exited
    promoted_at: float

    @property
    def gets(self) -> list[Shot]:
        return [s for s in self.shots if s.route == "get"]

    @property
    def events(self) -> list[Shot]:
        return [s for s in self.shots if s.route == "event"]

    def control(self) -> list[Shot]:
        """GETs outside the failover (past the first connections, before the kill or a second
        after the promotion): how fast this machine answers when no master is down."""
        return [
            s
            for s in self.gets
            if self.started_at + 0.3 <= s.at < self.killed_at or s.at >= self.promoted_at + 1.0
        ]

    def summary(self) -> str:
        gets, events = self.gets, self.events
        during = [s for s in gets if self.killed_at <= s.at < self.promoted_at]
        control = self.control()
        return (
            f"failover: {len(gets)} GETs, {len(events)} events; promoted "
            f"{self.promoted_at - self.killed_at:.2f}s after the kill; fallbacks during failover: "
            f"{sum(s.fallback is not None for s in during)} of {len(during)}; "
            f"client max {max(s.client_ms for s in gets):.0f} ms, server max "
            f"{max(s.server_ms or 0.0 for s in gets):.1f} ms (without a failover: "
            f"{max((s.server_ms or 0.0 for s in control), default=0.0):.1f} ms); "
            f"events refused (503): {sum(s.status == 503 for s in events)}, slowest event "
            f"{max((s.client_ms for s in events), default=0.0):.0f} ms at the client; "
            f"slowest answers (s after the kill, victim, server ms, fallback): {self.slowest()}"
        )

    def slowest(self, n: int = 5) -> list[tuple[float, bool, float | None, str | None]]:
        worst = sorted(self.gets, key=lambda s: -(s.server_ms or 0.0))[:n]
        return [(round(s.at - self.killed_at, 3), s.victim, s.server_ms, s.fallback) for s in worst]


def _fail_over(base: str, built: Built, users: list[str], cluster: LocalRedisCluster) -> Failover:
    """Requests without pause; SIGKILL the master of users[0]'s slot; wait for its replica's
    promotion; 2 s more of traffic. The killed node is restarted (it rejoins as a replica)."""
    victim_port = cluster.port_of_slot(key_slot(built.keys.events(users[0]).encode()))
    [(victim_slots, (_, [replica_port]))] = [
        (span, owners) for span, owners in cluster.slot_owners().items() if owners[0] == victim_port
    ]

    def on_victim(user: str) -> bool:
        slot = key_slot(built.keys.events(user).encode())
        return victim_slots[0] <= slot <= victim_slots[1]

    victims = [u for u in users if on_victim(u)]
    others = [u for u in users if not on_victim(u)]
    assert victims and others

    stop = threading.Event()
    result: list[list[Shot]] = []
    threads = [
        threading.Thread(
            target=lambda route=route: result.append(_fire(base, victims, others, stop, route))
        )
        for route in ("get", "event")
    ]
    started_at = time.monotonic()
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.0)
        killed_at = time.monotonic()
        cluster.kill_node(victim_port)
        dead_at = time.monotonic()
        deadline = killed_at + 30
        while cluster.port_of_slot(victim_slots[0]) != replica_port:
            assert time.monotonic() < deadline, "the replica was not promoted"
            time.sleep(0.05)
        promoted_at = time.monotonic()
        time.sleep(2.0)  # keep firing on the promoted replica
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        cluster.restart_node(victim_port)
    shots = sorted((s for fired in result for s in fired), key=lambda s: s.at)
    return Failover(shots, started_at, killed_at, dead_at, promoted_at)


# Runs of the scenario before the test gives up on a machine too busy to judge the deadline.
ATTEMPTS = 3


def test_killing_a_master_mid_traffic_fails_over_without_a_5xx(
    served: tuple[Built, str], redis_cluster: LocalRedisCluster
) -> None:
    built, base = served
    users = built.known_users(300)
    # A late answer can be this shared 2-core machine's doing (other tests hold both cores) as
    # much as the failover's. So the failover is done again, after the cluster has healed, when
    # one answer was late: up to ATTEMPTS times. A failover that makes answers late every time
    # still fails the test; no run may ever answer a 5xx. Each run's summary says whether its
    # answers outside the failover (the control) were late too.
    runs: list[Failover] = []
    for _ in range(ATTEMPTS):
        redis_cluster.wait_healthy()
        run = _fail_over(base, built, users, redis_cluster)
        runs.append(run)
        print(run.summary())
        if all((s.server_ms or 0.0) <= DEADLINE_MS for s in run.gets):
            break
    else:
        raise AssertionError(
            f"in {ATTEMPTS} failovers, an answer was later than {DEADLINE_MS:g} ms every time:\n"
            + "\n".join(r.summary() for r in runs)
        )
    gets, events = run.gets, run.events
    killed_at, promoted_at = run.killed_at, run.promoted_at
    # the first requests open connections to every master: judge the last half second
    # (answered before the kill: a request in flight when the master died may fail fast)
    before = [s for s in gets if killed_at - 0.5 <= s.at and s.at + s.client_ms / 1000 < killed_at]
    during = [s for s in gets if killed_at <= s.at < promoted_at]
    settled = [s for s in gets if s.at >= promoted_at + 1.0]
    slow = [s for s in gets if (s.server_ms or 0) > 50]
    print("slow", [(round(s.at - killed_at, 3), s.victim, s.server_ms, s.fallback) for s in slow])
    # never a 5xx, ever; always inside the deadline as the server measured it
    assert all({s.status for s in r.gets} == {200} for r in runs)
    assert max(s.server_ms or 0.0 for s in gets) <= DEADLINE_MS
    assert max(s.client_ms for r in runs for s in r.gets) < 2000, "a request hung"
    # the test did hit the failover: users of the dead master got a fallback meanwhile
    # (a ranker-timeout is the CPU's doing, not Redis': this machine runs other tests too)
    # (before the kill, a read may still miss its 50 ms budget on this loaded machine: once,
    # or 2% of the answers; during the failover, the dead master's users get it)
    unavailable_before = [s for s in before if s.fallback == UNAVAILABLE]
    assert before and len(unavailable_before) <= max(1, 0.02 * len(before)), unavailable_before
    assert any(s.victim and s.fallback == UNAVAILABLE for s in during)
    # and it healed by itself: every answer normal again once the replica took over
    assert len(settled) > 20
    # (the same allowance for a read that misses its budget: a slot map left stale would
    # fail every answer for the dead master's users, half the traffic)
    unavailable_after = [s for s in settled if s.fallback == UNAVAILABLE]
    assert len(unavailable_after) <= max(1, 0.02 * len(settled)), unavailable_after
    assert sum(s.fallback is None for s in settled) >= 0.9 * len(settled)
    # events: no 5xx either; each acknowledged within its budget (a write that had spent it
    # would have been a 503) ...
    assert all(s.status == 202 for r in runs for s in r.events), run.summary()
    assert max(s.client_ms for r in runs for s in r.events) < EVENT_TIMEOUT_MS
    # ... and acknowledged only once stored: those posted for the dead master's users right
    # after the kill waited for the promotion, which cannot come before the node timeout
    early = [s for s in events if s.victim and run.dead_at <= s.at < run.dead_at + 0.3]
    assert early, "no event was posted for the dead master's users while it was down"
    for s in early:
        assert s.at + s.client_ms / 1000 >= run.dead_at + NO_PROMOTION_BEFORE_S, s
    # the impression log healed too: answers after the promotion are logged, the streams of
    # the dead master's shards included (each master holds some of the 8 shards' hash tags)
    shown = {s.request_id for s in settled if s.request_id}
    assert len(shown) == len(settled)
    logged: set[str] = set()
    client = client_for(redis_cluster.url)
    try:
        deadline = time.monotonic() + 10  # a batch is written every log.flush_ms
        while not shown <= logged and time.monotonic() < deadline:
            shards = FeedbackLogConfig().shards
            logged = {i.request_id for i in read_impressions(client, built.keys, shards)}
            time.sleep(0.2)
    finally:
        client.close()
    assert len(shown & logged) >= 0.99 * len(shown), (len(shown & logged), len(shown))
    # every acknowledged event is in its user's list, once: never lost, and a retry for the
    # event log alone (its shard on the dead master, the user's list on a live one) does not
    # push it again
    copies = {}
    client = client_for(redis_cluster.url)
    try:
        for s in (s for r in runs for s in r.events if s.status == 202):
            assert s.user is not None
            stored = client.lrange(built.keys.events(s.user), 0, -1)
            copies[(s.user, s.ts)] = sum(WatchEvent.from_bytes(b).timestamp == s.ts for b in stored)
    finally:
        client.close()
    assert copies and set(copies.values()) == {1}, {k: n for k, n in copies.items() if n != 1}


def test_a_dead_master_rebuilds_no_slot_map_on_a_callers_time(
    redis_cluster: LocalRedisCluster,
) -> None:
    """After a command fails on a dead master, redis-py's cluster client rebuilds its slot map
    on the next command of any caller (and again after every failure), on the serving event
    loop (issue 11). The serving client goes on with the map it has while the master is not
    replaced, and rebuilds it once, in the background, when its replica has taken over."""
    redis_cluster.wait_healthy()
    owners = redis_cluster.slot_owners()
    (victim_span, (victim_port, _)), (other_span, _) = list(owners.items())[:2]
    victim_key = next(k for k in (f"k{i}" for i in range(10_000)) if _in(k, victim_span))
    other_key = next(k for k in (f"k{i}" for i in range(10_000)) if _in(k, other_span))
    redis_cluster.wait_healthy()
    sync = client_for(redis_cluster.url)
    sync.set(victim_key, b"v")
    sync.set(other_key, b"o")
    sync.close()
    # replication is asynchronous: a replica in sync may not have the last write yet, and a
    # replica promoted without it answers None for good (seen under a full suite's load)
    with redis.Redis(host="127.0.0.1", port=victim_port) as master:
        assert master.wait(1, 10_000) == 1, "the victim's replica did not acknowledge its key"

    async def scenario() -> tuple[list[int], int]:
        # a long budget: a live master's answers are judged here, not their speed on a busy
        # machine (a dead one refuses connections at once)
        client = async_client_for(redis_cluster.url, timeout_s=2.0, max_connections=4)
        assert isinstance(client, ServingCluster)
        await read_slot_map(client, 5.0)
        epoch = client.nodes_manager._epoch  # redis-py's count of slot-map rebuilds
        assert await client.get(other_key) == b"o"
        redis_cluster.kill_node(victim_port)
        killed.append(victim_port)
        dead_at = time.monotonic()
        rebuilt_while_down = []
        # while no replica can have taken over yet: the dead master's reads fail (each a single
        # command, after which redis-py asks for a rebuild), the others' are answered
        while time.monotonic() < dead_at + NO_PROMOTION_BEFORE_S:
            with pytest.raises(REDIS_ERRORS):
                await client.get(victim_key)
            assert await client.get(other_key) == b"o"  # goes on with the map it has
            rebuilt_while_down.append(client.nodes_manager._epoch - epoch)
            await asyncio.sleep(0.05)
        # once the replica is promoted, a failure's background refresh finds it
        deadline = time.monotonic() + 30
        while True:
            try:
                last: object = await client.get(victim_key)
                if last == b"v":
                    break
            except REDIS_ERRORS as e:
                last = e
            if time.monotonic() >= deadline:  # say whether the cluster or the client is behind
                seen = client.nodes_manager.slots_cache[victim_span[0]][0].name
                raise AssertionError(
                    f"the promoted replica was never found: the cluster says {victim_span} is on "
                    f"{redis_cluster.slot_owners()}, the client's map says {seen} (killed "
                    f"{victim_port}; {client.slot_map.rebuilds} rebuilds); last answer {last!r}"
                )
            await asyncio.sleep(0.05)
        assert redis_cluster.port_of_slot(victim_span[0]) != victim_port
        rebuilds = client.nodes_manager._epoch - epoch
        await client.aclose()
        return rebuilt_while_down, rebuilds

    killed: list[int] = []
    try:
        rebuilt_while_down, rebuilds = asyncio.run(scenario())
    finally:
        for port in killed:
            redis_cluster.restart_node(port)
    assert len(rebuilt_while_down) >= 3 and set(rebuilt_while_down) == {0}
    # then rebuilt once, or a time or two more while the promotion spreads through the cluster's
    # gossip (a node that has not heard of it yet still names the dead master)
    assert 1 <= rebuilds <= 3


def _in(key: str, span: tuple[int, int]) -> bool:
    return span[0] <= key_slot(key.encode()) <= span[1]
