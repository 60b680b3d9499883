"""Simulated users with known tastes, answering real recommendations: proof that the loop from
answers to events to online metrics works, and that it can tell a good build from a bad one.

The users are those of a synthetic log (``recsys.data.synth``), whose tastes are known
(``SyntheticPopulation``). Each simulated request asks the API for ``k`` items, in a context
(time, device) the user's own mix gives, and reacts the way the cascade model of clicks has it
(Craswell et al., "An experimental comparison of click position-bias models", WSDM 2008): the
user looks down the list, examines position ``p`` with probability ``1 / log2(p + 2)``, and
watches an examined item with probability ``sigmoid(SHARPNESS x (utility - threshold))``,
where the threshold is the user's own ``taste_quantile`` of utility over the catalogue; the
first watch ends the look. A user who watches nothing reacts to the first item: a dislike
when it is far below their taste (``dislike_margin``), else a skip. Items the user has already
watched are never watched again (nobody in the log rewatches).

Each event names the answer's ``request_id`` (all but ``anonymous_share`` of them, which test
the report's attribution by time), and the simulator keeps its own count of what it showed and
what it did (``SimulationCounts``), to check the online report against.
"""

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import numpy as np

from recsys.columns import Columns
from recsys.data.dataset import Dataset
from recsys.data.synth import DEVICES, SyntheticPopulation

SHARPNESS: Final = 2.0
HOUR_S: Final = 3600


@dataclass(frozen=True)
class ResponseModel:
    taste_quantile: float = 0.95
    """A user's watch threshold: this quantile of their utility over released items."""
    dislike_margin: float = 2.0
    """Nothing watched and the first item this far below the threshold: a dislike."""
    anonymous_share: float = 0.2
    """Events sent without ``request_id`` (attributed by time instead)."""


@dataclass
class ArmCounts:
    answers: int = 0
    shown: int = 0
    shown_at_10: int = 0
    watches: int = 0
    watches_at_10: int = 0
    skips: int = 0
    dislikes: int = 0

    @property
    def ctr_at_10(self) -> float:
        return self.watches_at_10 / self.shown_at_10 if self.shown_at_10 else float("nan")


@dataclass
class SimulationCounts:
    """What the simulator showed and did, by the arm each answer says it came from."""

    arms: dict[str, ArmCounts] = field(default_factory=dict)
    failed: int = 0  # requests that did not get a 200 / 202

    def arm(self, name: str) -> ArmCounts:
        return self.arms.setdefault(name, ArmCounts())


def popularity_only(dataset: Dataset, seed: int = 0) -> Dataset:
    """A deliberately weakened training log for an A/B: the same events, each given to a random
    user. A build of it learns what is popular and nothing about who likes what."""
    inter = dataset.interactions
    users = inter[Columns.user].shuffle(seed=seed)
    return Dataset(inter.with_columns(users.alias(Columns.user)), dataset.items)


def watched_items(dataset: Dataset) -> dict[int, list[int]]:
    """What each user of a synthetic log has watched (never watched again)."""
    grouped = dataset.interactions.group_by(Columns.user).agg(Columns.item)
    return dict(zip(grouped[Columns.user].to_list(), grouped[Columns.item].to_list(), strict=True))


class Transport(Protocol):
    """How the simulator reaches the API (in-process test client, or HTTP)."""

    def get(self, path: str, params: Mapping[str, str | int]) -> tuple[int, Any]: ...

    def post(self, path: str, body: Mapping[str, Any]) -> int: ...


@dataclass(frozen=True)
class Reaction:
    item: int | None  # the item reacted to (None: an empty answer)
    position: int
    type: str  # watch, skip or dislike
    completion: float | None


class Population:
    """The simulated users: tastes, thresholds, what each has watched."""

    def __init__(
        self,
        truth: SyntheticPopulation,
        watched: Mapping[int, Iterable[int]],
        start_ts: int,
        response: ResponseModel,
        seed: int = 0,
    ) -> None:
        self.truth = truth
        self.response = response
        self.rng = np.random.default_rng(seed)
        self.watched: dict[int, set[int]] = {u: set(items) for u, items in watched.items()}
        self.threshold = self._thresholds(start_ts)

    def _thresholds(self, ts: int) -> np.ndarray:
        """Each user's taste quantile of utility over every item released by ``ts``, on their
        most used device in the evening (a fixed yardstick per user)."""
        users = np.arange(self.truth.n_users, dtype=np.int64)
        items = np.broadcast_to(np.arange(self.truth.n_items), (len(users), self.truth.n_items))
        evening = (ts // 86400) * 86400 + 20 * HOUR_S
        device = np.argmax(self.truth.device_logmix, axis=1).astype(np.int64)
        u = self.truth.utility(users, items, np.full(len(users), evening), device)
        u = np.where(np.isfinite(u), u, np.nan)
        return np.nanquantile(u, self.response.taste_quantile, axis=1)

    def react(self, user: int, items: list[int], ts: int, device: int) -> Reaction:
        """What ``user`` does with an answer of ``items`` (best first)."""
        if not items:
            return Reaction(None, 0, "none", None)
        idx = np.array(items, dtype=np.int64)
        u = self.truth.utility(np.array([user]), idx[None, :], np.array([ts]), np.array([device]))[
            0
        ]
        seen = self.watched.get(user, set())
        p_watch = 1.0 / (1.0 + np.exp(-SHARPNESS * (u - self.threshold[user])))
        p_watch = np.where([i in seen for i in items], 0.0, p_watch)
        examined = self.rng.random(len(items)) < 1.0 / np.log2(np.arange(len(items)) + 2.0)
        watches = np.flatnonzero(examined & (self.rng.random(len(items)) < p_watch))
        if len(watches):
            p = int(watches[0])
            completion = self.truth.completion(
                self.rng, np.array([user]), idx[p : p + 1], np.array([device])
            )[0]
            self.watched.setdefault(user, set()).add(items[p])
            return Reaction(items[p], p, "watch", round(float(completion), 4))
        below = self.threshold[user] - u[0]
        kind = "dislike" if below > self.response.dislike_margin else "skip"
        return Reaction(items[0], 0, kind, None)


def simulate(
    population: Population,
    transport: Transport,
    users: list[int],
    requests_per_user: int,
    k: int,
    start_ts: int,
    item_id: Callable[[Any], int] = int,
    progress: Callable[[int], None] | None = None,
) -> SimulationCounts:
    """Every user asks ``requests_per_user`` times (in rounds, users shuffled each round),
    reacts, and posts the reaction; returns the simulator's own count by arm."""
    counts = SimulationCounts()
    rng = population.rng
    order = np.array(users)
    for step in range(requests_per_user):
        rng.shuffle(order)
        for user in order.tolist():
            ts = start_ts + step * HOUR_S + int(rng.integers(0, HOUR_S))
            device = int(population.truth.devices(rng, np.array([user]))[0])
            status, body = transport.get(
                f"/recommendations/{user}", {"k": k, "device": DEVICES[device], "ts": ts}
            )
            if status != 200:
                counts.failed += 1
                continue
            shown = [item_id(i["item_id"]) for i in body["items"]]
            arm = counts.arm(body["arm"])
            arm.answers += 1
            arm.shown += len(shown)
            arm.shown_at_10 += min(len(shown), 10)
            reaction = population.react(user, shown, ts, device)
            if reaction.item is None:
                continue
            if reaction.type == "watch":
                arm.watches += 1
                arm.watches_at_10 += reaction.position < 10
            else:
                setattr(arm, reaction.type + "s", getattr(arm, reaction.type + "s") + 1)
            event: dict[str, Any] = {
                "user_id": str(user),
                "item_id": reaction.item,
                "timestamp": ts + 60,
                "device": DEVICES[device],
                "type": reaction.type,
            }
            if reaction.completion is not None:
                event["completion"] = reaction.completion
            if rng.random() >= population.response.anonymous_share:
                event["request_id"] = body["request_id"]
            if transport.post("/events", event) != 202:
                counts.failed += 1
        if progress is not None:
            progress(step + 1)
    return counts
