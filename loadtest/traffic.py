"""The traffic a load test sends: who asks, what they post, and in which context.

A ``TrafficPlan`` is drawn once from the dataset the build was made from and written as a small
JSON file next to the run; the locustfile only reads it, so it needs neither polars nor the data.
Real request logs are heavy-tailed: a few users come back far more often than the rest, and
their answers read the longest histories and event lists. So known users are drawn with
probability proportional to their number of events, items for ``POST /events`` in proportion to
their popularity, and devices and request times from the data's own mix and last day.

This module imports no locust and no numpy, so the mix is unit-tested without running a test.
"""

import json
import random
from bisect import bisect_right
from dataclasses import asdict, dataclass, field
from itertools import accumulate
from pathlib import Path
from typing import Generic, Literal, TypeVar
from urllib.parse import quote

RequestKind = Literal["known", "unknown", "event"]
T = TypeVar("T")
HOSTS_ENV = "RECSYS_LOADTEST_HOSTS"  # comma-separated base URLs: replicas of the API
PLAN_ENV = "RECSYS_LOADTEST_PLAN"  # path of the plan JSON, read by the locustfile
DEFAULT_K = 20
DAY_S = 86400

# Request names in locust's statistics: one row per kind, so the CSV separates them.
REQUEST_NAMES: dict[RequestKind, str] = {
    "known": "GET /recommendations [known]",
    "unknown": "GET /recommendations [unknown]",
    "event": "POST /events",
}


@dataclass(frozen=True)
class TrafficShares:
    """Shares of requests by kind; the issue's target mix is 80 / 10 / 10."""

    known: float = 0.8
    unknown: float = 0.1
    event: float = 0.1

    def __post_init__(self) -> None:
        values = (self.known, self.unknown, self.event)
        if any(v < 0 for v in values) or abs(sum(values) - 1.0) > 1e-9:
            raise ValueError(f"traffic shares must be >= 0 and sum to 1, got {values}")


@dataclass(frozen=True)
class TrafficPlan:
    """Everything the locustfile needs to imitate the data's users (ids as the API speaks them)."""

    users: list[str]
    user_weights: list[float]  # events per user: heavy users are asked for more often
    items: list[str | int]
    item_weights: list[float]  # events per item
    devices: list[str]
    device_weights: list[float]
    ts_start: int  # request times are drawn from [ts_start, ts_start + ts_span_s)
    ts_span_s: int = DAY_S
    shares: TrafficShares = field(default_factory=TrafficShares)
    k: int = DEFAULT_K

    def __post_init__(self) -> None:
        for name, values, weights in (
            ("users", self.users, self.user_weights),
            ("items", self.items, self.item_weights),
            ("devices", self.devices, self.device_weights),
        ):
            if not values or len(values) != len(weights):
                raise ValueError(f"traffic plan: {name} is empty or its weights do not match it")

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, path: Path) -> "TrafficPlan":
        raw = json.loads(Path(path).read_text())
        raw["shares"] = TrafficShares(**raw["shares"])
        return cls(**raw)


@dataclass(frozen=True)
class PlannedRequest:
    kind: RequestKind
    method: Literal["GET", "POST"]
    path: str
    body: dict[str, object] | None = None

    @property
    def name(self) -> str:
        return REQUEST_NAMES[self.kind]


class _Weighted(Generic[T]):
    """Draws from a fixed population in proportion to weights: a bisect on cumulative sums,
    O(log n) per draw, so 20k users cost nothing per request in locust."""

    def __init__(self, values: list[T], weights: list[float]) -> None:
        self.values = values
        self.cumulative = list(accumulate(weights))
        if not self.cumulative or self.cumulative[-1] <= 0:
            raise ValueError("weights must have a positive sum")

    def draw(self, rng: random.Random) -> T:
        x = rng.random() * self.cumulative[-1]
        return self.values[min(bisect_right(self.cumulative, x), len(self.values) - 1)]


class TrafficMix:
    """One simulated client's stream of requests, drawn independently from the plan."""

    def __init__(self, plan: TrafficPlan, rng: random.Random) -> None:
        self.plan = plan
        self.rng = rng
        self._users = _Weighted(plan.users, plan.user_weights)
        self._items = _Weighted(plan.items, plan.item_weights)
        self._devices = _Weighted(plan.devices, plan.device_weights)
        shares = plan.shares
        self._kinds: _Weighted[RequestKind] = _Weighted(
            ["known", "unknown", "event"], [shares.known, shares.unknown, shares.event]
        )

    def next_request(self) -> PlannedRequest:
        kind = self._kinds.draw(self.rng)
        if kind == "event":
            return self._event()
        user = self._users.draw(self.rng) if kind == "known" else self._unknown_user()
        query = f"k={self.plan.k}&device={quote(self._devices.draw(self.rng))}&ts={self._ts()}"
        return PlannedRequest(kind, "GET", f"/recommendations/{quote(user, safe='')}?{query}")

    def _event(self) -> PlannedRequest:
        body: dict[str, object] = {
            "user_id": self._users.draw(self.rng),
            "item_id": self._items.draw(self.rng),
            "timestamp": self._ts(),
            "device": self._devices.draw(self.rng),
            "completion": round(self.rng.random(), 2),
        }
        return PlannedRequest("event", "POST", "/events", body)

    def _unknown_user(self) -> str:
        # a fresh id each time: never in the build, like a first visit
        return f"loadtest-new-{self.rng.getrandbits(64):016x}"

    def _ts(self) -> int:
        return self.plan.ts_start + self.rng.randrange(self.plan.ts_span_s)
