"""The load test against several `recsys serve` replicas on a Redis Cluster, interleaved with the
same load on the same replicas over one Redis server, for the ratio.

    python bench/cluster_loadtest.py [--replicas 2] [--rounds 3] [--no-single] \\
        [--out bench-output/loadtest/cluster] -- --users-rate 150 --duration 30s --max-p99-ms 30

Brings up, on this machine:
- the 20k-user synthetic log that `make loadtest` uses (20,000 users x 2,000 items, seed 0);
- a Redis Cluster of 3 masters + 3 replicas (the project's redis-server, the local launcher's
  settings) and one build of the log on it, served by ``--replicas`` `recsys serve` processes
  of one worker each (target ``cluster``);
- unless ``--no-single``: one local redis-server as `recsys build` starts it by default (unix
  socket, AOF everysec) and a build of the same log on it, served by as many replicas of one
  worker (target ``single``): the same servers and traffic, only the store differs.

Then ``--rounds`` rounds; each runs ``recsys loadtest --host URL,URL --data DATA`` (the
arguments after ``--``; clients dealt round-robin over the replicas) once per target, the order
alternating from round to round, so both targets see the machine in the same state. Per run it
records the 1-minute load average before it, and the CPU the target's servers and Redis
processes used per request and the cores used by processes outside this benchmark (whatever
else runs on a shared machine). Writes ``OUT/TARGET/round-N/`` (recsys loadtest's reports),
``OUT/cluster_loadtest.json`` and ``OUT/cluster_loadtest.md``. Exit code: 0 when every run on
the cluster met the thresholds given after ``--``, else 1. Everything is stopped at the end.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from provenance import git_commit

from loadtest.results import RunSummary, read_series
from loadtest.run import _busy_cores, _machine_busy_s, _tree_cpu_s, stop_server
from recsys.data.dataset import write_dataset
from recsys.data.synth import generate_synthetic
from recsys.store.local_cluster import LocalRedisCluster, free_cluster_port
from recsys.store.server import LocalRedis

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Target:
    name: str
    bases: list[str]  # the replicas' URLs
    server_pids: list[int]  # recsys serve processes (their workers are their children)
    redis_pids: list[int]


@dataclass(frozen=True)
class RunRow:
    target: str
    round: int
    load_average_1m: float
    requests: int
    failures: int
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    degraded_share: float  # ranker-timeout or redis-unavailable answers
    server_cpu_ms_per_request: float  # the replicas, all their workers
    redis_cpu_ms_per_request: float  # every Redis process of the target (masters and replicas)
    other_cores: float  # processes outside this benchmark, over the run
    passed: bool


def ready(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/readyz", timeout=2) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def cpu_of(pids: list[int]) -> float:
    return sum(_tree_cpu_s(p) or 0.0 for p in pids)


def own_cpu_s() -> float:
    """CPU seconds of this benchmark: this process, its live descendants (Redis, the replicas)
    and the children it has waited for (recsys loadtest, with locust's time inside it)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return cpu_of([os.getpid()]) + ru.ru_utime + ru.ru_stime


@contextmanager
def replicas(
    name: str,
    n: int,
    artifacts: Path,
    redis_url: str,
    work: Path,
    env: dict[str, str],
) -> Iterator[tuple[list[str], list[int]]]:
    """``n`` `recsys serve` processes of one worker on ``redis_url``, each on its own port."""
    servers: list[subprocess.Popen[bytes]] = []
    bases = []
    try:
        for i in range(n):
            port = free_cluster_port()
            cmd = [sys.executable, "-m", "cli.main", "serve", "--artifacts", str(artifacts)]
            cmd += ["--port", str(port), "--workers", "1"]
            log = (work / f"serve-{name}-{i}.log").open("ab")
            # the URL through the environment, as recsys loadtest does (ps shows a command line)
            servers.append(
                subprocess.Popen(
                    cmd,
                    cwd=ROOT,
                    env=env | {"RECSYS_REDIS_URL": redis_url},
                    stdout=log,
                    stderr=log,
                )
            )
            bases.append(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 120
        while not all(ready(b) for b in bases):
            if time.monotonic() > deadline or any(s.poll() is not None for s in servers):
                raise SystemExit(f"a {name} replica did not become ready; see {work}/serve-*.log")
            time.sleep(0.5)
        yield bases, [s.pid for s in servers]
    finally:
        for server in servers:
            stop_server(server)


def build(data: Path, artifacts: Path, redis_url: str, env: dict[str, str]) -> None:
    cmd = [sys.executable, "-m", "cli.main", "build", str(data), "--artifacts", str(artifacts)]
    subprocess.run([*cmd, "--redis-url", redis_url], cwd=ROOT, env=env, check=True)


def wait_quiet(max_busy: float, max_wait_s: float) -> None:
    """Wait until the whole machine uses fewer than ``max_busy`` cores (our idle servers and
    Redis nodes included), at most ``max_wait_s``: on a shared machine, other work's CPU
    shows up as our latency."""
    deadline = time.monotonic() + max_wait_s
    while (busy := _busy_cores(3.0)) is not None and busy >= max_busy:
        if time.monotonic() > deadline:
            print(f"still {busy:.2f} cores busy after {max_wait_s:g} s: measuring anyway")
            return
        time.sleep(5)


def one_run(
    target: Target, rnd: int, data: Path, out: Path, passthrough: list[str], env: dict[str, str]
) -> RunRow:
    run_out = out / target.name / f"round-{rnd}"
    load = os.getloadavg()[0]
    ours_before, machine_before = own_cpu_s(), _machine_busy_s() or 0.0
    server_before, redis_before = cpu_of(target.server_pids), cpu_of(target.redis_pids)
    t = time.monotonic()
    cmd = [sys.executable, "-m", "cli.main", "loadtest", "--host", ",".join(target.bases)]
    cmd += ["--data", str(data), "--out", str(run_out), *passthrough]
    code = subprocess.run(cmd, cwd=ROOT, env=env, check=False).returncode
    wall = time.monotonic() - t
    machine = (_machine_busy_s() or 0.0) - machine_before
    other = machine - (own_cpu_s() - ours_before)
    summary: RunSummary = read_series(run_out)[-1]
    served = summary.total.requests or 1
    return RunRow(
        target=target.name,
        round=rnd,
        load_average_1m=round(load, 2),
        requests=summary.total.requests,
        failures=summary.total.failures,
        rps=round(summary.total.rps, 1),
        p50_ms=summary.total.p50_ms,
        p95_ms=summary.total.p95_ms,
        p99_ms=summary.total.p99_ms,
        max_ms=summary.total.max_ms,
        degraded_share=round(summary.degraded_share, 4),
        # CPU over the whole loadtest command (ramp included) per measured request
        server_cpu_ms_per_request=round(
            (cpu_of(target.server_pids) - server_before) * 1000 / served, 3
        ),
        redis_cpu_ms_per_request=round(
            (cpu_of(target.redis_pids) - redis_before) * 1000 / served, 3
        ),
        other_cores=round(max(0.0, other / wall), 2),
        passed=code == 0,
    )


def median(rows: list[RunRow], field: str) -> float:
    return float(statistics.median(getattr(r, field) for r in rows))


def render(rows: list[RunRow], passthrough: list[str], n_replicas: int) -> str:
    cols = (
        "target | round | load avg 1m | requests | failures | req/s | p50 ms | p95 ms | p99 ms "
        "| max ms | degraded | server CPU ms/req | Redis CPU ms/req | other cores | passed"
    )
    out = [
        f"`python bench/cluster_loadtest.py --replicas {n_replicas} -- {' '.join(passthrough)}`",
        "",
        f"| {cols} |",
        "|---|" + "---:|" * 14,
    ]
    for r in rows:
        out.append(
            f"| {r.target} | {r.round} | {r.load_average_1m:.2f} | {r.requests:,} | {r.failures} "
            f"| {r.rps:.1f} | {r.p50_ms:g} | {r.p95_ms:g} | {r.p99_ms:g} | {r.max_ms:.0f} "
            f"| {r.degraded_share:.2%} | {r.server_cpu_ms_per_request:.2f} "
            f"| {r.redis_cpu_ms_per_request:.2f} | {r.other_cores:.2f} | {r.passed} |"
        )
    targets = sorted({r.target for r in rows})
    out += [
        "",
        "| target | runs | median p50 ms | median p99 ms | failures (all runs) "
        "| median server CPU ms/req | median Redis CPU ms/req |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for t in targets:
        rs = [r for r in rows if r.target == t]
        out.append(
            f"| {t} | {len(rs)} | {median(rs, 'p50_ms'):g} | {median(rs, 'p99_ms'):g} "
            f"| {sum(r.failures for r in rs)} | {median(rs, 'server_cpu_ms_per_request'):.2f} "
            f"| {median(rs, 'redis_cpu_ms_per_request'):.2f} |"
        )
    s = [r for r in rows if r.target == "single"]
    for t in (t for t in targets if s and t != "single"):
        c = [r for r in rows if r.target == t]
        out += [
            "",
            f"{t} / single, medians: p50 {median(c, 'p50_ms') / median(s, 'p50_ms'):.2f}x, "
            f"p99 {median(c, 'p99_ms') / median(s, 'p99_ms'):.2f}x, Redis CPU per request "
            f"{median(c, 'redis_cpu_ms_per_request') / median(s, 'redis_cpu_ms_per_request'):.2f}x",
        ]
    return "\n".join(out) + "\n"


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--replicas", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--no-single", action="store_true", help="the cluster only")
    p.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="S",
        help="before each run, wait up to S seconds for the machine to use < 0.5 cores",
    )
    p.add_argument("--users", type=int, default=20_000, help="synthetic users (seed 0)")
    p.add_argument("--items", type=int, default=2_000)
    p.add_argument("--work", type=Path, default=Path("bench-output/loadtest/cluster-work"))
    p.add_argument("--out", type=Path, default=Path("bench-output/loadtest/cluster"))
    p.add_argument("loadtest_args", nargs=argparse.REMAINDER)
    args = p.parse_args()
    passthrough = [a for a in args.loadtest_args if a != "--"]
    if "--repeat" in passthrough:
        raise SystemExit("--repeat: use --rounds, which interleaves the targets")
    # absolute: redis-server runs in its node's folder and would read a relative --dir from there
    args.work = args.work.resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    data = args.work / f"data-{args.users // 1000}k"
    if not (data / "interactions.parquet").exists():
        write_dataset(generate_synthetic(n_users=args.users, n_items=args.items, seed=0), data)
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    targets: list[Target] = []
    with ExitStack() as stack:
        cluster = stack.enter_context(
            LocalRedisCluster(args.work / "cluster-nodes", masters=3, replicas=1)
        )
        build(data, args.work / "artifacts-cluster", cluster.url, env)
        bases, pids = stack.enter_context(
            replicas(
                "cluster",
                args.replicas,
                args.work / "artifacts-cluster",
                cluster.url,
                args.work,
                env,
            )
        )
        targets.append(Target("cluster", bases, pids, cluster.pids))
        print(f"cluster: {args.replicas} replicas on {cluster.url}: {', '.join(bases)}")
        if not args.no_single:
            single = stack.enter_context(LocalRedis(args.work / "single-redis"))
            build(data, args.work / "artifacts-single", single.url, env)
            bases, pids = stack.enter_context(
                replicas(
                    "single",
                    args.replicas,
                    args.work / "artifacts-single",
                    single.url,
                    args.work,
                    env,
                )
            )
            assert single.pid is not None
            targets.append(Target("single", bases, pids, [single.pid]))
            print(f"single: {args.replicas} replicas on one redis-server: {', '.join(bases)}")
        rows = []
        for rnd in range(1, args.rounds + 1):
            k = (rnd - 1) % len(targets)  # rotated: each target goes first in turn
            order = targets[k:] + targets[:k]
            for target in order:
                if args.wait_quiet:
                    wait_quiet(0.5, args.wait_quiet)
                row = one_run(target, rnd, data, args.out, passthrough, env)
                print(json.dumps(asdict(row)), flush=True)
                rows.append(row)
    md = render(rows, passthrough, args.replicas)
    print(md)
    args.out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "commit": git_commit(),
        "replicas": args.replicas,
        "users": args.users,
        "items": args.items,
        "loadtest_args": passthrough,
        "bench_args": [
            *([f"--wait-quiet {args.wait_quiet:g}"] if args.wait_quiet else []),
        ],
        "runs": [asdict(r) for r in rows],
    }
    (args.out / "cluster_loadtest.json").write_text(json.dumps(result, indent=2))
    (args.out / "cluster_loadtest.md").write_text(md)
    return 0 if all(r.passed for r in rows if r.target == "cluster") else 1


if __name__ == "__main__":
    sys.exit(main())
