"""Cost of the sequential tables (recsys.candidates.covisitation) at scale: time and peak memory.

    python bench/sequence_scale.py DATA_DIR [--partitions N ...] [--out FILE]

DATA_DIR is a dataset directory, e.g. ``recsys data synth bench-output/data/synth-large --users
1000000 --items 100000`` (about 40M events). The events are indexed as the build indexes them,
then both tables are computed with the default sequence settings, once per partition count
asked for (default: what the build would choose, ``events_per_partition``), each in a fresh
process so that its peak RSS is its own.
"""

import argparse
import json
import multiprocessing as mp
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def measure(data_dir: Path, partitions: int | None) -> dict[str, Any]:
    from recsys.candidates.covisitation import CovisitParams, sequence_tables
    from recsys.columns import Columns
    from recsys.config import Settings
    from recsys.data.load import load_dataset
    from recsys.devices import device_vocabulary
    from recsys.events_index import index_events
    from recsys.ids import IdIndex
    from recsys.progress import peak_rss_mb

    dataset = load_dataset(data_dir)
    users = IdIndex.from_values(dataset.interactions[Columns.user])
    items = IdIndex(dataset.items[Columns.item])
    events = index_events(
        dataset.interactions, users, items, device_vocabulary(dataset.interactions)
    )
    del dataset
    params = CovisitParams.from_config(Settings().candidates.sequence, len(events))
    if partitions:
        params = type(params)(**(params.__dict__ | {"partitions": partitions}))
    before = peak_rss_mb()
    start = time.perf_counter()
    tables = sequence_tables(
        events.user, events.item, events.ts, len(items), int(events.ts.max()), params
    )
    seconds = time.perf_counter() - start
    return {
        "events": len(events),
        "users": len(users),
        "items": len(items),
        "partitions": params.partitions,
        "window": params.window,
        "neighbours": params.neighbours,
        "seconds": round(seconds, 1),
        "peak_rss_mb_before": round(before),
        "peak_rss_mb": round(peak_rss_mb()),
        "items_with_transitions": int((tables.transitions.ids[:, 0] >= 0).sum()),
        "table_mb": round(
            (tables.transitions.ids.nbytes + tables.transitions.sims.nbytes) * 2 / 2**20, 1
        ),
    }


def _child(data_dir: Path, partitions: int | None, queue: "mp.Queue[dict[str, Any]]") -> None:
    queue.put(measure(data_dir, partitions))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("data_dir", type=Path)
    p.add_argument("--partitions", type=int, nargs="*", default=[0], help="0: the build's choice")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    rows = []
    ctx = mp.get_context("spawn")
    for n in args.partitions:
        queue: mp.Queue[dict[str, Any]] = ctx.Queue()
        child = ctx.Process(target=_child, args=(args.data_dir, n or None, queue))
        child.start()
        rows.append(queue.get())
        child.join()
        print(json.dumps(rows[-1]), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"data": str(args.data_dir), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
