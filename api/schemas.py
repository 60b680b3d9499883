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
from recsys.explain import ItemExplanation
from recsys.feedback import DEFAULT_EVENT_TYPE, EventType

MAX_ID_LEN = 256
MAX_DEVICE_LEN = 32
MAX_K = 500
MAX_EXCLUDE = 100  # item ids one request may leave out
MAX_REQUEST_ID_LEN = 64
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
RequestIdText = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_REQUEST_ID_LEN), AfterValidator(_utf8)
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


class Contribution(BaseModel):
    feature: str = Field(
        description="A ranker feature (docs/API.md lists them).", examples=["sim_last_item"]
    )
    value: float | None = Field(
        description="Its value for this item; null when missing.", examples=[0.81]
    )
    contribution: float = Field(
        description="How much it moved the ranker's score (a SHAP value: with expected_value, "
        "the contributions of all features sum to the score).",
        examples=[0.42],
    )


class Explanation(BaseModel):
    sources: list[str] = Field(
        description="Stage-1 candidate sources that proposed the item, in merge-priority order; "
        "empty for the popular items of a cold-start or redis-unavailable answer.",
        examples=[["als", "item_factors"]],
    )
    stage1_score: float | None = Field(
        description="Its stage-1 score (ALS inner product).", examples=[4.21]
    )
    stage1_rank: int | None = Field(
        description="Its position in stage-1 order among the user's candidates, 0 = first.",
        examples=[3],
    )
    ranker_score: float | None = Field(
        description="The ranker's score; null when the ranker did not order the answer.",
        examples=[1.734215],
    )
    contributions: list[Contribution] = Field(
        description="The features that moved the ranker's score most, largest first.",
        examples=[[{"feature": "sim_last_item", "value": 0.81, "contribution": 0.42}]],
    )
    expected_value: float | None = Field(
        description="The ranker's mean score, where the contributions start from.",
        examples=[-0.23],
    )


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
    explanation: Explanation | None = Field(
        None,
        description="Why this item is here: only with explain=true.",
        examples=[
            {
                "sources": ["als", "item_factors"],
                "stage1_score": 4.21,
                "stage1_rank": 3,
                "ranker_score": 1.734215,
                "contributions": [
                    {"feature": "sim_last_item", "value": 0.81, "contribution": 0.42}
                ],
                "expected_value": -0.23,
            }
        ],
    )


class RecommendationResponse(BaseModel):
    user_id: str = Field(description="The user id from the path.", examples=["42"])
    items: list[ScoredItem] = Field(
        description=(
            "At most k items, best first; never an item the user has watched, clicked, skipped "
            "or disliked (in the training data or through POST /events), nor one in exclude."
        ),
        examples=[[{"item_id": 318, "score": 1.734215}, {"item_id": 296, "score": 1.52}]],
    )
    model_version: str = Field(
        description="The build that answered (changes when a new build is swapped in).",
        examples=["20261125T101530Z-3fa2c1"],
    )
    arm: str = Field(
        description=(
            "The build line that answered: the user's A/B arm (serve.ab), champion without an "
            "experiment, or when the user's arm has no build loaded."
        ),
        examples=["champion"],
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
    request_id: str = Field(
        description=(
            "Names this answer in the impression log; send it back with POST /events for the "
            "items it showed, so online metrics attribute the event to this answer."
        ),
        examples=["5f2c9a0e7d1b4c3a"],
    )
    latency_ms: float = Field(
        description="Time from the request's arrival to this answer, in milliseconds.",
        examples=[6.412],
    )


def _round(value: float | None) -> float | None:
    return None if value is None or value != value else round(value, 6)


def _explanation(e: ItemExplanation) -> dict[str, object]:
    return {
        "sources": e.sources,
        "stage1_score": _round(e.stage1_score),
        "stage1_rank": e.stage1_rank,
        "ranker_score": _round(e.ranker_score),
        "contributions": [
            {"feature": c.feature, "value": _round(c.value), "contribution": _round(c.contribution)}
            for c in e.contributions
        ],
        "expected_value": _round(e.expected_value),
    }


def render_recommendations(
    user_id: str, answer: Answer, started: float, request_id: str, arm: str
) -> bytes:
    """The ``RecommendationResponse`` JSON, built with orjson from the answer's arrays."""
    ids = answer.model.items.ids_list
    scores = np.round(np.asarray(answer.ranked.scores, dtype=np.float64), 6).tolist()
    items: list[dict[str, object]] = [
        {"item_id": ids[i], "score": s}
        for i, s in zip(answer.ranked.item_idx.tolist(), scores, strict=True)
    ]
    if answer.explanations is not None:
        for item, why in zip(items, answer.explanations, strict=True):
            item["explanation"] = _explanation(why)
    return orjson.dumps(
        {
            "user_id": user_id,
            "items": items,
            "model_version": answer.model.version,
            "arm": arm,
            "fallback": answer.fallback,
            "request_id": request_id,
            "latency_ms": round((time.perf_counter() - started) * 1000, 3),
        }
    )


class EventIn(BaseModel):
    """One event: a watch unless ``type`` says otherwise. Strict types: a number in a string, a
    float timestamp or a boolean is an error rather than a guess."""

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
                    "type": "watch",
                    "request_id": "5f2c9a0e7d1b4c3a",
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
    type: EventType = Field(
        DEFAULT_EVENT_TYPE,
        description=(
            "watch (default) or click: the user liked it, it joins their history; skip or "
            "dislike: not this. Whichever, the item never comes back to this user."
        ),
        examples=["watch", "dislike"],
    )
    request_id: RequestIdText | None = Field(
        None,
        description=(
            "The request_id of the answer the item was shown in, if it came from one: online "
            "metrics attribute the event to that answer."
        ),
        examples=["5f2c9a0e7d1b4c3a"],
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
