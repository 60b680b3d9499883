"""The build the API answers with, and the background swap to a newer one.

A build publishes itself by writing its version to the Redis pointer ``<prefix>:current``, last.
Each worker polls that pointer every ``build_poll_s``; on a change it loads the new build's
ranker and item table in a thread (the event loop keeps serving), warms it, and swaps it in with
one attribute assignment. Requests take a reference to the current ``ServingModel`` once, at
their start, and use it to the end: a request in flight during a swap finishes on the old build,
whose Redis keys survive until it falls beyond ``keep_builds`` (2 by default).
"""

import asyncio
import gc
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import redis.asyncio as aioredis
from lightgbm.basic import LightGBMError

from api.service import REDIS_ERRORS
from recsys.errors import RecsysError
from recsys.features import FEATURE_NAMES
from recsys.serving import ServingModel
from recsys.store.keys import Keys
from recsys.store.user_store import current_build_async

log = logging.getLogger(__name__)

SwapListener = Callable[[str | None, str], None]


def load_warm(artifacts: Path, version: str) -> ServingModel:
    """Load a build and pay its one-off costs now, off the request path: the id lookups are
    built lazily and LightGBM's first predict is slower than the rest."""
    model = ServingModel.load(artifacts, version)
    model.items.index_of("")
    _ = model.items.ids_list
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
    def __init__(self, artifacts: Path, on_swap: SwapListener | None = None) -> None:
        self.artifacts = artifacts
        self.model: ServingModel | None = None
        self.last_error: str | None = None
        self._on_swap = on_swap

    async def refresh(self, client: aioredis.Redis, keys: Keys) -> None:
        """Load the build the Redis pointer names, if it is not the one we hold.

        Redis errors propagate (the caller decides how to report them); a build that cannot be
        loaded is recorded in ``last_error`` and the current one keeps serving.
        """
        version = await current_build_async(client, keys)
        if version is None:
            self._problem("no build has been published to Redis yet")
            return
        if self.model is not None and self.model.version == version:
            self.last_error = None
            return
        try:
            model = await asyncio.to_thread(load_warm, self.artifacts, version)
        except (RecsysError, LightGBMError, OSError, ValueError, KeyError) as e:
            self._problem(f"cannot load build {version} from {self.artifacts}: {e}")
            return
        old = self.model.version if self.model else None
        self.model = model
        self.last_error = None
        freeze_long_lived()
        if self._on_swap is not None:
            self._on_swap(old, version)
        log.info("serving build %s (was %s)", version, old)

    async def watch(
        self, client: aioredis.Redis, keys: Keys, every_s: float, stop: asyncio.Event
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
                self._problem(f"cannot read the current build from redis: {e}")

    def _problem(self, message: str) -> None:
        if message != self.last_error:  # log changes, not every poll
            log.warning("%s", message)
        self.last_error = message
