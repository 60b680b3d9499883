"""Probes and metrics: /healthz (liveness), /readyz (readiness), /metrics (Prometheus)."""

from typing import Literal

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from api.deps import ArmsDep, MetricsDep, ServiceDep, TrustedDep
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
async def readyz(arms: ArmsDep, service: ServiceDep, trusted: TrustedDep) -> Health | JSONResponse:
    """Ready when the champion's build is loaded, Redis answers a PING within redis_timeout_ms,
    and the served build's keys are still in Redis. An A/B arm without a build does not stop
    serving (its users get the champion) and is reported in `detail`.

    A 503 takes the worker out of a load balancer's rotation while Redis is down, even though
    /recommendations still answers (from popular items). With an API key configured, the build
    and the details (which name the Redis address and artifacts path) are shown only to callers
    that send the key; the status code is the same for everyone.
    """
    holder = arms.champion
    model = holder.model
    version = model.version if model else None
    if model:
        problem = await service.redis_problem(holder.ready_key)
    else:
        problem = holder.last_error or "no build loaded"
    status: Literal["ok", "unavailable"] = "unavailable" if problem else "ok"
    body = Health(status=status, model_version=version, detail=problem or arms.problems())
    if not trusted:
        body = Health(status=status)
    if problem:
        return JSONResponse(body.model_dump(), status_code=503)
    return body


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
