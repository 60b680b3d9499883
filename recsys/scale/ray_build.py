"""The per-user stage of a build as Ray tasks over user shards (``recsys build --ray-address``).

The driver (the ``recsys build`` process) fits everything global: ids, ALS, the item index, the
ranker. Then, instead of walking every user itself, it:

1. puts the item side (item factors, the item index as faiss' serialised numpy buffer, the
   item-to-item and ranked source lists) into Ray's object store once: ``ray.put``; each node
   holds one copy and its tasks read the numpy buffers without copying ("Objects" and
   "Serialization", Ray docs);
2. deals whole search batches out to shards (``recsys.shards.plan_shards``) and runs one task
   per shard, handing it its own users' rows only (factors, seen items, histories): candidates,
   merge, encoding, and the shard's own pipelined writes to Redis under the new build version;
   each task reports how many users it wrote;
3. retries a failed task (``max_retries``, Ray's own task retries, for crashed workers and
   raised errors alike); if a shard still fails, cancels the rest and raises, and the build
   removes everything written under its version. The pointer flips only after every shard
   has reported.

Ray is an optional dependency (``pip install 'recsys[scale]'``), imported only here and only
when a build asks for it.
"""

import contextlib
import logging
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from recsys.candidates.model import CandidateInputs, ItemSide, UserSide
from recsys.config import RayConfig, RedisClientConfig
from recsys.errors import BuildError
from recsys.shards import ShardReport, plan_shards, write_shard
from recsys.store.connect import client_for
from recsys.store.keys import Keys
from recsys.store.user_store import BuildWriter

log = logging.getLogger(__name__)

# Workers compute with one thread each: Ray gives each task one CPU, and BLAS or OpenMP teams
# on top would oversubscribe the node (implicit's README says the same of OpenBLAS).
_WORKER_ENV = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
_CANCEL_WAIT_S = 60.0


def _import_ray() -> Any:
    try:
        import ray
    except ImportError as e:
        raise BuildError(
            "--ray-address needs Ray, which is not installed: pip install 'recsys[scale]'"
        ) from e
    return ray


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail in seconds on a HOST:PORT where nothing listens: ``ray.init`` keeps retrying such an
    address for minutes (measured: over 2 min with Ray 2.60)."""
    if address == "auto" or address.startswith("ray://"):
        return
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise BuildError(f"cannot connect to the Ray cluster at {address}: {e}") from e


def connect(address: str) -> bool:
    """Connect this process to the Ray cluster at ``address`` as a driver, unless it already
    is; True if this call connected (and the caller should ``ray.shutdown()``)."""
    ray = _import_ray()
    if ray.is_initialized():
        return False
    _check_reachable(address)
    try:
        ray.init(
            address=address,
            runtime_env={"env_vars": _WORKER_ENV},
            logging_level=logging.WARNING,
        )
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise BuildError(f"cannot connect to the Ray cluster at {address}: {e}") from e
    return True


@contextlib.contextmanager
def ray_session(address: str | None) -> Iterator[None]:
    """Connected to the Ray cluster at ``address`` for the block (nothing when None): a build
    connects before its first stage, so a wrong address fails in seconds, not after ALS."""
    if address is None:
        yield
        return
    connected_here = connect(address)
    try:
        yield
    finally:
        if connected_here:
            _import_ray().shutdown()


def write_candidates_on_ray(
    inputs: CandidateInputs,
    batches: Sequence[np.ndarray],
    user_keys: Sequence[str],
    redis_url: str,
    redis_cfg: RedisClientConfig,
    keys: Keys,
    build_version: str,
    cfg: RayConfig,
    on_written: Callable[[int], object] | None = None,
) -> list[ShardReport]:
    """Run every shard on the Ray cluster at ``cfg.address``; the reports of all shards, or a
    BuildError once a shard has failed ``cfg.max_retries + 1`` times.

    ``user_keys[u]`` is the Redis id of dense user ``u``; ``redis_url`` must be reachable from
    every Ray node (a unix socket only works when all nodes run on this machine).
    """
    ray = _import_ray()
    if cfg.address is None:
        raise BuildError("no Ray address: set --ray-address or RECSYS_RAY__ADDRESS")
    with ray_session(cfg.address):
        return _run(
            ray,
            inputs,
            batches,
            user_keys,
            redis_url,
            redis_cfg,
            keys,
            build_version,
            cfg,
            on_written,
        )


def _run(
    ray: Any,
    inputs: CandidateInputs,
    batches: Sequence[np.ndarray],
    user_keys: Sequence[str],
    redis_url: str,
    redis_cfg: RedisClientConfig,
    keys: Keys,
    build_version: str,
    cfg: RayConfig,
    on_written: Callable[[int], object] | None,
) -> list[ShardReport]:
    started = time.perf_counter()
    items = ray.put(inputs.items)
    log.info("item side in Ray's object store in %.1fs", time.perf_counter() - started)
    batches_per_shard = max(1, round(cfg.users_per_shard / inputs.items.batch_size))
    plan = plan_shards(len(batches), batches_per_shard)
    # SPREAD: shards go round-robin over the nodes instead of filling the driver's node first
    # (Ray docs, "Scheduling")
    task = ray.remote(_shard_task).options(
        num_cpus=1,
        max_retries=cfg.max_retries,
        retry_exceptions=True,
        scheduling_strategy="SPREAD",
    )
    # a shard's user rows are cut when it is submitted, and only a few shards per CPU wait
    # their turn: the driver never holds a second copy of every user's inputs
    max_in_flight = 2 * max(1, int(ray.cluster_resources().get("CPU", 1)))
    log.info("%d shards on Ray at %s, %d at a time", len(plan), cfg.address, max_in_flight)
    todo = list(enumerate(plan))
    shard_of: dict[Any, int] = {}
    reports: list[ShardReport] = []
    while todo or shard_of:
        while todo and len(shard_of) < max_in_flight:
            shard, batch_ids = todo.pop(0)
            users = np.concatenate([batches[i] for i in batch_ids])
            sizes = np.cumsum([len(batches[i]) for i in batch_ids])[:-1]
            local = np.split(np.arange(len(users), dtype=np.int32), sizes)
            # the item side goes in a list so Ray hands the task the reference, not the value:
            # the worker keeps what it deserialised (the faiss index) for its next shard
            ref = task.remote(
                shard,
                [items],
                inputs.users.take(users),
                local,
                [user_keys[u] for u in users],
                redis_url,
                redis_cfg,
                keys,
                build_version,
            )
            shard_of[ref] = shard
        [done], _ = ray.wait(list(shard_of), num_returns=1)
        shard = shard_of.pop(done)
        try:
            report: ShardReport = ray.get(done)
        except ray.exceptions.RayError as e:
            _cancel(ray, list(shard_of))
            first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise BuildError(
                f"shard {shard} failed {cfg.max_retries + 1} times, build aborted: {first_line}"
            ) from e
        reports.append(report)
        if on_written is not None:
            on_written(report.users)
    return sorted(reports, key=lambda r: r.shard)


def _cancel(ray: Any, pending: list[Any]) -> None:
    """Stop the other shards and wait until they have: what they write after the build has
    removed its keys would be left behind."""
    for ref in pending:
        with contextlib.suppress(Exception):
            ray.cancel(ref, force=True)
    if pending:
        ray.wait(pending, num_returns=len(pending), timeout=_CANCEL_WAIT_S)


# ---------------------------------------------------------------------- inside a Ray worker

_item_side_cache: dict[str, ItemSide] = {}


def _item_side(ref: Any) -> ItemSide:
    """The build's item side, deserialised once per worker process (the faiss index is rebuilt
    from its buffer then; the arrays stay in the object store)."""
    import ray

    key = ref.hex()
    if key not in _item_side_cache:
        _item_side_cache.clear()  # one build at a time per worker
        _item_side_cache[key] = ray.get(ref)
    return _item_side_cache[key]


def _shard_task(
    shard: int,
    items: list[Any],
    users: UserSide,
    batches: list[np.ndarray],
    user_keys: list[str],
    redis_url: str,
    redis_cfg: RedisClientConfig,
    keys: Keys,
    build_version: str,
) -> ShardReport:
    inputs = CandidateInputs(_item_side(items[0]), users)
    client = client_for(redis_url, redis_cfg)
    try:
        writer = BuildWriter(client, keys, build_version)
        return write_shard(shard, inputs, batches, user_keys, writer)
    finally:
        client.close()
