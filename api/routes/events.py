"""POST /events: a watch (or click, skip, dislike), stored at once so the next answer for that
user accounts for it."""

import time

from fastapi import APIRouter, HTTPException

from api.deps import ArmsDep, ServiceDep
from api.schemas import ErrorBody, EventAccepted, EventIn
from api.service import REDIS_ERRORS
from recsys.columns import UNKNOWN_DEVICE
from recsys.store.events import WatchEvent

router = APIRouter(tags=["events"])


@router.post(
    "/events",
    response_model=EventAccepted,
    status_code=202,
    responses={
        400: {"model": ErrorBody, "description": "Body is not JSON text (e.g. not UTF-8)."},
        401: {"model": ErrorBody, "description": "API key configured and missing or wrong."},
        413: {"model": ErrorBody, "description": "Body larger than max_body_bytes (4 KiB)."},
        503: {"model": ErrorBody, "description": "Redis unavailable: retry later."},
    },
)
async def post_event(event: EventIn, service: ServiceDep, arms: ArmsDep) -> EventAccepted:
    """Record an event: a watch, or a click, skip or dislike (`type`). Whichever it is, the item
    never comes back in this user's recommendations; watches and clicks also join the user's
    history, and the next build learns from all of them (skips and dislikes as negatives).

    The event joins the user's capped list of recent events in Redis (newest
    `max_events_per_user`), which every recommendation request reads, and the event log that
    online reports and `recsys events export` read. `request_id` names the answer the item was
    shown in. Delivery is at least once: after a 503 the event may or may not be stored, and
    retrying it is harmless.
    """
    stored = WatchEvent(
        item_id=event.item_id,
        timestamp=int(time.time()) if event.timestamp is None else event.timestamp,
        device=event.device or UNKNOWN_DEVICE,
        completion=event.completion,
        type=event.type,
        request_id=event.request_id,
    )
    try:
        await service.record_event(event.user_id, stored)
    except REDIS_ERRORS as e:
        raise HTTPException(503, detail="event store (Redis) unavailable; retry later") from e
    arm, _ = arms.choose(event.user_id)
    service.metrics.count_event(arm, event.type, event.request_id is not None, event.completion)
    return EventAccepted()
