"""Real-time events as stored in Redis (appended by ``POST /events``)."""

from dataclasses import dataclass
from typing import Any

import orjson

from recsys.feedback import DEFAULT_EVENT_TYPE, EventType, is_positive


@dataclass(frozen=True)
class WatchEvent:
    """One event of a user: a watch by default, or a click, skip or dislike (recsys.feedback).

    Stored as a small JSON object; ``type`` and ``request_id`` are written only when set, so a
    plain watch is stored exactly as before they existed, and older values read as watches."""

    item_id: str | int
    timestamp: int
    device: str
    completion: float | None = None
    type: EventType = DEFAULT_EVENT_TYPE
    request_id: str | None = None

    @property
    def positive(self) -> bool:
        return is_positive(self.type)

    def to_bytes(self) -> bytes:
        return orjson.dumps(self.as_dict())

    def as_dict(self) -> dict[str, object]:
        """The stored JSON object (short keys: a user's list holds up to 100 of them)."""
        record: dict[str, object] = {
            "i": self.item_id,
            "t": self.timestamp,
            "d": self.device,
            "c": self.completion,
        }
        if self.type != DEFAULT_EVENT_TYPE:
            record["y"] = self.type
        if self.request_id is not None:
            record["r"] = self.request_id
        return record

    @classmethod
    def from_bytes(cls, raw: bytes) -> "WatchEvent":
        return cls.from_dict(orjson.loads(raw))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "WatchEvent":
        return cls(
            item_id=d["i"],
            timestamp=int(d["t"]),
            device=d["d"],
            completion=d["c"],
            type=d.get("y", DEFAULT_EVENT_TYPE),
            request_id=d.get("r"),
        )
