"""Dependencies shared by the routes: the service, the current build, the API key check.

All ``async def``, though none awaits: FastAPI runs a plain ``def`` dependency in its thread
pool, and these four cost four thread hand-offs per request, ~25% of the event loop's time at
300 req/s (py-spy, bench/LOADTEST.md). Each is a few attribute reads, fine on the loop.
"""

import secrets
import time
from typing import Annotated

from fastapi import Depends, HTTPException, Request, Security
from fastapi.security import APIKeyHeader

from api.arms import Arms
from api.impression_log import ImpressionLog
from api.middleware import STARTED_KEY
from api.model_holder import ModelHolder
from api.prometheus import PrometheusMetrics
from api.service import RecommendationService
from recsys.serving import ServingModel

API_KEY_HEADER = "X-API-Key"

api_key_header = APIKeyHeader(
    name=API_KEY_HEADER,
    auto_error=False,
    description="The key configured in RECSYS_SERVE__API_KEY.",
)


async def get_service(request: Request) -> RecommendationService:
    service: RecommendationService = request.app.state.service
    return service


async def get_holder(request: Request) -> ModelHolder:
    holder: ModelHolder = request.app.state.holder
    return holder


async def get_arms(request: Request) -> Arms:
    arms: Arms = request.app.state.arms
    return arms


async def get_impressions(request: Request) -> ImpressionLog:
    impressions: ImpressionLog = request.app.state.impressions
    return impressions


async def get_metrics(request: Request) -> PrometheusMetrics:
    metrics: PrometheusMetrics = request.app.state.metrics
    return metrics


async def get_model(holder: Annotated[ModelHolder, Depends(get_holder)]) -> ServingModel:
    """The build at the start of the request: the request keeps it even if a swap happens."""
    if holder.model is None:
        raise HTTPException(503, detail=holder.last_error or "no build loaded yet")
    return holder.model


async def get_started(request: Request) -> float:
    """When the request arrived (set by the metrics middleware); the deadline counts from it."""
    started = request.scope.get(STARTED_KEY)
    return started if isinstance(started, float) else time.perf_counter()


def _key_matches(request: Request, given: str | None) -> bool:
    """True when no key is configured, or ``given`` is it; constant-time so the key can't be
    guessed from response times."""
    expected: bytes | None = request.app.state.api_key
    if expected is None:
        return True
    return given is not None and secrets.compare_digest(given.encode("latin-1"), expected)


async def require_api_key(
    request: Request, given: Annotated[str | None, Security(api_key_header)]
) -> None:
    """401 unless the X-API-Key header matches. Only attached to routes when a key is
    configured."""
    if not _key_matches(request, given):
        raise HTTPException(401, detail=f"missing or invalid {API_KEY_HEADER} header")


async def caller_is_trusted(request: Request) -> bool:
    """Whether to show a caller internals (/readyz details: Redis address, artifacts path):
    always without a key configured, else only with the right key. Read from the raw header,
    not declared as a security requirement: the probe itself stays open to everyone."""
    return _key_matches(request, request.headers.get(API_KEY_HEADER))


ServiceDep = Annotated[RecommendationService, Depends(get_service)]
ArmsDep = Annotated[Arms, Depends(get_arms)]
ImpressionsDep = Annotated[ImpressionLog, Depends(get_impressions)]
HolderDep = Annotated[ModelHolder, Depends(get_holder)]
MetricsDep = Annotated[PrometheusMetrics, Depends(get_metrics)]
ModelDep = Annotated[ServingModel, Depends(get_model)]
StartedDep = Annotated[float, Depends(get_started)]
TrustedDep = Annotated[bool, Depends(caller_is_trusted)]
