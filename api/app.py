"""The app factory: tests and ``recsys serve`` each build their own app from a ``Settings``."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import redis.asyncio as aioredis
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from api.routes import events, health, recommendations
from api.service import RecommendationService
from api.state import ModelHolder
from recsys.config import Settings
from recsys.store.keys import Keys

log = logging.getLogger(__name__)


def create_app(settings: Settings, artifacts: Path) -> FastAPI:
    if not settings.redis_url:
        raise ValueError("create_app needs settings.redis_url (recsys serve starts a local one)")
    redis_url = settings.redis_url

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        timeout = settings.serve.redis_timeout_ms / 1000
        client = aioredis.Redis.from_url(
            redis_url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry_on_timeout=False,
        )
        keys = Keys(settings.key_prefix)
        holder = ModelHolder(artifacts)
        try:
            await holder.refresh(client, keys)
        except Exception as e:  # start anyway: /readyz reports it and the watcher retries
            holder.last_error = f"redis: {e}"
            log.warning("startup: %s", holder.last_error)
        app.state.holder = holder
        app.state.service = RecommendationService(client, keys, settings.serve)
        watcher = asyncio.create_task(holder.watch(client, keys, settings.serve.build_poll_s))
        yield
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await client.aclose()

    app = FastAPI(
        title="recsys",
        summary="Two-stage recommendations: ALS + HNSW candidates, LightGBM LambdaRank ranker.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.include_router(recommendations.router)
    app.include_router(events.router)
    app.include_router(health.router)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return JSONResponse({"detail": "internal error"}, status_code=500)

    return app
