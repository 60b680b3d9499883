"""Where a cold user's next item is: among the candidates at all, and where the ranker puts it.

    python bench/cold_start_recall.py DATA_DIR [--seed 0,1,2,3,4] [--events 1,3,5] [--config FILE]

The draws of ``python -m eval.cold_start`` (20% of users held out, the build on the rest), but
in process through the serving code (``recsys.serving.cold_start_state`` and ``rank``) rather than
the HTTP API, so that the whole candidate list is visible: for each held-out user after their
first n events, whether their next item is among the candidates, its stage-1 and ranked
positions, and which sources found it. Pooled over the draws.
"""

import argparse
import logging
import os
import tempfile
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("data_dir", type=Path)
    p.add_argument("--seed", default="0,1,2,3,4")
    p.add_argument("--events", default="1,3,5")
    p.add_argument("--config", type=Path)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from eval.cold_start import hold_out_users
    from recsys.candidates.registry import SOURCES
    from recsys.config import Settings, read_overrides, with_overrides
    from recsys.data.dataset import Dataset
    from recsys.data.load import load_dataset
    from recsys.evaluation.runs import isolated, published_build
    from recsys.features import RequestContext
    from recsys.serving import cold_start_state, rank
    from recsys.store.connect import open_redis
    from recsys.store.events import WatchEvent

    settings = Settings()
    if args.config:
        settings = with_overrides(settings, read_overrides(args.config), args.config)
    ns = [int(n) for n in args.events.split(",")]
    dataset = load_dataset(args.data_dir)
    found: dict[int, list[tuple[int | None, int | None, int]]] = {n: [] for n in ns}
    for seed in (int(s) for s in args.seed.split(",")):
        train, users = hold_out_users(dataset.interactions, 0.2, max(ns) + 1, seed)
        with (
            tempfile.TemporaryDirectory() as work,
            open_redis(
                settings.redis_url,
                Path(work) / "redis",
                client_cfg=settings.redis_client,
                server_cfg=settings.redis_server,
            ) as (client, url),
        ):
            served = isolated(settings).model_copy(update={"redis_url": url})
            with published_build(Dataset(train, dataset.items), client, served, Path(work)) as (
                _,
                model,
            ):
                for n in ns:
                    for user in users:
                        posted = [
                            WatchEvent(e["item_id"], e["timestamp"], e["device"], e["completion"])
                            for e in user.events[:n]
                        ]
                        nxt = user.events[n]
                        state = cold_start_state(model, posted)
                        if state is None:
                            found[n].append((None, None, 0))
                            continue
                        ctx = RequestContext(
                            nxt["timestamp"], model.items.device_code(nxt["device"])
                        )
                        ranked = rank(model, [state], [ctx], len(state.cand_item))[0]
                        target = model.items.index_of(nxt["item_id"])
                        at = np.flatnonzero(state.cand_item == target)
                        pos = np.flatnonzero(ranked.item_idx == target)
                        found[n].append(
                            (
                                int(at[0]) if len(at) else None,
                                int(pos[0]) if len(pos) else None,
                                int(state.cand_sources[at[0]]) if len(at) else 0,
                            )
                        )
    for n, rows in found.items():
        stage1 = [r[0] for r in rows]
        ranked_at = [r[1] for r in rows]

        def share(pos: list[int | None], k: int) -> float:
            return float(np.mean([p is not None and p < k for p in pos]))

        print(
            f"after {n} events, {len(rows)} answers: next item among the candidates "
            f"{share(stage1, 10**9):.3f}; in the top 10: stage-1 order {share(stage1, 10):.3f}, "
            f"ranked {share(ranked_at, 10):.3f}; in the top 50: stage-1 {share(stage1, 50):.3f}, "
            f"ranked {share(ranked_at, 50):.3f}"
        )
        by_source = ", ".join(
            f"{spec.name} {np.mean([(r[2] & spec.flag) != 0 for r in rows]):.3f}"
            for spec in SOURCES
        )
        print(f"  found by: {by_source}")


if __name__ == "__main__":
    main()
