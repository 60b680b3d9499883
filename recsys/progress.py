"""A line per stage with its time and peak memory, collected for the manifest."""

import logging
import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger("recsys")

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def reset_peak_rss() -> bool:
    """Reset the kernel's high-water mark (Linux: writing 5 to clear_refs) so each stage reports
    its own peak; elsewhere peaks are cumulative."""
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class StageTimer:
    def __init__(self, name: str) -> None:
        self.name = name
        self.timings_s: dict[str, float] = {}
        # CPU seconds of this process (all its threads): what a stage costs whatever else the
        # machine runs, and how much of the wall time it kept the cores busy
        self.cpu_s: dict[str, float] = {}
        self.peak_rss_mb: dict[str, float] = {}

    @contextmanager
    def stage(self, stage: str) -> Iterator[None]:
        log.info("[%s] %s ...", self.name, stage)
        reset_peak_rss()
        start = time.perf_counter()
        cpu_start = time.process_time()
        yield
        elapsed = time.perf_counter() - start
        self.timings_s[stage] = round(elapsed, 3)
        self.cpu_s[stage] = round(time.process_time() - cpu_start, 3)
        self.peak_rss_mb[stage] = round(peak_rss_mb(), 1)
        log.info(
            "[%s] %s done in %.2fs (peak RSS %.0f MB)",
            self.name,
            stage,
            elapsed,
            self.peak_rss_mb[stage],
        )
