"""Cost of the sequential tables (recsys.candidates.covisitation) at scale: time and peak memory.

    python bench/sequence_scale.py DATA_DIR [--partitions N ...] [--out FILE]

DATA_DIR is a dataset directory, e.g. ``recsys data synth bench-output/data/synth-large --users
1000000 --items 100000`` (about 40M events). The events are indexed as the build indexes them,
then both tables are computed with the default sequence settings, once per partition count
asked for (default: what the build would choose, ``events_per_partition``), each in a fresh
process that only loads the indexed events (saved once by another): ``rss_mb_before`` is that
process with the events loaded, ``peak_rss_mb`` its peak while the tables are computed (the peak
mark is reset after loading).
"""

import argparse
import gc
import json
import multiprocessing as mp
import os
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def index_once(data_dir: Path, out: Path) -> dict[str, int]:
    """The events indexed as the build indexes them, saved as arrays for the measured processes
    (so that loading and indexing leave nothing behind in their memory)."""
    import numpy as np

    from recsys.columns import Columns
    from recsys.data.load import load_dataset
    from recsys.devices import device_vocabulary
    from recsys.events_index import index_events
    from recsys.ids import IdIndex

    dataset = load_dataset(data_dir)
    users = IdIndex.from_values(dataset.interactions[Columns.user])
    items = IdIndex(dataset.items[Columns.item])
    events = index_events(
        dataset.interactions, users, items, device_vocabulary(dataset.interactions)
    )
    for name in ("user", "item", "ts"):
        np.save(out / f"{name}.npy", getattr(events, name))
    return {"events": len(events), "users": len(users), "items": len(items)}


def measure(arrays: Path, sizes: dict[str, int], partitions: int | None) -> dict[str, Any]:
    import numpy as np

    from recsys.candidates.covisitation import CovisitParams, sequence_tables
    from recsys.config import Settings
    from recsys.progress import peak_rss_mb

    user, item, ts = (np.load(arrays / f"{name}.npy") for name in ("user", "item", "ts"))
    params = CovisitParams.from_config(Settings().candidates.sequence, len(user))
    if partitions:
        params = type(params)(**(params.__dict__ | {"partitions": partitions}))
    gc.collect()
    before = current_rss_mb()
    reset = reset_peak_rss()  # the peak below is the tables', not loading's
    start = time.perf_counter()
    tables = sequence_tables(user, item, ts, sizes["items"], int(ts.max()), params)
    seconds = time.perf_counter() - start
    return {
        **sizes,
        "partitions": params.partitions,
        "window": params.window,
        "neighbours": params.neighbours,
        "seconds": round(seconds, 1),
        "us_per_event": round(seconds / len(user) * 1e6, 2),
        "rss_mb_before": round(before),
        "peak_rss_mb": round(peak_rss_mb()),
        "peak_rss_is_the_tables": reset,
        "items_with_transitions": int((tables.transitions.ids[:, 0] >= 0).sum()),
        "table_mb": round(
            (tables.transitions.ids.nbytes + tables.transitions.sims.nbytes) * 2 / 2**20, 1
        ),
    }


def current_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS: writing 5 to
    /proc/self/clear_refs (Linux >= 4.0, proc(5)). False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _index_child(data_dir: Path, out: Path, queue: "mp.Queue[dict[str, int]]") -> None:
    queue.put(index_once(data_dir, out))


def _child(
    arrays: Path,
    sizes: dict[str, int],
    partitions: int | None,
    queue: "mp.Queue[dict[str, Any]]",
) -> None:
    queue.put(measure(arrays, sizes, partitions))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("data_dir", type=Path)
    p.add_argument("--partitions", type=int, nargs="*", default=[0], help="0: the build's choice")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    rows = []
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="sequence-scale-") as tmp:
        arrays = Path(tmp)
        queue: mp.Queue[dict[str, int]] = ctx.Queue()
        indexer = ctx.Process(target=_index_child, args=(args.data_dir, arrays, queue))
        indexer.start()
        sizes = queue.get()
        indexer.join()
        for n in args.partitions:
            results: mp.Queue[dict[str, Any]] = ctx.Queue()
            child = ctx.Process(target=_child, args=(arrays, sizes, n or None, results))
            child.start()
            rows.append(results.get())
            child.join()
            print(json.dumps(rows[-1]), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"data": str(args.data_dir), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
