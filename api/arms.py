"""The build lines one worker serves, and which of them answers each user (A/B between builds).

Without an experiment (``serve.ab`` empty) there is one line, the champion, and every answer is
what it was before lines had names. With one, each arm is a build line with a holder of its
own: it polls the line's pointer and hot-swaps that line's new builds on its own, exactly as the
champion's holder does (``api.model_holder``). Two arms that point at the same build (after
``recsys ab promote``) share one copy of it in memory.

A user whose arm has no build loaded (its line was never built, or its build failed to load) is
answered by the champion, and the answer says ``arm: champion``: the arm of an answer is always
the line that made it, so online metrics never credit one build with another's answers.
"""

import asyncio
from pathlib import Path

from api.model_holder import ModelHolder, SwapListener
from api.prometheus import PrometheusMetrics
from api.service import REDIS_ERRORS
from recsys.experiment import DEFAULT_BUILD_NAME, TrafficSplit
from recsys.serving import ServingModel
from recsys.store.connect import AsyncStore
from recsys.store.keys import Keys


class Arms:
    def __init__(
        self,
        artifacts: Path,
        split: TrafficSplit,
        metrics: PrometheusMetrics,
        serving_ttl_s: float = 15.0,
    ) -> None:
        self.split = split
        self.metrics = metrics
        names = [DEFAULT_BUILD_NAME, *(a for a in split.arms if a != DEFAULT_BUILD_NAME)]
        self.holders = {
            name: ModelHolder(
                artifacts,
                on_swap=self._on_swap(name),
                serving_ttl_s=serving_ttl_s,
                name=name,
                loaded=self._loaded,
            )
            for name in names
        }

    @property
    def champion(self) -> ModelHolder:
        return self.holders[DEFAULT_BUILD_NAME]

    def choose(self, user_id: str) -> tuple[str, ServingModel | None]:
        """(arm, build) that answers ``user_id``: its arm's, else the champion's."""
        arm = self.split.assign(user_id)
        model = self.holders[arm].model
        if model is None and arm != DEFAULT_BUILD_NAME:
            return DEFAULT_BUILD_NAME, self.champion.model
        return arm, model

    def served(self) -> set[str]:
        return {h.model.version for h in self.holders.values() if h.model is not None}

    def problems(self) -> str | None:
        """What is wrong with any line, one clause each (None: nothing)."""
        lines = [
            (h.last_error if name == DEFAULT_BUILD_NAME else f"arm {name}: {h.last_error}")
            for name, h in self.holders.items()
            if h.last_error
        ]
        return "; ".join(lines) or None

    async def refresh(self, client: AsyncStore, keys: Keys) -> None:
        """Every line once: the champion first, so the others can share its copy."""
        for holder in self.holders.values():
            await holder.refresh(client, keys)

    async def watch(
        self, client: AsyncStore, keys: Keys, every_s: float, stop: asyncio.Event
    ) -> None:
        """Poll every line until ``stop`` is set (see ``ModelHolder.watch``)."""
        while not stop.is_set():
            await asyncio.sleep(every_s)
            if stop.is_set():
                return
            for holder in self.holders.values():
                try:
                    await holder.refresh(client, keys)
                except REDIS_ERRORS as e:
                    holder.problem(f"cannot read the current build from redis: {e}")

    def _loaded(self, version: str) -> ServingModel | None:
        for holder in self.holders.values():
            if holder.model is not None and holder.model.version == version:
                return holder.model
        return None

    def _on_swap(self, arm: str) -> SwapListener:
        def swapped(old: str | None, new: str) -> None:
            self.metrics.arm_swapped(arm, old, new, self.served())

        return swapped
