"""``recsys loadtest``: a build, a server, locust at a target rate, and a verdict.

Without ``--host`` the command brings up everything itself: a dataset (``--data``, or a
synthetic one), a build in ``--artifacts`` (reused when that directory already holds one, so
repeated runs measure the same build), a local Redis, and ``recsys serve`` as a subprocess with
``--workers`` processes on a free port. With ``--host`` it only sends traffic, drawn from
``--data``, to a running API; ``--host URL,URL`` spreads the clients over several replicas of it
(each client keeps to one, as behind a load balancer with sticky connections), and the server
figures from ``/metrics`` are summed over them.

Locust runs headless in its own process (``loadtest/locustfile.py``). Its clients wait an
exponential time between requests, so ``users = rate x mean wait`` clients offer about ``rate``
req/s without the bursts of ``constant_throughput`` (see ``locustfile.py``); statistics are
reset after the ramp. Each step writes locust's CSV and HTML report and a ``summary.json``; the
mean server time per stage comes from the difference of the server's ``/metrics`` before and
after the step.

Exit code: 0 when every step's p99 and failure count are within the thresholds, 1 otherwise,
and 2 (one line on stderr) when the run could not be made: bad arguments, or a server or locust
that did not start.
"""

import contextlib
import json
import logging
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from api.prometheus import MULTIPROC_ENV, REQUEST_METRIC, STAGE_METRIC, SWAPS_METRIC
from loadtest.dashboard import DashboardSession
from loadtest.plan import plan_from_dataset
from loadtest.results import (
    CpuUse,
    Idle,
    RunSummary,
    Thresholds,
    format_series,
    format_summary,
    summarise,
    verdict,
)
from loadtest.traffic import HOSTS_ENV, PLAN_ENV, TrafficPlan
from offline.data import synth
from recsys.artifacts import REDIS_DIR
from recsys.config import Settings
from recsys.data.load import load_dataset
from recsys.errors import RecsysError
from recsys.experiment import DEFAULT_BUILD_NAME, check_split
from recsys.net import free_port
from recsys.pipeline import run_build
from recsys.store.connect import SyncStore, open_redis
from recsys.store.keys import Keys
from recsys.store.user_store import current_build, unlink_matching

log = logging.getLogger(__name__)

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
PLAN_FILE = "loadtest-plan.json"  # kept with the build: the traffic of the data it was built on
SERVER_READY_TIMEOUT_S = 120.0
RECOMMEND_ROUTE = "/recommendations/{user_id}"
METRICS_ROUTE = "/metrics"
# A machine counts as idle for measuring at a 1-minute load average under 0.5 (before the first
# step), and under 0.3 busy cores over 3 s before each step (the load average still carries
# the previous step's own load for minutes).
IDLE_LOAD_AVERAGE = 0.5
IDLE_BUSY_CORES = 0.3
IDLE_SAMPLE_S = 3.0
IDLE_WAIT_MAX_S = 900.0


@dataclass(frozen=True)
class LoadtestOptions:
    """Everything a run needs; the defaults live with the CLI's arguments (loadtest/cli.py)."""

    rates: list[float]  # offered req/s, one step each (one: a pass/fail run)
    duration_s: float
    host: str | None  # a running API (comma-separated: replicas); None: start our own
    data: Path | None  # the dataset (required with host); None: synthetic
    artifacts: Path | None  # where to build (or reuse a build); None: a temp dir
    out: Path
    workers: int | None  # server processes; None: serve.workers
    mean_wait_s: float
    ramp_s: float
    synth_users: int
    synth_items: int
    seed: int
    thresholds: Thresholds
    wait_idle: bool  # wait for a quiet machine first (load average, then busy cores)
    repeat: int  # runs of the whole series; the table shows medians
    dashboard: bool = False  # keep the dashboard open in a browser during each step
    ab: dict[str, float] = field(default_factory=dict)
    """An A/B split for our own server (serve.ab); every arm gets a build of the same data."""

    def __post_init__(self) -> None:
        """Checked before anything is built or started."""
        check_split(self.ab)
        if self.ab and self.host is not None:
            raise ValueError("--ab splits our own server's traffic: it does not go with --host")
        if self.host is not None and self.data is None:
            raise ValueError("--host needs --data: the dataset the target was built on")
        if self.host is not None:
            for url in self.host.split(","):
                if not url.strip().startswith(("http://", "https://")):
                    raise ValueError(f"--host {url.strip()!r}: expected http(s)://HOST:PORT")
        if self.mean_wait_s <= 0:
            raise ValueError(f"--mean-wait must be positive, got {self.mean_wait_s:g}")
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"--workers must be at least 1, got {self.workers}")


def clients_for(rate: float, mean_wait_s: float) -> int:
    """Clients that offer ``rate`` req/s when each waits ``mean_wait_s`` between requests."""
    return max(1, math.ceil(rate * mean_wait_s))


def run_loadtest(opts: LoadtestOptions, settings: Settings) -> int:
    opts.out.mkdir(parents=True, exist_ok=True)
    with _target(opts, settings) as target:
        if opts.wait_idle:
            _wait_for_load_average(IDLE_LOAD_AVERAGE, IDLE_WAIT_MAX_S)
        summaries = [
            _step(opts, target, rate, run)
            for run in range(1, opts.repeat + 1)
            for rate in opts.rates
        ]
    if len(summaries) > 1:
        table = format_series(summaries)
        (opts.out / "series.md").write_text(table + "\n")
        print(table)
    code, failures = verdict(summaries, opts.thresholds)
    for line in failures:
        print(line)
    return code


# ---------------------------------------------------------------------------- the target


@dataclass(frozen=True)
class Target:
    base_urls: tuple[str, ...]  # the API, or several replicas of it
    plan_path: Path  # the traffic plan the locustfile reads
    server_pid: int | None  # our own server's process (its CPU time is measured), else None


@contextlib.contextmanager
def _target(opts: LoadtestOptions, settings: Settings) -> Iterator[Target]:
    """A given host, or a build served by our own server."""
    if opts.host is not None:
        assert opts.data is not None  # LoadtestOptions checks it
        plan_path = opts.out / PLAN_FILE
        plan_from_dataset(load_dataset(opts.data), seed=opts.seed).save(plan_path)
        hosts = tuple(url.strip().rstrip("/") for url in opts.host.split(","))
        yield Target(hosts, plan_path, None)
        return
    with (
        _artifacts_dir(opts.artifacts) as artifacts,
        _own_server(opts, settings, artifacts) as (url, pid),
    ):
        yield Target((url,), artifacts / PLAN_FILE, pid)


@contextlib.contextmanager
def _artifacts_dir(given: Path | None) -> Iterator[Path]:
    if given is not None:
        given.mkdir(parents=True, exist_ok=True)
        yield given
        return
    path = Path(tempfile.mkdtemp(prefix="recsys-loadtest-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def _own_server(
    opts: LoadtestOptions, settings: Settings, artifacts: Path
) -> Iterator[tuple[str, int]]:
    """A local Redis (or the one ``--redis-url`` named) with a build in it, served by
    ``recsys serve``.

    Events left by an earlier run are cleared, so every run starts from the build's state: on
    our own Redis, or under the load test's own key prefix on a given one (``cli.main`` never
    lets it use another prefix there).
    """
    with open_redis(
        settings.redis_url,
        artifacts / REDIS_DIR,
        client_cfg=settings.redis_client,
        server_cfg=settings.redis_server,
    ) as (client, redis_url):
        _ensure_build(opts, settings, artifacts, client)
        cleared = unlink_matching(client, Keys(settings.key_prefix).events_pattern)
        if cleared:
            log.info("cleared the events of %d users left by an earlier run", cleared)
        workers = opts.workers or settings.serve.workers
        with serve_build(
            artifacts, redis_url, settings.key_prefix, workers, opts.out / "server.log", opts.ab
        ) as served:
            yield served


def _ensure_build(
    opts: LoadtestOptions, settings: Settings, artifacts: Path, client: SyncStore
) -> None:
    """Reuse the build of each line (the champion, and the arms of ``--ab``) published in this
    Redis if there is one, else build it; every line from the same data."""
    keys = Keys(settings.key_prefix)
    for name in [DEFAULT_BUILD_NAME, *(a for a in sorted(opts.ab) if a != DEFAULT_BUILD_NAME)]:
        version = current_build(client, keys, name)
        if version and (artifacts / version).is_dir() and (artifacts / PLAN_FILE).exists():
            log.info("reusing build %s (%s) in %s (remove it to rebuild)", version, name, artifacts)
            continue
        data = opts.data or artifacts / "data"
        if not (data / "interactions.parquet").exists() and opts.data is None:
            _synthesise(opts, data)
        log.info("building %s into %s as %s", data, artifacts, name)
        dataset = load_dataset(data)
        run_build(dataset, artifacts, client, settings, name=name)
        plan_from_dataset(dataset, seed=opts.seed).save(artifacts / PLAN_FILE)


def _synthesise(opts: LoadtestOptions, out: Path) -> Path:
    log.info("synthetic data: %d users x %d items -> %s", opts.synth_users, opts.synth_items, out)
    synth(out, opts.synth_users, opts.synth_items, opts.seed)
    return out


@contextlib.contextmanager
def serve_build(
    artifacts: Path,
    redis_url: str,
    key_prefix: str,
    workers: int,
    log_path: Path,
    ab: dict[str, float] | None = None,
) -> Iterator[tuple[str, int]]:
    """``recsys serve`` in a subprocess on a free port: (URL, pid) once every worker is up.

    The Redis URL goes through the environment, never the command line, which any user on the
    machine can read (``ps``) and which would show its password."""
    port = free_port()
    cmd = [sys.executable, "-m", "cli.main", "serve", "--artifacts", str(artifacts)]
    cmd += ["--port", str(port), "--workers", str(workers)]
    env = {k: v for k, v in os.environ.items() if k != MULTIPROC_ENV}
    env |= {"RECSYS_REDIS_URL": redis_url, "RECSYS_KEY_PREFIX": key_prefix}
    lines = 1
    if ab:
        env["RECSYS_SERVE__AB"] = json.dumps(ab)
        lines += len(set(ab) - {DEFAULT_BUILD_NAME})
    log.info("starting recsys serve with %d worker(s) on port %d", workers, port)
    with log_path.open("ab") as server_log:
        server = subprocess.Popen(cmd, env=env, stdout=server_log, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base_url, server, workers * lines, log_path)
        yield base_url, server.pid
    finally:
        stop_server(server)


def _wait_ready(base_url: str, server: subprocess.Popen[bytes], loads: int, log_path: Path) -> None:
    """/readyz from one worker says nothing of the others: wait until every worker has loaded
    the build of every line it serves (``loads`` in all), which each counts as a swap in the
    (summed) metrics."""
    deadline = time.monotonic() + SERVER_READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RecsysError(f"recsys serve exited with {server.returncode}; see {log_path}")
        with contextlib.suppress(OSError):
            if _sample_total(scrape_metrics(base_url), f"{SWAPS_METRIC}_total") >= loads:
                return
        time.sleep(0.2)
    raise RecsysError(
        f"recsys serve was not ready within {SERVER_READY_TIMEOUT_S:g} s; see {log_path}"
    )


def stop_server(server: subprocess.Popen[bytes]) -> None:
    """Stop a ``recsys serve`` child the way a scheduler would (SIGTERM, so its workers drain and
    deregister), and kill it only when it does not exit within 30 s."""
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


# ---------------------------------------------------------------------------- one step


def _step(opts: LoadtestOptions, target: Target, rate: float, run: int) -> RunSummary:
    step_dir = opts.out / f"rate-{rate:g}"
    if opts.repeat > 1:
        step_dir = step_dir / f"run-{run}"
    step_dir.mkdir(parents=True, exist_ok=True)
    users = clients_for(rate, opts.mean_wait_s)
    log.info(
        "locust: ~%g req/s from %d clients for %gs (+%gs ramp)",
        rate,
        users,
        opts.duration_s,
        opts.ramp_s,
    )
    idle = Idle(
        load_average_1m=os.getloadavg()[0],
        busy_cores=_wait_for_quiet(IDLE_WAIT_MAX_S) if opts.wait_idle else _busy_cores(1.0),
    )
    before = _Snapshot.take(target)
    dashboard = None
    if opts.dashboard:
        plan = TrafficPlan.load(target.plan_path)
        with DashboardSession(target.base_urls[0], plan, seed=opts.seed) as session:
            _run_locust(opts, target, users, step_dir)
        dashboard = session.stats
    else:
        _run_locust(opts, target, users, step_dir)
    after = _Snapshot.take(target)
    summary = summarise(
        step_dir / "locust",
        step_dir / "outcomes.json",
        offered_rps=users / opts.mean_wait_s,
        stages_ms=_stage_means_ms(before.stages, after.stages),
        cpu=before.cpu_until(after),
        idle=idle,
        dashboard=dashboard,
    )
    (step_dir / "summary.json").write_text(json.dumps(summary.to_json(), indent=2) + "\n")
    print(format_summary(summary))
    return summary


@dataclass(frozen=True)
class _Snapshot:
    """What the server's /metrics and the kernel say at one moment, to diff over a step."""

    at_s: float
    stages: dict[str, tuple[float, float]]
    served: float  # requests answered by the server so far (any route but /metrics)
    server_cpu_s: float | None
    locust_cpu_s: float  # CPU of finished child processes: locust's, once it has exited
    machine_busy_s: float | None  # CPU seconds of every process on the machine (/proc/stat)
    own_cpu_s: float | None  # this process and its children: Redis, the server, locust

    @classmethod
    def take(cls, target: Target) -> "_Snapshot":
        stages, served = _stage_totals(target.base_urls)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return cls(
            at_s=time.monotonic(),
            stages=stages,
            served=served,
            server_cpu_s=_tree_cpu_s(target.server_pid) if target.server_pid else None,
            locust_cpu_s=children.ru_utime + children.ru_stime,
            machine_busy_s=_machine_busy_s(),
            own_cpu_s=_tree_cpu_s(os.getpid()),
        )

    def cpu_until(self, later: "_Snapshot") -> CpuUse:
        wall_s = later.at_s - self.at_s
        served = later.served - self.served
        server_s = (
            later.server_cpu_s - self.server_cpu_s
            if later.server_cpu_s is not None and self.server_cpu_s is not None
            else None
        )
        return CpuUse(
            server_ms_per_request=server_s * 1000 / served if server_s and served else None,
            server_cores=server_s / wall_s if server_s is not None else None,
            locust_cores=(later.locust_cpu_s - self.locust_cpu_s) / wall_s,
            machine_cores=_rate(self.machine_busy_s, later.machine_busy_s, wall_s),
            other_cores=_other_cores(self, later, wall_s),
        )


def _rate(before: float | None, after: float | None, wall_s: float) -> float | None:
    return (after - before) / wall_s if before is not None and after is not None else None


def _other_cores(before: "_Snapshot", after: "_Snapshot", wall_s: float) -> float | None:
    """Cores used by processes that are not this test's (not us, Redis, the server, locust):
    a step measured while something else ran shows it here. Locust starts after the first
    snapshot and has exited by the second, so its time comes from the finished children's."""
    machine = _rate(before.machine_busy_s, after.machine_busy_s, wall_s)
    if machine is None or before.own_cpu_s is None or after.own_cpu_s is None:
        return None
    locust = (after.locust_cpu_s - before.locust_cpu_s) / wall_s
    ours = (after.own_cpu_s - before.own_cpu_s) / wall_s + locust
    return max(0.0, machine - ours)


def _wait_for_load_average(limit: float, max_wait_s: float) -> None:
    deadline = time.monotonic() + max_wait_s
    while (load := os.getloadavg()[0]) >= limit:
        if time.monotonic() > deadline:
            log.warning("load average still %.2f after %g s: measuring anyway", load, max_wait_s)
            return
        log.info("waiting for an idle machine: load average %.2f >= %g", load, limit)
        time.sleep(15)


def _busy_cores(sample_s: float = IDLE_SAMPLE_S) -> float | None:
    """Cores busy on average over the next ``sample_s`` seconds (every process)."""
    start = _machine_busy_s()
    time.sleep(sample_s)
    end = _machine_busy_s()
    return (end - start) / sample_s if start is not None and end is not None else None


def _wait_for_quiet(max_wait_s: float) -> float | None:
    """Wait until nothing else is using the CPU; the busy cores measured last."""
    deadline = time.monotonic() + max_wait_s
    while True:
        busy = _busy_cores()
        if busy is None or busy < IDLE_BUSY_CORES or time.monotonic() > deadline:
            return busy
        log.info("waiting for a quiet machine: %.2f cores busy", busy)


def _machine_busy_s() -> float | None:
    """Busy CPU seconds of the whole machine since boot (all cores, idle and iowait excluded)."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except OSError:
        return None
    ticks = [int(x) for x in first[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def _tree_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a process and all its descendants, from /proc (Linux);
    None where there is no /proc. Covers every uvicorn worker, whatever their number."""
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}  # pid -> (parent pid, cpu seconds)
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue  # exited while we looked
        fields = raw[raw.rindex(")") + 2 :].split()  # after "pid (comm) "
        stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / ticks)
    tree, frontier = {pid}, [pid]
    while frontier:
        parent = frontier.pop()
        children = [p for p, (ppid, _) in stats.items() if ppid == parent and p not in tree]
        tree.update(children)
        frontier.extend(children)
    return sum(stats[p][1] for p in tree if p in stats)


def _run_locust(opts: LoadtestOptions, target: Target, users: int, step_dir: Path) -> None:
    spawn_rate = max(1.0, users / opts.ramp_s)
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless"]
    cmd += ["--host", target.base_urls[0], "-u", str(users), "-r", f"{spawn_rate:g}"]
    cmd += ["-t", f"{math.ceil(opts.ramp_s + opts.duration_s)}s", "--reset-stats"]
    cmd += ["--csv", str(step_dir / "locust"), "--html", str(step_dir / "report.html")]
    cmd += ["--only-summary", "--loglevel", "WARNING"]
    env = os.environ | {
        PLAN_ENV: str(target.plan_path.resolve()),
        "RECSYS_LOADTEST_MEAN_WAIT_S": str(opts.mean_wait_s),
        "RECSYS_LOADTEST_OUTCOMES": str((step_dir / "outcomes.json").resolve()),
        "RECSYS_LOADTEST_SEED": str(opts.seed),
        HOSTS_ENV: ",".join(target.base_urls),
    }
    with (step_dir / "locust.log").open("wb") as out:
        done = subprocess.run(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
    # locust exits 1 when a request failed: that is ours to judge; no CSV means it crashed
    if not (step_dir / "locust_stats.csv").exists():
        log_path = step_dir / "locust.log"
        raise RecsysError(
            f"locust exited with {done.returncode} and wrote no stats; see {log_path}"
        )


# ---------------------------------------------------------------------------- /metrics


Sample = tuple[str, dict[str, str], float]  # name, labels, value


def scrape_metrics(base_url: str) -> list[Sample]:
    """Every sample of the server's /metrics (Prometheus text format)."""
    with urllib.request.urlopen(f"{base_url}/metrics", timeout=5) as r:
        text = r.read().decode()
    return [
        (s.name, s.labels, s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


def _sample_total(samples: list[Sample], name: str) -> float:
    return sum(value for n, _, value in samples if n == name)


def _stage_totals(base_urls: tuple[str, ...]) -> tuple[dict[str, tuple[float, float]], float]:
    """(seconds, count) per stage of GET /recommendations, and ``request`` for the whole of it
    (arrival to response, every outcome), from the servers' histograms summed; and the number
    of requests served on any route but /metrics."""
    try:
        samples = [s for url in base_urls for s in scrape_metrics(url)]
    except (OSError, ValueError):
        return {}, 0.0  # a --host target without /metrics: no breakdown
    totals: dict[str, tuple[float, float]] = {}
    served = 0.0
    for name, labels, value in samples:
        route = labels.get("route")
        if name == f"{REQUEST_METRIC}_count" and route != METRICS_ROUTE:
            served += value
        if name.startswith(STAGE_METRIC):
            stage = labels.get("stage", "?")
        elif name.startswith(REQUEST_METRIC) and route == RECOMMEND_ROUTE:
            stage = "request"
        else:
            continue
        seconds, count = totals.get(stage, (0.0, 0.0))
        if name.endswith("_sum"):
            totals[stage] = (seconds + value, count)
        elif name.endswith("_count"):
            totals[stage] = (seconds, count + value)
    return totals, served


def _stage_means_ms(
    before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]
) -> dict[str, float]:
    means = {}
    for stage, (total, count) in after.items():
        total0, count0 = before.get(stage, (0.0, 0.0))
        if count > count0:
            means[stage] = (total - total0) / (count - count0) * 1000
    return means
