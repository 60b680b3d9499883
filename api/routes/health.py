"""Probes and metrics: /healthz (liveness), /readyz (readiness), /metrics (Prometheus)."""

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.deps import HolderDep, MetricsDep, ServiceDep
from api.prometheus import CONTENT_TYPE
from api.schemas import Health

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is up (liveness). Says nothing about Redis or the build: see /readyz."""
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    responses={503: {"model": Health, "description": "No usable build, or Redis not answering."}},
)
async def readyz(holder: HolderDep, service: ServiceDep) -> Health | JSONResponse:
    """Ready when a build is loaded and Redis answers a PING within redis_timeout_ms.

    A 503 takes the worker out of a load balancer's rotation while Redis is down, even though
    /recommendations still answers (from popular items).
    """
    model = holder.model
    version = model.version if model else None
    problem = await service.redis_problem() if model else holder.last_error or "no build loaded"
    if problem:
        body = Health(status="unavailable", model_version=version, detail=problem)
        return JSONResponse(body.model_dump(), status_code=503)
    return Health(status="ok", model_version=version, detail=holder.last_error)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text format."}},
)
async def metrics(metrics: MetricsDep) -> Response:
    """Prometheus metrics: latency by route and outcome, fallbacks by reason, time per stage,
    the build being served. With several workers, the sum over all of them."""
    # a thread: with several workers this reads and sums every worker's files
    return Response(await run_in_threadpool(metrics.render), media_type=CONTENT_TYPE)
