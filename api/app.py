"""The app factory: tests and ``recsys serve`` each build their own app from a ``Settings``.

``create_app`` is the whole composition: three Redis clients per process (reads, event writes
with a longer timeout, and the impression log's batches), the build lines (one holder and
watcher each: the champion, and the A/B arms of ``serve.ab``), the impression log's writer, the
recommendation service, the routes, and the edge middleware (metrics, body size limit, optional
CORS).
``app_from_env`` is the factory uvicorn calls in each worker process when ``recsys serve``
runs several.
"""

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request, Response, Security
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse

from api.arms import Arms
from api.deps import API_KEY_HEADER, require_api_key
from api.impression_log import ImpressionLog
from api.middleware import BodySizeLimitMiddleware, RequestMetricsMiddleware
from api.model_holder import report_interval_s, serving_ttl_s
from api.prometheus import PrometheusMetrics
from api.routes import events, health, recommendations, ui, ui_data
from api.service import REDIS_ERRORS, RecommendationService
from api.ui.auth import UiAuth
from api.ui.dashboard import Dashboard, NotFoundError, UnavailableError
from api.ui.live import LiveTraffic
from recsys.config import ServeConfig, Settings, get_settings
from recsys.experiment import TrafficSplit
from recsys.store.connect import AsyncStore, async_client_for, read_slot_map
from recsys.store.keys import Keys

log = logging.getLogger(__name__)

DESCRIPTION = """\
Two-stage recommendations: ALS + HNSW candidates in Redis, re-ranked by LightGBM LambdaRank.
Every answer comes within the deadline (100 ms by default), with a `fallback` that says when it
did not come from the ranker. See docs/API.md for the full contract.
"""


# The impression log writes one batch at a time: one connection, and one spare for reconnecting.
LOG_POOL_SIZE = 2


def redis_client(
    url: str, cfg: ServeConfig, timeout_ms: float, pool_size: int | None = None
) -> AsyncStore:
    """A Redis (or Redis Cluster) client with bounded pools, one timeout for everything, and no
    retries: ``recsys.store.connect.async_client_for`` says why."""
    return async_client_for(
        url, timeout_s=timeout_ms / 1000, max_connections=pool_size or cfg.redis_pool_size
    )


def validation_error_response(exc: RequestValidationError) -> Response:
    """FastAPI's 422 body (``detail``: type, loc, msg per error) minus the echoed input.

    The echo is what breaks: a NaN or a lone surrogate the client sent cannot be written back as
    JSON, which turned a client's mistake into a 500. ASCII output escapes whatever the
    locations hold (a JSON key is a location too).
    """
    errors = [{"type": e["type"], "loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()]
    body = json.dumps({"detail": errors}, ensure_ascii=True, allow_nan=False)
    return Response(body, status_code=422, media_type="application/json")


def create_app(settings: Settings, artifacts: Path) -> FastAPI:
    if not settings.redis_url:
        raise ValueError("create_app needs settings.redis_url (recsys serve starts a local one)")
    metrics = PrometheusMetrics()
    docs = settings.serve.openapi_docs
    app = FastAPI(
        title="recsys",
        summary="Two-stage recommendations: ALS + HNSW candidates, LightGBM LambdaRank ranker.",
        description=DESCRIPTION,
        version="0.1.0",
        lifespan=_lifespan(settings, settings.redis_url, artifacts, metrics),
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    app.state.metrics = metrics
    _add_routes(app, settings)
    _add_error_handlers(app)
    _add_middleware(app, settings.serve, metrics)
    return app


def _lifespan(
    settings: Settings, redis_url: str, artifacts: Path, metrics: PrometheusMetrics
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """Per process: the Redis clients, the first builds, the watcher that swaps newer ones in,
    the impression log's writer."""
    cfg = settings.serve

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Separate pools because redis-py sets timeouts per connection: reads get a short one
        # (they have fallbacks), event writes a longer one (a timed-out write is a lost event),
        # and the log's batches never take a connection a read is waiting for.
        client = redis_client(redis_url, cfg, cfg.redis_timeout_ms)
        event_client = redis_client(redis_url, cfg, cfg.event_timeout_ms)
        log_client = redis_client(redis_url, cfg, settings.log.write_timeout_ms, LOG_POOL_SIZE)
        for each in (client, event_client, log_client):
            await read_slot_map(each, cfg.event_timeout_ms / 1000)
        keys = Keys(settings.key_prefix)
        split = TrafficSplit.of(cfg.ab, cfg.ab_salt)
        arms = Arms(artifacts, split, metrics, serving_ttl_s(cfg.build_poll_s))
        try:
            await arms.refresh(event_client, keys)
        except REDIS_ERRORS as e:  # start anyway: /readyz reports it and the watcher retries
            arms.champion.problem(f"cannot read the current build from redis: {e}")
            log.warning("startup: %s", arms.champion.last_error)
        service = RecommendationService(
            client,
            event_client,
            keys,
            cfg,
            metrics,
            drift_sample_interval_s=settings.ui.drift_sample_interval_ms / 1000
            if settings.ui.enabled
            else 0.0,
            log_cfg=settings.log,
        )
        impressions = ImpressionLog(log_client, keys, settings.log, metrics)
        app.state.arms = arms
        app.state.holder = arms.champion
        app.state.service = service
        app.state.impressions = impressions
        dashboard = Dashboard(settings, artifacts, arms, service, LiveTraffic(metrics))
        app.state.dashboard = dashboard
        stop = asyncio.Event()
        # the background tasks use the event pool: its timeout is the longer one
        every_s = report_interval_s(cfg.build_poll_s)
        tasks = [
            asyncio.create_task(arms.watch(event_client, keys, cfg.build_poll_s, stop)),
            *(
                asyncio.create_task(
                    holder.keep_reporting(
                        event_client,
                        keys,
                        every_s,
                        stop,
                        also=service.report if holder is arms.champion else None,
                    )
                )
                for holder in arms.holders.values()
            ),
        ]
        writer = asyncio.create_task(impressions.run(stop))
        try:
            yield
        finally:
            stop.set()
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            with contextlib.suppress(asyncio.CancelledError):
                await writer  # writes what is left, bounded by the log's write timeout
            for holder in arms.holders.values():
                await holder.forget_serving(event_client, keys)
            service.close()
            dashboard.close()
            await client.aclose()
            await event_client.aclose()
            await log_client.aclose()
            metrics.process_exited(os.getpid())

    return lifespan


def _add_routes(app: FastAPI, settings: Settings) -> None:
    cfg = settings.serve
    api_key = cfg.api_key.get_secret_value().encode() if cfg.api_key else None
    app.state.api_key = api_key
    # Declared only when a key is set, so the OpenAPI schema says whether one is needed.
    guarded = [Security(require_api_key)] if api_key else []
    app.include_router(recommendations.router, dependencies=guarded)
    app.include_router(events.router, dependencies=guarded)
    app.include_router(health.router)
    if settings.ui.enabled:  # behind the same key, through a sign-in (api/ui/auth.py)
        app.state.ui_auth = UiAuth(
            api_key, settings.ui.session_hours * 3600, settings.ui.secure_cookie
        )
        app.include_router(ui.router)
        app.include_router(ui_data.router)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        return validation_error_response(exc)

    @app.exception_handler(NotFoundError)
    async def not_found(request: Request, exc: NotFoundError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(UnavailableError)
    async def unavailable(request: Request, exc: UnavailableError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        """A bug, never the client's input: log the trace, answer without it."""
        log.exception("unhandled error on %s %r", request.method, request.url.path)
        return JSONResponse({"detail": "internal error"}, status_code=500)


def _add_middleware(app: FastAPI, cfg: ServeConfig, metrics: PrometheusMetrics) -> None:
    """Last added runs first: metrics see everything, including 413s and CORS preflights."""
    if cfg.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=cfg.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type", API_KEY_HEADER],
        )
    app.add_middleware(BodySizeLimitMiddleware, limit=cfg.max_body_bytes)
    app.add_middleware(RequestMetricsMiddleware, metrics=metrics)


def app_from_env() -> FastAPI:
    """The app of one uvicorn worker (``--workers N``), from ``RECSYS_*`` environment variables.

    ``recsys serve`` sets ``RECSYS_REDIS_URL`` (its local Redis, started once by the parent) and
    ``RECSYS_SERVE__ARTIFACTS`` before starting the workers.
    """
    settings = get_settings()
    if settings.serve.artifacts is None:
        raise ValueError("RECSYS_SERVE__ARTIFACTS is not set: which artifacts should I serve?")
    return create_app(settings, settings.serve.artifacts)
