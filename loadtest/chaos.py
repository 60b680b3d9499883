"""``python -m loadtest.chaos``: mixed traffic while things break, then a verdict (issue 12).

One run, ``--duration`` long (``make chaos``: 10 minutes; the test suite: 2), on a synthetic
build served by ``recsys serve --workers 2`` over a Redis of its own (the embedded server's
durable configuration, on a TCP port so it can be restarted under the API). While traffic flows,
at fixed points of the run:

=====  ===============================================================================
 10%   a build is killed (SIGKILL) in the middle of writing its candidates
 25%   Redis is restarted (SHUTDOWN, start)
 40%   a build runs to the end and is flipped in (its start removes the killed build)
 55%   Redis is killed (kill -9) and started again
 70%   an API worker is killed (kill -9); uvicorn starts another
=====  ===============================================================================

The last quarter is quiet, to see where memory settles. Traffic: recommendations for known and
unknown users, events of a fixed set of *tracked* users (round robin, so each list's TTL is
refreshed well within its life) whose every acknowledged event is checked in Redis at the end,
and a flood of events from ids never seen again (each list lives ``events_ttl_s``: memory must
level off, not grow).

Verdict (exit code 0 or 1): no acknowledged event lost, no 5xx answer, Redis memory level over
the quiet part, nothing left of the killed build. Requests that got no answer at all (in flight
on the worker that was killed) are counted apart: they were never acknowledged.
"""

import argparse
import contextlib
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import redis

from offline.data import synth
from recsys.config import Settings
from recsys.data.load import load_dataset
from recsys.net import free_port
from recsys.pipeline import run_build
from recsys.store.builds import registered_builds, versions_with_keys
from recsys.store.events import WatchEvent
from recsys.store.keys import Keys
from recsys.store.server import LocalRedis
from recsys.store.user_store import current_build
from recsys.versions import STAGING_PREFIX

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
KEY_PREFIX = "recsys-chaos"
WORK_MARKER = ".recsys-chaos"
FSYNC_WINDOW_S = 1.0  # appendfsync everysec: what a crash may cost
QUIET_FROM = 0.75  # share of the run after which nothing is broken any more
SCHEDULE = (
    (0.10, "kill a build mid-write"),
    (0.25, "restart Redis"),
    (0.40, "flip a build in"),
    (0.55, "kill -9 Redis and start it"),
    (0.70, "kill -9 an API worker"),
)
# Small, quick builds: the run is about what breaks, not about quality.
BUILD_SETTINGS: dict[str, Any] = {
    "als": {"factors": 32, "iterations": 8},
    "ann": {"kind": "exact"},
    "candidates": {
        "per_user": 200,
        "quotas": {
            "als": 126,
            "sequential": 24,
            "item_factors": 20,
            "item_content": 10,
            "popular": 12,
            "fresh": 8,
        },
    },
    # one training request per user: builds run while the API serves, and must fit the schedule
    "ranker": {"num_trees": 60, "num_threads": 1, "labels_per_user": 1},
}
SHARES = {"known": 0.6, "unknown": 0.1, "tracked": 0.2, "flood": 0.1}
BUILD_NICENESS = 10


@dataclass(frozen=True)
class ChaosOptions:
    out: Path
    duration_s: float = 600.0
    rate: float = 50.0  # requests per second, all kinds
    users: int = 2000  # synthetic users (items: a tenth)
    workers: int = 2
    seed: int = 0

    @property
    def events_ttl_s(self) -> int:
        """Short enough that flood lists expire during the run (a fifth of it)."""
        return max(20, int(self.duration_s / 5))

    @property
    def tracked_users(self) -> int:
        """Round robin: each tracked user writes every ttl/4 seconds, so none expires."""
        per_s = self.rate * SHARES["tracked"]
        return max(10, int(per_s * self.events_ttl_s / 4))


@dataclass
class Sample:
    at_s: float
    redis_used_mb: float
    redis_keys: int
    redis_expiring_keys: int
    redis_evicted_keys: int
    api_rss_mb: float


@dataclass
class Outcome:
    kind: str
    at_s: float
    status: int | None  # None: no answer (connection refused or reset)
    latency_ms: float
    model_version: str | None = None


@dataclass
class ChaosReport:
    duration_s: float
    offered_rps: float
    requests: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    server_errors: int = 0
    unanswered: int = 0
    fallbacks: dict[str, int] = field(default_factory=dict)
    recommendation_p50_ms: float = 0.0
    recommendation_p99_ms: float = 0.0
    events_acknowledged: int = 0
    events_lost: int = 0
    events_lost_within_fsync_window: int = 0
    actions: list[dict[str, Any]] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    redis_used_mb_quiet: tuple[float, float] = (0.0, 0.0)  # mean, first and second half
    redis_expiring_keys_quiet: tuple[float, float] = (0.0, 0.0)
    api_rss_mb_quiet: tuple[float, float] = (0.0, 0.0)
    leftovers: list[str] = field(default_factory=list)  # of the killed build, at the end
    failures: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.failures


# ---------------------------------------------------------------------------- HTTP


def _request(
    base: str, path: str, body: dict[str, Any] | None = None
) -> tuple[int | None, dict[str, Any]]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"content-type": "application/json"} if data else {}
    req = urllib.request.Request(base + path, data=data, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        return e.code, {}
    except (OSError, ValueError):
        return None, {}


# ---------------------------------------------------------------------------- traffic


class Traffic:
    """Open-loop-ish traffic from a few threads, each with exponential waits."""

    def __init__(self, base: str, known: list[str], opts: ChaosOptions) -> None:
        self.base = base
        self.known = known
        self.opts = opts
        self.started = time.monotonic()
        self.outcomes: list[Outcome] = []
        self.acked: list[tuple[str, int, float]] = []  # (tracked user, item, when acknowledged)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._seq = 0
        self._tracked_seq = 0
        self._threads = [
            threading.Thread(target=self._loop, args=(i,), daemon=True) for i in range(8)
        ]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)

    def now_s(self) -> float:
        return time.monotonic() - self.started

    def _next(self) -> int:
        with self._lock:
            self._seq += 1
            return self._seq

    def _next_tracked(self) -> str:
        """Tracked users in turn, so each writes every tracked_users / rate seconds."""
        with self._lock:
            self._tracked_seq += 1
            return f"chaos-tracked-{self._tracked_seq % self.opts.tracked_users}"

    def _loop(self, index: int) -> None:
        rng = random.Random(self.opts.seed * 100 + index)
        per_thread = self.opts.rate / len(self._threads)
        kinds, weights = list(SHARES), list(SHARES.values())
        while not self._stop.wait(rng.expovariate(per_thread)):
            kind = rng.choices(kinds, weights)[0]
            seq = self._next()
            started = time.monotonic()
            if kind == "known":
                status, body = _request(self.base, f"/recommendations/{rng.choice(self.known)}")
            elif kind == "unknown":
                status, body = _request(self.base, f"/recommendations/chaos-new-{seq}")
            elif kind == "tracked":
                user = self._next_tracked()
                item = 10_000_000 + seq  # unique: each event can be found again
                status, body = _request(self.base, "/events", {"user_id": user, "item_id": item})
                if status == 202:
                    with self._lock:
                        self.acked.append((user, item, time.monotonic()))
            else:
                flood = {"user_id": f"chaos-flood-{seq}", "item_id": 1}
                status, body = _request(self.base, "/events", flood)
            outcome = Outcome(
                kind=kind,
                at_s=started - self.started,
                status=status,
                latency_ms=(time.monotonic() - started) * 1000,
                model_version=body.get("model_version") if status == 200 else None,
            )
            if status == 200 and body.get("fallback"):
                outcome.kind = f"{kind}:{body['fallback']}"
            with self._lock:
                self.outcomes.append(outcome)


# ---------------------------------------------------------------------------- processes


def _settings_env(settings: Settings) -> dict[str, str]:
    env = {"RECSYS_REDIS_URL": settings.redis_url or "", "RECSYS_KEY_PREFIX": settings.key_prefix}
    for section in BUILD_SETTINGS:
        value = getattr(settings, section).model_dump(mode="json")
        env[f"RECSYS_{section.upper()}"] = json.dumps(value)
    return env


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            raw = stat.read_text()
            if int(raw[raw.rindex(")") + 2 :].split()[1]) == pid:
                kids.append(int(stat.parent.name))
    return kids


def _worker_pids(server_pid: int) -> list[int]:
    """uvicorn's worker processes (spawned by multiprocessing) under ``recsys serve``."""
    workers = []
    for pid in _children(server_pid):
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"spawn_main" in cmdline and b"resource_tracker" not in cmdline:
                workers.append(pid)
    return workers


def _rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024


@contextlib.contextmanager
def _serve(art: Path, settings: Settings, opts: ChaosOptions, port: int) -> Iterator[int]:
    env = {
        **os.environ,
        **_settings_env(settings),
        "RECSYS_SERVE__WORKERS": str(opts.workers),
        "RECSYS_SERVE__PORT": str(port),
        "RECSYS_SERVE__EVENTS_TTL_S": str(opts.events_ttl_s),
        "RECSYS_SERVE__BUILD_POLL_S": "1",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with (opts.out / "server.log").open("ab") as server_log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "serve", "--artifacts", str(art)],
            cwd=ROOT,
            env=env,
            stdout=server_log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield proc.pid
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_ready(base: str, workers_of: int, workers: int, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if len(_worker_pids(workers_of)) >= workers and _request(base, "/readyz")[0] == 200:
            return
        time.sleep(0.2)
    raise RuntimeError(f"recsys serve was not ready within {timeout_s:g} s")


# ---------------------------------------------------------------------------- the run


class ChaosRun:
    def __init__(self, opts: ChaosOptions) -> None:
        self.opts = opts
        self.work = opts.out / "work"
        self.art = self.work / "artifacts"
        self.data = self.work / "data"
        self.port = free_port()
        self.server = LocalRedis(self.work / "redis", port=free_port())
        self.report = ChaosReport(duration_s=opts.duration_s, offered_rps=opts.rate)
        self.killed_build: str | None = None
        self.flipped_to: str | None = None

    # -- set-up

    def prepare(self) -> tuple[Settings, list[str]]:
        synth(self.data, self.opts.users, max(50, self.opts.users // 10), self.opts.seed)
        url = self.server.start()
        settings = Settings(redis_url=url, key_prefix=KEY_PREFIX, **BUILD_SETTINGS)
        with redis.Redis.from_url(url) as client:
            result = run_build(load_dataset(self.data), self.art, client, settings)
        known = result.users.keys()  # ids as the API speaks them
        return settings, known

    # -- actions

    def kill_a_build_mid_write(self, settings: Settings) -> dict[str, Any]:
        keys = Keys(settings.key_prefix)
        with redis.Redis.from_url(self.server.url) as client:
            before = {v for v, _ in registered_builds(client, keys)}
            build = self._start_build(settings)
            deadline = time.monotonic() + 300
            version = None
            while version is None and time.monotonic() < deadline and build.poll() is None:
                version = next(iter(versions_with_keys(client, keys, 1000) - before), None)
                time.sleep(0.005)
            if version is None:
                build.kill()
                build.wait()
                raise RuntimeError("the build to kill never wrote a key")
            # hold its next write for the instant it takes to kill it: caught mid-write
            client.execute_command("CLIENT", "PAUSE", 2000, "WRITE")
            build.kill()
            client.execute_command("CLIENT", "UNPAUSE")
            build.wait()
            written = len(list(client.scan_iter(match=keys.build_pattern(version), count=1000)))
        self.killed_build = version
        return {"version": version, "keys_left": written}

    def restart_redis(self, *, crash: bool) -> dict[str, Any]:
        started = time.monotonic()
        if crash:
            assert self.server.pid is not None
            os.kill(self.server.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                self.server.stop()  # reports the crash, releases the lock
        else:
            self.server.stop()
        self.server.start(timeout_s=60)
        return {"down_s": round(time.monotonic() - started, 3)}

    def flip_a_build(self, settings: Settings, traffic: Traffic) -> dict[str, Any]:
        started = time.monotonic()
        build = self._start_build(settings)
        if build.wait(timeout=900) != 0:
            raise RuntimeError(f"the build to flip in failed; see {self.opts.out / 'builds.log'}")
        with redis.Redis.from_url(self.server.url) as client:
            version = current_build(client, Keys(settings.key_prefix))
        self.flipped_to = version
        built_s = time.monotonic() - started
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if any(o.model_version == version for o in traffic.outcomes[-50:]):
                break
            time.sleep(0.1)
        return {
            "version": version,
            "build_s": round(built_s, 1),
            "served_after_s": round(time.monotonic() - started - built_s, 1),
        }

    def kill_a_worker(self, server_pid: int) -> dict[str, Any]:
        before = _worker_pids(server_pid)
        victim = before[0]
        os.kill(victim, signal.SIGKILL)
        started = time.monotonic()
        while time.monotonic() - started < 120:
            fresh = [p for p in _worker_pids(server_pid) if p not in before]
            if fresh:
                after_s = round(time.monotonic() - started, 2)
                return {"killed": victim, "replaced_by": fresh[0], "after_s": after_s}
            time.sleep(0.1)
        raise RuntimeError("uvicorn did not replace the killed worker")

    def _start_build(self, settings: Settings) -> subprocess.Popen[bytes]:
        """`recsys build` in a subprocess, at a lower CPU priority: on 2 cores the API (what is
        being tested) comes first, as it would on a machine that serves while it builds."""
        cmd = [sys.executable, "-m", "cli.main", "build", str(self.data), "--artifacts"]
        with (self.opts.out / "builds.log").open("ab") as build_log:
            build = subprocess.Popen(
                [*cmd, str(self.art)],
                cwd=ROOT,
                env={**os.environ, **_settings_env(settings)},
                stdout=build_log,
                stderr=subprocess.STDOUT,
            )
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, build.pid, BUILD_NICENESS)
        return build

    # -- measurement

    def sample(self, traffic: Traffic, server_pid: int) -> None:
        with redis.Redis.from_url(self.server.url, socket_timeout=5) as client:
            try:
                memory = client.info("memory")
                space = client.info("keyspace").get("db0", {})
                stats = client.info("stats")
            except redis.RedisError:
                return  # restarting
        self.report.samples.append(
            Sample(
                at_s=round(traffic.now_s(), 1),
                redis_used_mb=round(int(memory["used_memory"]) / 2**20, 2),
                redis_keys=int(space.get("keys", 0)),
                redis_expiring_keys=int(space.get("expires", 0)),
                redis_evicted_keys=int(stats.get("evicted_keys", 0)),
                api_rss_mb=round(_rss_mb([server_pid, *_worker_pids(server_pid)]), 1),
            )
        )

    def _fresh_work_dir(self) -> None:
        """Every run starts from nothing: an earlier run's work folder (it has our marker) is
        replaced; any other non-empty folder there is refused."""
        marker = self.work / WORK_MARKER
        if self.work.exists() and any(self.work.iterdir()):
            if not marker.is_file():
                raise RuntimeError(f"{self.work} exists and was not made by a chaos run")
            shutil.rmtree(self.work)
        self.work.mkdir(parents=True, exist_ok=True)
        marker.write_text("work folder of `python -m loadtest.chaos`, replaced on each run\n")

    def run(self) -> ChaosReport:
        self.opts.out.mkdir(parents=True, exist_ok=True)
        self._fresh_work_dir()
        settings, known = self.prepare()
        base = f"http://127.0.0.1:{self.port}"
        try:
            with _serve(self.art, settings, self.opts, self.port) as server_pid:
                _wait_ready(base, server_pid, self.opts.workers)
                traffic = Traffic(base, known, self.opts)
                traffic.start()
                try:
                    self._act(settings, traffic, server_pid)
                finally:
                    traffic.stop()
                crashes = [a["at_s"] for a in self.report.actions if "kill -9 Redis" in a["name"]]
                self._verify(settings, traffic, crashes)
        finally:
            with contextlib.suppress(Exception):
                self.server.stop()
        (self.opts.out / "chaos.json").write_text(json.dumps(asdict(self.report), indent=2))
        return self.report

    def _act(self, settings: Settings, traffic: Traffic, server_pid: int) -> None:
        every_s = max(1.0, self.opts.duration_s / 120)
        pending = list(SCHEDULE)
        next_sample = 0.0
        while (now := traffic.now_s()) < self.opts.duration_s:
            if now >= next_sample:
                self.sample(traffic, server_pid)
                next_sample = now + every_s
            if pending and now >= pending[0][0] * self.opts.duration_s:
                _, name = pending.pop(0)
                log.info("chaos at %.0f s: %s", now, name)
                detail = self._do(name, settings, traffic, server_pid)
                took_s = round(traffic.now_s() - now, 2)
                self.report.actions.append(
                    {"name": name, "at_s": round(now, 1), "took_s": took_s, **detail}
                )
                continue
            time.sleep(0.05)

    def _do(
        self, name: str, settings: Settings, traffic: Traffic, server_pid: int
    ) -> dict[str, Any]:
        if name.startswith("kill a build"):
            return self.kill_a_build_mid_write(settings)
        if name == "restart Redis":
            return self.restart_redis(crash=False)
        if name.startswith("flip"):
            return self.flip_a_build(settings, traffic)
        if name.startswith("kill -9 Redis"):
            return self.restart_redis(crash=True)
        return self.kill_a_worker(server_pid)

    # -- verdict

    def _verify(self, settings: Settings, traffic: Traffic, crashes_at_s: list[float]) -> None:
        r = self.report
        outcomes = traffic.outcomes
        r.requests = len(outcomes)
        for o in outcomes:
            key = str(o.status) if o.status is not None else "no answer"
            r.by_status[key] = r.by_status.get(key, 0) + 1
            if ":" in o.kind:
                reason = o.kind.split(":", 1)[1]
                r.fallbacks[reason] = r.fallbacks.get(reason, 0) + 1
        r.server_errors = sum(1 for o in outcomes if o.status is not None and o.status >= 500)
        r.unanswered = sum(1 for o in outcomes if o.status is None)
        latencies = sorted(
            o.latency_ms for o in outcomes if o.status == 200 and not o.kind.startswith("tracked")
        )
        if latencies:
            r.recommendation_p50_ms = round(latencies[len(latencies) // 2], 1)
            r.recommendation_p99_ms = round(latencies[int(len(latencies) * 0.99)], 1)
        for action in r.actions:  # how the requests around each action were answered
            since, until = action["at_s"], action["at_s"] + action.pop("took_s") + 1.0
            around: dict[str, int] = {}
            for o in outcomes:
                if since <= o.at_s < until:
                    key = f"{o.kind}:{o.status}"
                    around[key] = around.get(key, 0) + 1
            action["answers_meanwhile"] = around
        self._verify_events(settings, traffic, crashes_at_s)
        self._verify_memory()
        self._verify_leftovers(settings)
        if r.server_errors:
            r.failures.append(f"{r.server_errors} answers were 5xx")
        if r.events_lost > r.events_lost_within_fsync_window:
            r.failures.append(
                f"{r.events_lost - r.events_lost_within_fsync_window} acknowledged events lost"
            )

    def _verify_events(
        self, settings: Settings, traffic: Traffic, crashes_at_s: list[float]
    ) -> None:
        keys = Keys(settings.key_prefix)
        stored: dict[str, set[str | int]] = {}
        with redis.Redis.from_url(self.server.url) as client:
            for user in {u for u, _, _ in traffic.acked}:
                raw = client.lrange(keys.events(user), 0, -1)
                stored[user] = {WatchEvent.from_bytes(e).item_id for e in raw}
        crashes = [traffic.started + c for c in crashes_at_s]
        self.report.events_acknowledged = len(traffic.acked)
        for user, item, acked_at in traffic.acked:
            if item in stored[user]:
                continue
            self.report.events_lost += 1
            if any(0 <= crash - acked_at < FSYNC_WINDOW_S for crash in crashes):
                self.report.events_lost_within_fsync_window += 1

    def _verify_memory(self) -> None:
        """Means over the two halves of the quiet part: level, not growing."""
        r = self.report
        start = QUIET_FROM * self.opts.duration_s
        middle = (start + self.opts.duration_s) / 2
        first = [s for s in r.samples if start <= s.at_s < middle]
        second = [s for s in r.samples if s.at_s >= middle]
        if not first or not second:
            r.failures.append("too few memory samples in the quiet part")
            return

        def means(attr: str) -> tuple[float, float]:
            a = sum(getattr(s, attr) for s in first) / len(first)
            b = sum(getattr(s, attr) for s in second) / len(second)
            return round(a, 2), round(b, 2)

        r.redis_used_mb_quiet = means("redis_used_mb")
        r.redis_expiring_keys_quiet = means("redis_expiring_keys")
        r.api_rss_mb_quiet = means("api_rss_mb")
        a, b = r.redis_used_mb_quiet
        if b > a * 1.10:
            r.failures.append(f"Redis memory still growing in the quiet part: {a} -> {b} MB")
        a, b = r.redis_expiring_keys_quiet
        if b > a * 1.15 + 10:
            r.failures.append(f"event lists still growing in the quiet part: {a:.0f} -> {b:.0f}")

    def _verify_leftovers(self, settings: Settings) -> None:
        keys = Keys(settings.key_prefix)
        left = []
        with redis.Redis.from_url(self.server.url) as client:
            published = {v for v, _ in registered_builds(client, keys)}
            stray = versions_with_keys(client, keys) - published
        left += [f"redis keys of {v}" for v in sorted(stray)]
        left += [p.name for p in self.art.iterdir() if p.name.startswith(STAGING_PREFIX)]
        if self.killed_build and (self.art / self.killed_build).exists():
            left.append(self.killed_build)
        self.report.leftovers = left
        if left:
            self.report.failures.append(f"left behind: {', '.join(left)}")
        if self.flipped_to is None or self.flipped_to not in published:
            self.report.failures.append("the flipped build is not published")


def format_report(report: ChaosReport) -> str:
    lines = [
        f"duration {report.duration_s:g} s at {report.offered_rps:g} req/s offered: "
        f"{report.requests} requests, statuses {report.by_status}",
        f"5xx: {report.server_errors}; no answer (in flight on the killed worker): "
        f"{report.unanswered}; fallbacks {report.fallbacks}",
        f"recommendations p50 {report.recommendation_p50_ms} ms, p99 "
        f"{report.recommendation_p99_ms} ms",
        f"events acknowledged {report.events_acknowledged}, lost {report.events_lost} "
        f"({report.events_lost_within_fsync_window} within {FSYNC_WINDOW_S:g} s of a crash)",
        "quiet part, first half -> second half: Redis used "
        f"{report.redis_used_mb_quiet[0]} -> {report.redis_used_mb_quiet[1]} MB, "
        f"expiring keys {report.redis_expiring_keys_quiet[0]:.0f} -> "
        f"{report.redis_expiring_keys_quiet[1]:.0f}, API RSS "
        f"{report.api_rss_mb_quiet[0]} -> {report.api_rss_mb_quiet[1]} MB",
    ]
    lines += [f"at {a['at_s']} s: {a['name']}: {a}" for a in report.actions]
    lines.append("PASS" if report.passed else "FAIL: " + "; ".join(report.failures))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.chaos", description=__doc__.split("\n")[0])
    p.add_argument("--duration", type=float, default=600.0, help="seconds (default 600)")
    p.add_argument("--rate", type=float, default=50.0, help="req/s offered (default 50)")
    p.add_argument("--users", type=int, default=2000, help="synthetic users (default 2000)")
    p.add_argument("--out", type=Path, help="reports and work files (default: a temp dir)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    out = args.out or Path(tempfile.mkdtemp(prefix="recsys-chaos-"))
    opts = ChaosOptions(out=out, duration_s=args.duration, rate=args.rate, users=args.users)
    report = ChaosRun(opts).run()
    print(format_report(report))
    print(f"report: {out / 'chaos.json'}")
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
