"""HTTP request and response bodies: the API's contract, documented field by field.

The response models document the OpenAPI schema; the hot path renders the same shape straight
to JSON bytes with orjson (``render_recommendations``), skipping a pydantic object per item.
A contract test checks that what is rendered validates against ``RecommendationResponse``.
"""

import time
from typing import Annotated, Literal

import numpy as np
import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StringConstraints,
)

from api.prometheus import FallbackReason
from api.service import Answer

MAX_ID_LEN = 256
MAX_DEVICE_LEN = 32
MAX_K = 500
# Unix seconds as the codec stores them (uint32: until 2106).
MAX_TS = 2**32 - 1


def _utf8(text: str) -> str:
    """JSON may carry lone surrogates (``"\\ud800"``), which no Redis key or log line can hold."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (no lone surrogate code points)") from None
    return text


# Strings of a bounded length that can be stored (valid Unicode).
IdText = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_ID_LEN), AfterValidator(_utf8)
]
DeviceText = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_DEVICE_LEN), AfterValidator(_utf8)
]
ItemId = Annotated[
    IdText | Annotated[StrictInt, Field(ge=-(2**63), lt=2**63)],
    Field(
        description=(
            "Item id as in the dataset: a string (1-256 characters) or a 64-bit integer. "
            "Ids of items outside the current build are accepted and kept in the history."
        ),
        examples=[318, "tt0111161"],
    ),
]


class ScoredItem(BaseModel):
    item_id: str | int = Field(
        description="The item id as given in the dataset (string or integer).", examples=[318]
    )
    score: float = Field(
        description=(
            "Higher is better. The ranker's score when fallback is null; the stage-1 score in a "
            "ranker-timeout; a log popularity in cold-start and redis-unavailable answers."
        ),
        examples=[1.734215],
    )


class RecommendationResponse(BaseModel):
    user_id: str = Field(description="The user id from the path.", examples=["42"])
    items: list[ScoredItem] = Field(
        description=(
            "At most k items, best first; never an item the user has watched, in the training "
            "data or through POST /events."
        ),
        examples=[[{"item_id": 318, "score": 1.734215}, {"item_id": 296, "score": 1.52}]],
    )
    model_version: str = Field(
        description="The build that answered (changes when a new build is swapped in).",
        examples=["20261125T101530Z-3fa2c1"],
    )
    fallback: FallbackReason | None = Field(
        description=(
            "null when the two-stage ranker answered (a user the build does not know is ranked "
            "from the events they posted); otherwise why not. cold-start: the build does not "
            "know the user and none of their events names an item it knows (popular items "
            "minus their recent events). "
            "redis-unavailable: Redis failed or was too slow (popular items held in memory). "
            "ranker-timeout: ranking would not fit in the deadline (stage-1 order)."
        ),
        examples=[None, "cold-start"],
    )
    latency_ms: float = Field(
        description="Time from the request's arrival to this answer, in milliseconds.",
        examples=[6.412],
    )


def render_recommendations(user_id: str, answer: Answer, started: float) -> bytes:
    """The ``RecommendationResponse`` JSON, built with orjson from the answer's arrays."""
    ids = answer.model.items.ids_list
    scores = np.round(np.asarray(answer.ranked.scores, dtype=np.float64), 6).tolist()
    items = [
        {"item_id": ids[i], "score": s}
        for i, s in zip(answer.ranked.item_idx.tolist(), scores, strict=True)
    ]
    return orjson.dumps(
        {
            "user_id": user_id,
            "items": items,
            "model_version": answer.model.version,
            "fallback": answer.fallback,
            "latency_ms": round((time.perf_counter() - started) * 1000, 3),
        }
    )


class EventIn(BaseModel):
    """One watch. Strict types: a number in a string, a float timestamp or a boolean is an error
    rather than a guess."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "user_id": "42",
                    "item_id": 318,
                    "timestamp": 1700000000,
                    "device": "tv",
                    "completion": 0.93,
                }
            ]
        },
    )

    user_id: IdText = Field(
        description="Who watched: the user id as in the dataset, 1-256 characters.",
        examples=["42"],
    )
    item_id: ItemId
    timestamp: StrictInt | None = Field(
        None,
        ge=0,
        le=MAX_TS,
        description="When, in unix seconds (UTC, integer); default: the time of arrival.",
        examples=[1700000000],
    )
    device: DeviceText | None = Field(
        None,
        description="Device the item was watched on, up to 32 characters.",
        examples=["tv"],
    )
    completion: StrictFloat | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="Share of the item watched, from 0 to 1.",
        examples=[0.93],
    )


class EventAccepted(BaseModel):
    status: Literal["accepted"] = Field(
        "accepted",
        description="The event is stored; the user's next recommendation accounts for it.",
        examples=["accepted"],
    )


class Health(BaseModel):
    status: Literal["ok", "unavailable"] = Field(
        description="ok, or unavailable when /readyz fails.", examples=["ok"]
    )
    model_version: str | None = Field(
        None,
        description="The build this worker serves; null before the first build is loaded, and "
        "on /readyz for callers without the API key when one is configured.",
        examples=["20261125T101530Z-3fa2c1"],
    )
    detail: str | None = Field(
        None,
        description="What is wrong, when something is (Redis down, no build, the served build's "
        "keys gone, a build that failed to load while an older one keeps serving); on /readyz "
        "only for callers with the API key when one is configured.",
        examples=[None, "redis: Error 111 connecting to 127.0.0.1:6379. Connection refused."],
    )


class ErrorBody(BaseModel):
    detail: str = Field(
        description="What went wrong, in one line.",
        examples=["missing or invalid X-API-Key header"],
    )
