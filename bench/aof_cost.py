"""What durability costs a bulk build: the whole build against the embedded Redis three ways.

    python bench/aof_cost.py --size medium [--repeat N] [--out FILE]
    python bench/aof_cost.py --write-only 200000 [--repeat N]

``--write-only N`` skips the model and times only what the AOF changes: N users' states (3 KB
each, about a medium build's) written through ``BuildWriter`` as the build does, then the stop.

* ``no-aof``: no persistence while the build writes (the server before issue 12);
* ``aof``: AOF, appendfsync everysec, Redis' automatic rewrites (each time the file doubles);
* ``aof-bulk``: the same AOF with automatic rewrites paused during the build and one rewrite
  after it (``LocalRedis.bulk_writes``, what ``recsys build`` does).

Per variant: the build's wall time and its "candidates -> redis" stage, the peak memory of the
redis-server with its forked rewrite children (its RSS plus the pages the children hold
privately: a rewrite forks, and pages written meanwhile are copied), the rewrites that ran, the
time to stop, and what is left on disk.
The dataset is ``bench/offline_scale.py``'s (made there, or here if missing). Variants run
interleaved, ``--repeat`` times, so that ratios come from one run on the same machine.
"""

import argparse
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import redis

from recsys.config import RedisServerConfig, Settings
from recsys.data.dataset import write_dataset
from recsys.data.load import load_dataset
from recsys.data.synth import generate_synthetic
from recsys.pipeline import run_build
from recsys.store.keys import Keys
from recsys.store.server import LocalRedis
from recsys.store.user_store import BuildWriter

SIZES = {"small": (20_000, 2_000), "medium": (200_000, 20_000), "large": (1_000_000, 100_000)}
VARIANTS = ("no-aof", "aof", "aof-bulk")


def _status_kb(pid: int, path: str, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/{path}").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _tree_rss_mb(pid: int) -> float:
    """The server's RSS plus what its forked children (a rewrite) hold privately: the pages
    copied on write since the fork. Summing their RSS would count the shared pages twice."""
    total = _status_kb(pid, "status", "VmRSS:")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            raw = stat.read_text()
        except OSError:
            continue
        if int(raw[raw.rindex(")") + 2 :].split()[1]) == pid:
            total += _status_kb(int(stat.parent.name), "smaps_rollup", "Private_Dirty:")
    return total / 1024


@contextmanager
def _peak_rss(pid: int, peak: list[float]) -> Iterator[None]:
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.1):
            peak[0] = max(peak[0], _tree_rss_mb(pid))

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _disk_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


STATE_BYTES = 3_000


def _write_states(client: redis.Redis, users: int) -> float:
    """Seconds to write ``users`` states the way a build does (pipelines of 1000 SETs)."""
    writer = BuildWriter(client, Keys("bench"), "20260101T000000Z-00a0f0")
    blob = os.urandom(STATE_BYTES)
    started = time.perf_counter()
    for _ in writer.write((f"user-{i}", blob) for i in range(users)):
        pass
    return time.perf_counter() - started


def run_variant(variant: str, data: Path | None, work: Path, users: int) -> dict[str, object]:
    dataset = load_dataset(data) if data is not None else None
    server = LocalRedis(work / "redis", config=RedisServerConfig())
    client = redis.Redis.from_url(server.start())
    if variant == "no-aof":
        client.config_set("appendonly", "no")
    assert server.pid is not None
    peak = [0.0]
    started = time.perf_counter()
    with _peak_rss(server.pid, peak):
        with server.bulk_writes() if variant == "aof-bulk" else nullcontext():
            if dataset is not None:
                build = run_build(dataset, work / "artifacts", client, Settings())
                write_s = float(build.manifest.timings_s["candidates -> redis"])
            else:
                write_s = _write_states(client, users)
            block_s = time.perf_counter() - started
        total_s = time.perf_counter() - started  # with aof-bulk: and its one rewrite
        rewrites = int(client.info("persistence").get("aof_rewrites", 0))
        used_mb = int(client.info("memory")["used_memory"]) / 2**20
    client.close()
    stop_started = time.perf_counter()
    server.stop()
    stop_s = time.perf_counter() - stop_started
    return {
        "variant": variant,
        "build_s" if dataset is not None else "write_block_s": round(block_s, 1),
        "with_final_rewrite_s": round(total_s, 1),
        "candidates_to_redis_s" if dataset is not None else "write_s": round(write_s, 1),
        "redis_used_mb": round(used_mb),
        "redis_peak_rss_mb": round(peak[0]),
        "aof_rewrites": rewrites,
        "stop_s": round(stop_s, 1),
        "disk_mb": round(_disk_mb(work / "redis")),
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--size", choices=SIZES, default="medium")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--work", type=Path, default=Path("bench-output/data"))
    p.add_argument("--out", type=Path)
    p.add_argument("--write-only", type=int, metavar="USERS", help="time only the writes")
    args = p.parse_args()
    users, items = SIZES[args.size]
    synth_dir = args.work / f"synth-{args.size}"
    if not args.write_only and not (synth_dir / "interactions.parquet").exists():
        write_dataset(generate_synthetic(n_users=users, n_items=items, seed=1), synth_dir)
    data = None if args.write_only else synth_dir
    Path("bench-output").mkdir(exist_ok=True)
    results = []
    for run in range(args.repeat):
        for variant in VARIANTS:
            work = Path(tempfile.mkdtemp(prefix=f"aof-{variant}-", dir="bench-output"))
            try:
                result = {"run": run + 1, **run_variant(variant, data, work, args.write_only)}
            finally:
                shutil.rmtree(work, ignore_errors=True)
            print(json.dumps(result), flush=True)
            results.append(result)
    name = f"write_{args.write_only}" if args.write_only else args.size
    out = args.out or Path(f"bench-output/aof_cost_{name}.json")
    out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
