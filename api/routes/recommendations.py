"""GET /recommendations/{user_id}: top k inside the deadline, with a fallback when needed."""

import secrets
import time
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.convertors import PathConvertor, register_url_convertor

from api.deps import ArmsDep, ImpressionsDep, ServiceDep, StartedDep
from api.impression_log import impression_of
from api.middleware import OUTCOME_KEY
from api.schemas import (
    MAX_DEVICE_LEN,
    MAX_EXCLUDE,
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


def parse_exclude(text: str | None) -> list[str]:
    """``exclude=ID,ID``: the ids, blanks dropped; more than ``MAX_EXCLUDE`` or an id longer
    than an id may be is a 422 in the shape of every other validation error."""
    if not text:
        return []
    ids = [part.strip() for part in text.split(",") if part.strip()]
    problem = None
    if len(ids) > MAX_EXCLUDE:
        problem = f"at most {MAX_EXCLUDE} item ids may be excluded, got {len(ids)}"
    elif any(len(i) > MAX_ID_LEN for i in ids):
        problem = f"an excluded item id is longer than {MAX_ID_LEN} characters"
    if problem is not None:
        raise RequestValidationError(
            [{"type": "value_error", "loc": ("query", "exclude"), "msg": problem}]
        )
    return ids


def new_request_id() -> str:
    """64 random bits as 16 hex digits: unique enough to join a day of impressions to events."""
    return secrets.token_hex(8)


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
    arms: ArmsDep,
    impressions: ImpressionsDep,
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
    exclude: Annotated[
        str | None,
        Query(
            description=(
                f"Item ids to leave out of the answer, comma-separated (at most {MAX_EXCLUDE})."
            ),
            examples=["318,296"],
        ),
    ] = None,
    explain: Annotated[
        bool,
        Query(
            description=(
                "Add an explanation to each item: the stage-1 sources that proposed it, its "
                "stage-1 score and rank, the ranker's score and its top feature contributions."
            ),
            examples=[True],
        ),
    ] = False,
) -> Response:
    """Top-k items for a user, best first, answered within the deadline (100 ms by default).

    A user the build does not know is ranked from the positive events they posted (candidates
    anchored on those events); one with no such events gets popular items (`fallback:
    "cold-start"`), not a 404. If Redis is down or slow the answer comes from popular items held
    in memory (`"redis-unavailable"`); if ranking would not fit in the deadline, in stage-1 order
    (`"ranker-timeout"`). Every answer is logged as an impression under its `request_id`, without
    waiting for the log.
    """
    excluded = parse_exclude(exclude)
    arm, model = arms.choose(user_id)
    if model is None:
        raise HTTPException(503, detail=arms.champion.last_error or "no build loaded yet")
    answer = await service.recommend(
        model, user_id, k or service.cfg.default_k, device, ts, started, excluded, explain
    )
    request.scope[OUTCOME_KEY] = answer.fallback or "ok"
    serialise_started = time.perf_counter()
    request_id = new_request_id()
    body = render_recommendations(user_id, answer, started, request_id, arm)
    service.metrics.observe_stage("serialise", time.perf_counter() - serialise_started)
    service.metrics.observe_answer(
        arm, model.version, answer.fallback, answer.ranked.item_idx, model.items.pop_percentile
    )
    impressions.record(impression_of(answer, request_id, user_id, arm, ts, device))
    return Response(body, media_type="application/json")
