import time
from typing import Annotated

from fastapi import APIRouter, Path, Query

from api.deps import ModelDep, ServiceDep
from api.schemas import MAX_DEVICE_LEN, MAX_ID_LEN, RecommendationResponse, ScoredItem

router = APIRouter()


@router.get("/recommendations/{user_id}", response_model=RecommendationResponse)
async def get_recommendations(
    user_id: Annotated[str, Path(min_length=1, max_length=MAX_ID_LEN, description="User id.")],
    service: ServiceDep,
    model: ModelDep,
    k: Annotated[int, Query(ge=1, le=500, description="How many items.")] = 20,
    device: Annotated[
        str | None, Query(max_length=MAX_DEVICE_LEN, description="Device of the request.")
    ] = None,
    ts: Annotated[
        int | None, Query(ge=0, lt=2**32, description="Request time, unix seconds; default now.")
    ] = None,
) -> RecommendationResponse:
    """Top-k for a user, inside the deadline; unknown users get a cold-start answer."""
    started = time.perf_counter()
    answer = await service.recommend(model, user_id, k, device, ts, started)
    return RecommendationResponse(
        user_id=user_id,
        items=[ScoredItem(item_id=i, score=s) for i, s in answer.items],
        model_version=answer.model_version,
        fallback=answer.fallback,
        latency_ms=round((time.perf_counter() - started) * 1000, 3),
    )
