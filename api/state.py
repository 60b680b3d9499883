"""The build the API answers with, and the background swap to a newer one.

Requests take a reference to the current ``ServingModel`` once and use it to the end, so a swap
never changes a request half-way; the swap itself is one attribute assignment.
"""

import asyncio
import logging
from pathlib import Path

import redis.asyncio as aioredis

from recsys.errors import RecsysError
from recsys.serving import ServingModel
from recsys.store.keys import Keys

log = logging.getLogger(__name__)


class ModelHolder:
    def __init__(self, artifacts: Path) -> None:
        self.artifacts = artifacts
        self.model: ServingModel | None = None
        self.last_error: str | None = None

    async def refresh(self, client: aioredis.Redis, keys: Keys) -> None:
        """Load the build the Redis pointer names, if it is not the one we hold."""
        raw = await client.get(keys.current)
        if raw is None:
            self.last_error = "no build has been published to Redis yet"
            return
        version = raw.decode() if isinstance(raw, bytes) else str(raw)
        if self.model is not None and self.model.version == version:
            return
        try:
            model = await asyncio.to_thread(ServingModel.load, self.artifacts, version)
        except (RecsysError, OSError, ValueError) as e:
            self.last_error = f"cannot load build {version}: {e}"
            log.warning(self.last_error)
            return
        old = self.model.version if self.model else None
        self.model = model
        self.last_error = None
        log.info("serving build %s (was %s)", version, old)

    async def watch(self, client: aioredis.Redis, keys: Keys, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            try:
                await self.refresh(client, keys)
            except Exception as e:  # the watcher must outlive any single failure (Redis down)
                log.warning("build watcher: %s", e)
