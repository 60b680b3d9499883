"""HTTP request and response bodies: the API's contract, documented field by field."""

from pydantic import BaseModel, ConfigDict, Field

MAX_ID_LEN = 256
MAX_DEVICE_LEN = 32


class ScoredItem(BaseModel):
    item_id: str | int = Field(description="The item id as given in the dataset.", examples=[318])
    score: float = Field(description="Ranker score (or stage-1 / popularity score in a fallback).")


class RecommendationResponse(BaseModel):
    user_id: str = Field(description="The user id from the path.", examples=["42"])
    items: list[ScoredItem] = Field(description="Best first; never an item the user has watched.")
    model_version: str | None = Field(
        description="Build that answered.", examples=["20261125T101530Z-3fa2c1"]
    )
    fallback: str | None = Field(
        description=(
            "null when the two-stage ranker answered; otherwise why not: cold-start (unknown "
            "user), redis-unavailable, ranker-timeout."
        ),
        examples=[None, "cold-start"],
    )
    latency_ms: float = Field(description="Time spent in the service for this answer.")


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: str = Field(min_length=1, max_length=MAX_ID_LEN, examples=["42"])
    item_id: str | int = Field(description="Item watched.", examples=[318])
    timestamp: int | None = Field(
        None, ge=0, lt=2**32, description="Unix seconds (UTC); default now.", examples=[1700000000]
    )
    device: str | None = Field(None, max_length=MAX_DEVICE_LEN, examples=["tv"])
    completion: float | None = Field(None, ge=0.0, le=1.0, description="Share watched, 0..1.")


class EventAccepted(BaseModel):
    status: str = Field("accepted", examples=["accepted"])


class Health(BaseModel):
    status: str = Field(examples=["ok"])
    model_version: str | None = None
    detail: str | None = None
