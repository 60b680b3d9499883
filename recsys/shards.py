"""The per-user stage of a build as units of work: shards of whole search batches.

A shard searches its users' candidates, merges them, encodes each user's state and writes it to
Redis under the build's version, then reports what it did. A single-process build runs all
users as one shard; a sharded build (``recsys.scale.ray_build``) runs many shards as Ray tasks.
Shards are made of whole search batches (``recsys.candidates.generate.search_batches``), the
batches one process would search, so both ways store the same bytes for every user.
"""

import math
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from recsys.artifacts import CandidateSummary, ShardingSummary, WorkerSummary
from recsys.candidates.generate import SearchTimes
from recsys.candidates.model import CandidateInputs
from recsys.progress import peak_rss_mb, reset_peak_rss
from recsys.store.codec import encode_user_state
from recsys.store.user_store import BuildWriter

WRITE_BATCH = 1000  # states per pipelined write


@dataclass(frozen=True)
class ShardReport:
    """What one shard wrote, and where its time went."""

    shard: int
    worker: str  # host:pid of the process that ran it
    users: int
    state_bytes: int
    candidates: int
    search_s: float  # candidate sources (ANN search, item-to-item, lists)
    merge_s: float  # merge, seen removal, scores, ordering
    encode_s: float  # history + binary encoding
    write_s: float  # pipelined SETs
    elapsed_s: float
    cpu_s: float  # CPU seconds of the process (all threads) while it ran this shard
    peak_rss_mb: float  # of the process, while it ran this shard


def plan_shards(n_batches: int, batches_per_shard: int) -> list[list[int]]:
    """Batch indices of each shard, dealt round-robin.

    Batches are sorted by how much their users have seen, so heavy batches (deep over-fetch)
    sit at the end; dealing them out gives every shard a similar mix and a similar run time.
    """
    if batches_per_shard < 1:
        raise ValueError(f"batches_per_shard must be at least 1, got {batches_per_shard}")
    n_shards = max(1, math.ceil(n_batches / batches_per_shard))
    return [list(range(s, n_batches, n_shards)) for s in range(n_shards)]


def write_shard(
    shard: int,
    inputs: CandidateInputs,
    batches: Sequence[np.ndarray],
    user_keys: Sequence[str],
    writer: BuildWriter,
    on_written: Callable[[int], object] | None = None,
) -> ShardReport:
    """Candidates -> states -> Redis for ``batches``; ``user_keys`` are the users' ids as in
    Redis keys, in the order of the concatenated batches."""
    reset_peak_rss()
    started = time.perf_counter()
    cpu_started = time.process_time()
    times = SearchTimes()
    encode_s = write_s = 0.0
    n_users = n_bytes = n_cands = 0
    history_len = inputs.cfg.history_len
    for batch_users in batches:
        found = inputs.batch(batch_users, times)
        # encoded and written a pipeline's worth at a time, as a single process always did:
        # writes start early, and a batch's states are never all held encoded at once
        for first in range(0, len(found.users), WRITE_BATCH):
            t = time.perf_counter()
            pairs = []
            for j in range(first, min(first + WRITE_BATCH, len(found.users))):
                state = inputs.history.state(int(found.users[j]), *found.row(j), history_len)
                blob = encode_user_state(state)
                pairs.append((user_keys[n_users + j], blob))
                n_bytes += len(blob)
                n_cands += len(state.cand_item)
            encode_s += time.perf_counter() - t
            t = time.perf_counter()
            for written in writer.write(pairs, batch_size=WRITE_BATCH):
                if on_written is not None:
                    on_written(written)
            write_s += time.perf_counter() - t
        n_users += len(found.users)
    if n_users != len(user_keys):
        raise ValueError(f"shard {shard}: {len(user_keys)} user keys for {n_users} users")
    return ShardReport(
        shard=shard,
        worker=f"{socket.gethostname()}:{os.getpid()}",
        users=n_users,
        state_bytes=n_bytes,
        candidates=n_cands,
        search_s=round(times.search_s, 3),
        merge_s=round(times.merge_s, 3),
        encode_s=round(encode_s, 3),
        write_s=round(write_s, 3),
        elapsed_s=round(time.perf_counter() - started, 3),
        cpu_s=round(time.process_time() - cpu_started, 3),
        peak_rss_mb=round(peak_rss_mb(), 1),
    )


def summarise(
    reports: Sequence[ShardReport], elapsed_s: float, index: str, engine: str
) -> CandidateSummary:
    """The manifest's ``candidates`` section: totals, and per worker what its shards cost."""
    users = sum(r.users for r in reports)
    by_worker: dict[str, list[ShardReport]] = {}
    for r in reports:
        by_worker.setdefault(r.worker, []).append(r)
    workers = []
    for name, rs in sorted(by_worker.items()):
        n, busy, cpu = (
            sum(r.users for r in rs),
            sum(r.elapsed_s for r in rs),
            sum(r.cpu_s for r in rs),
        )
        workers.append(
            WorkerSummary(
                worker=name,
                shards=len(rs),
                users=n,
                busy_s=round(busy, 3),
                users_per_busy_s=round(n / max(busy, 1e-9), 1),
                cpu_s=round(cpu, 3),
                cpu_us_per_user=round(cpu / max(n, 1) * 1e6, 1),
                peak_rss_mb=max(r.peak_rss_mb for r in rs),
            )
        )
    return CandidateSummary(
        users_written=users,
        bytes_per_user=round(sum(r.state_bytes for r in reports) / max(users, 1), 1),
        candidates_per_user=round(sum(r.candidates for r in reports) / max(users, 1), 1),
        users_per_s=round(users / max(elapsed_s, 1e-9), 1),
        index=index,
        sharding=ShardingSummary(
            engine=engine,
            shards=len(reports),
            stage_s={
                name: round(sum(getattr(r, f"{name}_s") for r in reports), 3)
                for name in ("search", "merge", "encode", "write")
            },
            workers=workers,
        ),
    )
