"""Where ALS stops fitting one machine: fit time and peak memory of one implicit ALS fit against
the number of events.

    python bench/als_scale.py --events 10e6,20e6,40e6,80e6,160e6 [--out bench-output/als_scale.json]

Each size runs in a fresh process (so its peak RSS is its own): a users x items matrix with
~40 events per user and 10 users per item, item popularity skewed like the synthetic log's,
then the build's own ``recsys.mf.fit_als`` (BM25 weighting, 64 factors, 15 sweeps, both cores).
The events come straight from numpy, not from a dataset file: at these sizes polars' frames
would measure the data loader, not ALS.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

EVENTS_PER_USER = 40
USERS_PER_ITEM = 10


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def one(n_events: int) -> dict[str, float]:
    import numpy as np

    from recsys.config import ALSConfig
    from recsys.mf import fit_als, interaction_matrix

    baseline = peak_rss_mb()  # the interpreter and the libraries, before any data
    rng = np.random.default_rng(0)
    n_users = n_events // EVENTS_PER_USER
    n_items = max(1000, n_users // USERS_PER_ITEM)
    t = time.perf_counter()
    user = rng.integers(0, n_users, n_events, dtype=np.int32)
    # power-law popularity: most events on few items, a long tail
    item = (n_items * rng.random(n_events, dtype=np.float32) ** 3).astype(np.int32)
    weight = np.ones(n_events, dtype=np.float32)
    matrix = interaction_matrix(user, item, weight, n_users, n_items)
    del user, item, weight
    build_s = time.perf_counter() - t
    before_fit = peak_rss_mb()
    t = time.perf_counter()
    fit_als(matrix, ALSConfig())
    fit_s = time.perf_counter() - t
    peak = peak_rss_mb()
    return {
        "events": int(matrix.nnz),
        "users": n_users,
        "items": n_items,
        "matrix_s": round(build_s, 1),
        "fit_s": round(fit_s, 1),
        "fit_s_per_million_events": round(fit_s / (matrix.nnz / 1e6), 3),
        "peak_rss_mb": round(peak),
        "peak_rss_before_fit_mb": round(before_fit),
        "events_per_gb": round(matrix.nnz / (peak / 1024)),
        # what each event adds to the process' peak (the libraries' baseline subtracted)
        "bytes_per_event": round((peak - baseline) * 2**20 / matrix.nnz, 1),
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--events", default="10e6,20e6,40e6,80e6,160e6")
    p.add_argument("--one", type=float, help=argparse.SUPPRESS)  # a single size, in this process
    p.add_argument("--out", type=Path, default=Path("bench-output/als_scale.json"))
    args = p.parse_args()
    if args.one:
        print(json.dumps(one(int(args.one))), flush=True)
        return
    rows = []
    for n in (int(float(x)) for x in args.events.split(",")):
        done = subprocess.run(
            [sys.executable, __file__, "--one", str(n)], capture_output=True, text=True
        )
        if done.returncode != 0:
            print(f"{n:,} events: failed ({done.returncode}): {done.stderr[-500:]}", flush=True)
            rows.append({"events": n, "failed": done.returncode})
            break
        row = json.loads(done.stdout.strip().splitlines()[-1])
        print(json.dumps(row), flush=True)
        rows.append(row)
    result = {"factors": 64, "iterations": 15, "cores": os.cpu_count(), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
