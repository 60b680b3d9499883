"""Real-time watch events as stored in Redis (appended by ``POST /events``)."""

from dataclasses import dataclass

import orjson


@dataclass(frozen=True)
class WatchEvent:
    item_id: str | int
    timestamp: int
    device: str
    completion: float | None = None

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {"i": self.item_id, "t": self.timestamp, "d": self.device, "c": self.completion}
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> "WatchEvent":
        d = orjson.loads(raw)
        return cls(item_id=d["i"], timestamp=int(d["t"]), device=d["d"], completion=d["c"])
