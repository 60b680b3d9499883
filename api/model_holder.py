"""The build the API answers with, and the background swap to a newer one.

A build publishes itself by writing its version to the Redis pointer ``<prefix>:current``, last.
Each worker polls that pointer every ``build_poll_s``; on a change it loads the new build's
ranker and item table in a thread (the event loop keeps serving), warms it, and swaps it in with
one attribute assignment. Requests take a reference to the current ``ServingModel`` once, at
their start, and use it to the end: a request in flight during a swap finishes on the old build.

Each worker also records, every ``build_poll_s``, which builds it holds or is loading (issue
12): garbage collection keeps a superseded build's keys while any worker still reports it, so
a worker that has not swapped yet, or failed to load the new build, never loses the keys it
reads. A pointer that is not a build version is ignored (it would be used as a path).
"""

import asyncio
import contextlib
import gc
import logging
import os
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
from lightgbm.basic import LightGBMError

from api.service import REDIS_ERRORS
from recsys.errors import RecsysError
from recsys.experiment import DEFAULT_BUILD_NAME
from recsys.features import FEATURE_NAMES
from recsys.serving import ServingModel
from recsys.store.builds import HOST, forget_serving, record_serving
from recsys.store.connect import AsyncStore
from recsys.store.keys import Keys
from recsys.store.user_store import current_build_async
from recsys.versions import is_build_version

log = logging.getLogger(__name__)

SwapListener = Callable[[str | None, str], None]
# A worker's report of the builds it holds lives this many polls (at least SERVING_TTL_MIN_S):
# a few missed beats (a busy event loop, a Redis restart) must not make a held build look free.
SERVING_TTL_POLLS = 5
SERVING_TTL_MIN_S = 15.0
# Reports (and the Redis memory read for /metrics) at most once a second, however fast builds
# are polled: nothing needs them fresher.
REPORT_MIN_INTERVAL_S = 1.0


def report_interval_s(build_poll_s: float) -> float:
    return max(REPORT_MIN_INTERVAL_S, build_poll_s)


def serving_ttl_s(build_poll_s: float) -> float:
    return max(SERVING_TTL_MIN_S, SERVING_TTL_POLLS * report_interval_s(build_poll_s))


def load_warm(artifacts: Path, version: str) -> ServingModel:
    """Load a build and pay its one-off costs now, off the request path: the id lookups are
    built lazily and LightGBM's first predict is slower than the rest."""
    model = ServingModel.load(artifacts, version)
    model.items.index_of("")
    _ = model.items.ids_list
    _ = model.items.pop_percentile
    model.ranker.score(np.zeros((1, len(FEATURE_NAMES)), dtype=np.float32))
    return model


def freeze_long_lived() -> None:
    """Move every object alive now (modules, the app, the build) out of the garbage collector's
    reach. A full collection walks all ~150k of them: 45-60 ms with the event loop stopped
    (measured here), long enough for Redis reads to time out and p99 to jump; once frozen it
    takes microseconds. Frozen objects are still freed by reference counting."""
    gc.collect()
    gc.freeze()


class ModelHolder:
    """The build one build line (``name``, the champion by default) is answering with."""

    def __init__(
        self,
        artifacts: Path,
        on_swap: SwapListener | None = None,
        serving_ttl_s: float = 15.0,
        name: str = DEFAULT_BUILD_NAME,
        loaded: Callable[[str], ServingModel | None] | None = None,
    ) -> None:
        self.artifacts = artifacts
        self.name = name
        self.model: ServingModel | None = None
        self.last_error: str | None = None
        # the served build's ready key, checked by /readyz; None for a build published before
        # ready keys existed (nothing to check)
        self.ready_key: str | None = None
        self.worker = f"{HOST}:{os.getpid()}:{secrets.token_hex(3)}"
        self.serving_ttl_s = serving_ttl_s
        self._loading: str | None = None
        self._reported: set[str] = set()
        self._on_swap = on_swap
        self._loaded = loaded  # a build another holder already has in memory, if any

    @property
    def held_versions(self) -> set[str]:
        """The builds this worker needs the keys of: the one it serves, the one it loads."""
        return {v for v in (self.model.version if self.model else None, self._loading) if v}

    async def report_serving(self, client: AsyncStore, keys: Keys) -> None:
        """Record the builds this worker holds (raises one of REDIS_ERRORS on failure)."""
        held = self.held_versions
        await record_serving(client, keys, self.worker, held, self._reported, self.serving_ttl_s)
        self._reported = held

    async def forget_serving(self, client: AsyncStore, keys: Keys) -> None:
        """At shutdown: this worker holds nothing any more (best effort, a second at most)."""
        with contextlib.suppress(*REDIS_ERRORS):
            async with asyncio.timeout(1.0):
                await forget_serving(client, keys, self.worker, self._reported)

    async def refresh(self, client: AsyncStore, keys: Keys) -> None:
        """Load the build the line's Redis pointer names, if it is not the one we hold.

        Redis errors propagate (the caller decides how to report them); a build that cannot be
        loaded is recorded in ``last_error`` and the current one keeps serving.
        """
        version = await current_build_async(client, keys, self.name)
        if version is None:
            self.problem(
                "no build has been published to Redis yet"
                if self.name == DEFAULT_BUILD_NAME
                else f"no build named {self.name} has been published to Redis yet"
            )
            return
        if not is_build_version(version):
            self.problem(f"ignoring {keys.pointer(self.name)} = {version!r}: not a build version")
            return
        if self.model is not None and self.model.version == version:
            self.last_error = None
            return
        self._loading = version
        shared = self._loaded(version) if self._loaded is not None else None
        try:
            # before the load: a build being loaded is held too
            with contextlib.suppress(*REDIS_ERRORS):
                await self.report_serving(client, keys)
            model = shared or await asyncio.to_thread(load_warm, self.artifacts, version)
            has_ready_key = bool(await client.exists(keys.build_ready(version)))
        except (RecsysError, LightGBMError, OSError, ValueError, KeyError) as e:
            self.problem(f"cannot load build {version} from {self.artifacts}: {e}")
            return
        finally:
            self._loading = None
        if not has_ready_key:
            log.warning(
                "build %s has no ready key in Redis (published by an older version, or its "
                "keys are gone): /readyz cannot check that its keys are still there",
                version,
            )
        old = self.model.version if self.model else None
        self.model = model
        self.ready_key = keys.build_ready(version) if has_ready_key else None
        self.last_error = None
        freeze_long_lived()
        if self._on_swap is not None:
            self._on_swap(old, version)
        log.info("%s: serving build %s (was %s)", self.name, version, old)

    async def watch(
        self, client: AsyncStore, keys: Keys, every_s: float, stop: asyncio.Event
    ) -> None:
        """Poll for new builds until ``stop`` is set; Redis being down only delays the next look.

        A flag as well as cancellation: on Python 3.11 ``asyncio.wait_for`` (used inside
        redis-py) can swallow a cancel that lands just as the call completes, and a watcher that
        outlives its cancel hangs the shutdown (seen in the tests).
        """
        while not stop.is_set():
            await asyncio.sleep(every_s)
            if stop.is_set():
                return
            try:
                await self.refresh(client, keys)
            except REDIS_ERRORS as e:
                self.problem(f"cannot read the current build from redis: {e}")

    async def keep_reporting(
        self,
        client: AsyncStore,
        keys: Keys,
        every_s: float,
        stop: asyncio.Event,
        also: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """Every ``every_s``: record the builds held, then run ``also`` (e.g. reading Redis'
        memory for /metrics). A task of its own: the watcher can be busy loading a build for
        longer than a report lives."""
        while not stop.is_set():
            with contextlib.suppress(*REDIS_ERRORS):
                await self.report_serving(client, keys)
            if also is not None:
                with contextlib.suppress(*REDIS_ERRORS):
                    await also()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=every_s)

    def problem(self, message: str) -> None:
        if message != self.last_error:  # log changes, not every poll
            log.warning("%s", message)
        self.last_error = message
