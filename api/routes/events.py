import time

from fastapi import APIRouter, HTTPException
from redis.exceptions import RedisError

from api.deps import ServiceDep
from api.schemas import EventAccepted, EventIn
from recsys.columns import UNKNOWN_DEVICE
from recsys.store.events import WatchEvent

router = APIRouter()


@router.post("/events", response_model=EventAccepted, status_code=202)
async def post_event(event: EventIn, service: ServiceDep) -> EventAccepted:
    """Record a watch: the item leaves the user's recommendations from the next request on."""
    watch = WatchEvent(
        item_id=event.item_id,
        timestamp=int(time.time()) if event.timestamp is None else event.timestamp,
        device=event.device or UNKNOWN_DEVICE,
        completion=event.completion,
    )
    try:
        await service.record_event(event.user_id, watch)
    except (RedisError, TimeoutError, OSError) as e:
        raise HTTPException(503, detail="event store unavailable, retry later") from e
    return EventAccepted()
