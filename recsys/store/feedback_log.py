"""The feedback log: every answer shown (an *impression*) and every event posted, in Redis
streams, for the online report, the A/B report and the event export.

Each log is ``log.shards`` streams, a user's entries always in the shard ``Keys.shard_of``
picks, so one user's impressions and events each keep their order, and on a Redis Cluster the
writes spread over as many slots (one stream would be one hot key on one node). Streams are
capped with ``XADD ... MAXLEN ~`` (Redis docs, "XADD": approximate trimming removes whole
macro nodes, far cheaper than exact trimming), so the log holds the newest
``max_impressions`` / ``max_events`` entries and never grows past them.

An entry is one field, ``j``, holding a small JSON object. Entries carry ``at_ms``, the server's
clock when the answer was made or the event arrived: the stream's own id is the time of the
write, which for impressions comes up to ``log.flush_ms`` later (they are written in batches).
"""

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from recsys.feedback import EventType
from recsys.store.events import WatchEvent
from recsys.store.keys import Keys

FIELD = b"j"
_READ_BATCH = 5000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class Impression:
    """One answer as the user was shown it: items in order (position = index) with scores."""

    request_id: str
    user_id: str
    build: str  # the build version that answered
    arm: str  # the build line (A/B arm) it answered for
    items: list[str | int]
    scores: list[float]
    fallback: str | None
    ts: int  # the request's time context (unix s): what the ranker was told
    device: str | None
    at_ms: int  # server clock when the answer was made

    def to_bytes(self) -> bytes:
        return orjson.dumps(
            {
                "r": self.request_id,
                "u": self.user_id,
                "b": self.build,
                "a": self.arm,
                "i": self.items,
                "s": self.scores,
                "f": self.fallback,
                "t": self.ts,
                "d": self.device,
                "m": self.at_ms,
            }
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> "Impression":
        d = orjson.loads(raw)
        return cls(
            request_id=d["r"],
            user_id=d["u"],
            build=d["b"],
            arm=d["a"],
            items=d["i"],
            scores=d["s"],
            fallback=d["f"],
            ts=int(d["t"]),
            device=d["d"],
            at_ms=int(d["m"]),
        )


@dataclass(frozen=True)
class LoggedEvent:
    """An event as ``POST /events`` stored it, with the user and the time it arrived."""

    user_id: str
    event: WatchEvent
    at_ms: int

    @property
    def type(self) -> EventType:
        return self.event.type

    def to_bytes(self) -> bytes:
        """The event as a user's list stores it, plus the user (``u``) and arrival (``m``)."""
        return orjson.dumps({**self.event.as_dict(), "u": self.user_id, "m": self.at_ms})

    @classmethod
    def from_bytes(cls, raw: bytes) -> "LoggedEvent":
        d = orjson.loads(raw)
        return cls(d["u"], WatchEvent.from_dict(d), int(d["m"]))


def per_shard_cap(total: int, shards: int) -> int:
    return max(1, -(-total // shards))


def queue_impressions(
    pipe: Any, keys: Keys, shards: int, max_total: int, impressions: Sequence[Impression]
) -> None:
    """XADD each impression to its user's shard, capped at ~``max_total`` over all shards."""
    cap = per_shard_cap(max_total, shards)
    for imp in impressions:
        key = keys.impressions(keys.shard_of(imp.user_id, shards))
        pipe.xadd(key, {FIELD: imp.to_bytes()}, maxlen=cap, approximate=True)


def queue_logged_event(
    pipe: Any, keys: Keys, shards: int, max_total: int, logged: LoggedEvent
) -> None:
    key = keys.event_log(keys.shard_of(logged.user_id, shards))
    pipe.xadd(
        key, {FIELD: logged.to_bytes()}, maxlen=per_shard_cap(max_total, shards), approximate=True
    )


async def log_event_async(
    client: Any, keys: Keys, shards: int, max_total: int, logged: LoggedEvent
) -> None:
    """XADD one event to its user's shard of the event log."""
    key = keys.event_log(keys.shard_of(logged.user_id, shards))
    await client.xadd(
        key, {FIELD: logged.to_bytes()}, maxlen=per_shard_cap(max_total, shards), approximate=True
    )


def _read_stream(
    client: Any, key: str, since_ms: int | None, until_ms: int | None
) -> Iterator[bytes]:
    """Every entry's payload with a stream id in [since_ms, until_ms], oldest first, in
    batches (XRANGE with an exclusive start after the first batch)."""
    start = "-" if since_ms is None else str(since_ms)
    end = "+" if until_ms is None else str(until_ms)
    while True:
        batch = client.xrange(key, min=start, max=end, count=_READ_BATCH)
        for _, fields in batch:
            payload = fields.get(FIELD)
            if payload is not None:
                yield payload
        if len(batch) < _READ_BATCH:
            return
        last_id = batch[-1][0]
        start = "(" + (last_id.decode() if isinstance(last_id, bytes) else str(last_id))


# Entries reach their stream up to a flush interval (impressions) or a write's retries (events)
# after ``at_ms``: read the streams this much beyond the window, then filter on ``at_ms``.
READ_SLACK_MS = 5_000

_Entry = TypeVar("_Entry", "Impression", "LoggedEvent")


def _read_log(
    client: Any,
    stream_of: Callable[[int], str],
    decode: Callable[[bytes], _Entry],
    shards: int,
    since_ms: int | None,
    until_ms: int | None,
) -> list[_Entry]:
    """Every entry of a sharded log with ``at_ms`` in [since_ms, until_ms], oldest first."""
    lo = None if since_ms is None else max(0, since_ms - READ_SLACK_MS)
    hi = None if until_ms is None else until_ms + READ_SLACK_MS
    out = [
        decode(raw)
        for shard in range(shards)
        for raw in _read_stream(client, stream_of(shard), lo, hi)
    ]
    out = [e for e in out if _within(e.at_ms, since_ms, until_ms)]
    out.sort(key=lambda e: e.at_ms)
    return out


def read_impressions(
    client: Any, keys: Keys, shards: int, since_ms: int | None = None, until_ms: int | None = None
) -> list[Impression]:
    """Every logged impression with ``at_ms`` in [since_ms, until_ms], oldest first."""
    return _read_log(client, keys.impressions, Impression.from_bytes, shards, since_ms, until_ms)


def read_logged_events(
    client: Any, keys: Keys, shards: int, since_ms: int | None = None, until_ms: int | None = None
) -> list[LoggedEvent]:
    """Every logged event with ``at_ms`` in [since_ms, until_ms], oldest first."""
    return _read_log(client, keys.event_log, LoggedEvent.from_bytes, shards, since_ms, until_ms)


def _within(at_ms: int, since_ms: int | None, until_ms: int | None) -> bool:
    return (since_ms is None or at_ms >= since_ms) and (until_ms is None or at_ms <= until_ms)
