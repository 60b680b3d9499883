"""Every column name the project uses, in one place (RecTools' ``Columns`` idea)."""

from typing import Final


class Columns:
    """Column names of the dataset contract and of derived tables."""

    # dataset contract: interactions
    user: Final = "user_id"
    item: Final = "item_id"
    timestamp: Final = "timestamp"
    weight: Final = "weight"
    device: Final = "device"
    completion: Final = "completion"
    event_type: Final = "type"  # recsys.feedback: watch (default), click, skip, dislike
    # dataset contract: items
    title: Final = "title"
    genres: Final = "genres"
    release_ts: Final = "release_ts"
    duration_min: Final = "duration_min"
    interactions_required: Final = (user, item, timestamp)
    interactions_optional: Final = (weight, device, completion, event_type)
    items_required: Final = (item,)
    items_optional: Final = (title, genres, release_ts, duration_min)


UNKNOWN_DEVICE: Final = "unknown"
