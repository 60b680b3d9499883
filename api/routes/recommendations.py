"""GET /recommendations/{user_id}: top k inside the deadline, with a fallback when needed."""

import time
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response
from starlette.convertors import PathConvertor, register_url_convertor

from api.deps import ModelDep, ServiceDep, StartedDep
from api.middleware import OUTCOME_KEY
from api.schemas import (
    MAX_DEVICE_LEN,
    MAX_ID_LEN,
    MAX_K,
    MAX_TS,
    ErrorBody,
    RecommendationResponse,
    render_recommendations,
)


class AnyTextConvertor(PathConvertor):
    """A path segment that may hold any text: "/" (sent as %2F, which the server decodes) like
    ``:path``, and also line breaks, which ``:path``'s ``.*`` does not match (a 404 for a user id
    with a newline). Registered once, under a name of our own."""

    regex = "(?s:.*)"


register_url_convertor("anytext", AnyTextConvertor())

router = APIRouter(tags=["recommendations"])


@router.get(
    "/recommendations/{user_id:anytext}",
    response_model=RecommendationResponse,
    responses={
        401: {"model": ErrorBody, "description": "API key configured and not given."},
        503: {"model": ErrorBody, "description": "No build loaded yet."},
    },
)
async def get_recommendations(
    request: Request,
    user_id: Annotated[
        str,
        Path(
            min_length=1,
            max_length=MAX_ID_LEN,
            description="User id as in the dataset (1-256 characters, any text, URL-encoded).",
            examples=["42"],
        ),
    ],
    service: ServiceDep,
    model: ModelDep,
    started: StartedDep,
    k: Annotated[
        int | None,
        Query(
            ge=1,
            le=MAX_K,
            description="How many items, 1-500; default serve.default_k (20).",
            examples=[20],
        ),
    ] = None,
    device: Annotated[
        str | None,
        Query(
            max_length=MAX_DEVICE_LEN,
            description="Device of the request (up to 32 characters); unknown devices are fine.",
            examples=["tv"],
        ),
    ] = None,
    ts: Annotated[
        int | None,
        Query(
            ge=0,
            le=MAX_TS,
            description="Request time in unix seconds (integer); default now.",
            examples=[1700000000],
        ),
    ] = None,
) -> Response:
    """Top-k items for a user, best first, answered within the deadline (100 ms by default).

    A user the build does not know is ranked from the events they posted (candidates anchored
    on those events); one with no such events gets popular items (`fallback: "cold-start"`),
    not a 404. If Redis is down or slow the answer comes from popular items held in memory
    (`"redis-unavailable"`); if ranking would not fit in the deadline, in stage-1 order
    (`"ranker-timeout"`).
    """
    answer = await service.recommend(
        model, user_id, k or service.cfg.default_k, device, ts, started
    )
    request.scope[OUTCOME_KEY] = answer.fallback or "ok"
    serialise_started = time.perf_counter()
    body = render_recommendations(user_id, answer, started)
    service.metrics.observe_stage("serialise", time.perf_counter() - serialise_started)
    return Response(body, media_type="application/json")
