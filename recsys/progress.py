"""A line per stage with its time, collected for the manifest."""

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger("recsys")


class StageTimer:
    def __init__(self, name: str) -> None:
        self.name = name
        self.timings_s: dict[str, float] = {}

    @contextmanager
    def stage(self, stage: str) -> Iterator[None]:
        log.info("[%s] %s ...", self.name, stage)
        start = time.perf_counter()
        yield
        elapsed = time.perf_counter() - start
        self.timings_s[stage] = round(elapsed, 3)
        log.info("[%s] %s done in %.2fs", self.name, stage, elapsed)
