"""The load test against several `recsys serve` replicas on a Redis Cluster.

    python bench/cluster_loadtest.py [--replicas 2] [--out bench-output/loadtest/cluster] \\
        -- --users-rate 150 --duration 60s --repeat 3 --wait-idle

Brings up, on this machine: a Redis Cluster of 3 masters + 3 replicas (the project's
redis-server, default cluster-node-timeout of the local launcher), the 20k-user synthetic log
that `make loadtest` uses (20,000 users x 2,000 items, seed 0), a build of it on the cluster,
and ``--replicas`` `recsys serve` processes of one worker each, each on its own port. Then runs
``recsys loadtest --host URL,URL --data DATA`` with the arguments after ``--``: its clients are
dealt round-robin over the replicas (each keeps to one, as behind a load balancer with sticky
connections), and its exit code is this script's. Everything is stopped at the end.
"""

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from recsys.data.dataset import write_dataset
from recsys.data.synth import generate_synthetic
from recsys.store.local_cluster import LocalRedisCluster, free_cluster_port

ROOT = Path(__file__).resolve().parents[1]


def ready(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/readyz", timeout=2) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--replicas", type=int, default=2)
    p.add_argument("--work", type=Path, default=Path("bench-output/loadtest/cluster-work"))
    p.add_argument("--out", type=Path, default=Path("bench-output/loadtest/cluster"))
    p.add_argument("loadtest_args", nargs=argparse.REMAINDER)
    args = p.parse_args()
    passthrough = [a for a in args.loadtest_args if a != "--"]
    data = args.work / "data-20k"
    if not (data / "interactions.parquet").exists():
        write_dataset(generate_synthetic(n_users=20_000, n_items=2_000, seed=0), data)
    artifacts = args.work / "artifacts"
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    servers: list[subprocess.Popen[bytes]] = []
    with LocalRedisCluster(args.work / "cluster-nodes", masters=3, replicas=1) as cluster:
        try:
            build = [sys.executable, "-m", "cli.main", "build", str(data)]
            build += ["--artifacts", str(artifacts), "--redis-url", cluster.url]
            subprocess.run(build, cwd=ROOT, env=env, check=True)
            bases = []
            for i in range(args.replicas):
                port = free_cluster_port()
                cmd = [sys.executable, "-m", "cli.main", "serve", "--artifacts", str(artifacts)]
                cmd += ["--port", str(port), "--workers", "1", "--redis-url", cluster.url]
                log = (args.work / f"serve-{i}.log").open("ab")
                servers.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=log))
                bases.append(f"http://127.0.0.1:{port}")
            deadline = time.monotonic() + 120
            while not all(ready(b) for b in bases):
                if time.monotonic() > deadline or any(s.poll() is not None for s in servers):
                    print(f"a replica did not become ready; see {args.work}/serve-*.log")
                    return 2
                time.sleep(0.5)
            print(f"{args.replicas} replicas on {cluster.url}: {', '.join(bases)}", flush=True)
            cmd = [sys.executable, "-m", "cli.main", "loadtest", "--host", ",".join(bases)]
            cmd += ["--data", str(data), "--out", str(args.out), *passthrough]
            return subprocess.run(cmd, cwd=ROOT, env=env, check=False).returncode
        finally:
            for server in servers:
                server.send_signal(signal.SIGTERM)
            for server in servers:
                try:
                    server.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    server.kill()
                    server.wait()


if __name__ == "__main__":
    sys.exit(main())
