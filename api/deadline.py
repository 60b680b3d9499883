"""Will ranking fit in what is left of the deadline? A measured answer, not a fixed reserve.

Ranking runs on a small pool of threads. A request that has to rank waits for the jobs ahead of
it and then for its own, so its expected time is ``exec_time x waves`` where ``waves`` is how many
rounds of ``threads`` jobs come before it and it (``in_flight // threads + 1``). ``exec_time`` is
an exponentially weighted moving average of measured runs, so the estimate follows the build's
size and the machine's load, and a burst is seen at once through ``in_flight``.

A run that skipped ranking measures nothing, so an estimate inflated by a pause (GC, a noisy
neighbour) could lock ranking out for good. Hence a probe: when no run has finished for
``probe_after_s``, the next request ranks anyway. That is safe because the caller also bounds
its wait with the remaining budget and answers in stage-1 order when the ranker overruns.
"""

import threading
import time

# Until the first runs are measured: deliberately high. A large LightGBM model (300 trees x 63
# leaves) takes ~7 ms on 500 rows with one thread (docs/BENCHMARKS.md, ranking cost); our 78-tree
# ranker over 27 features takes ~1.4 ms with its features (bench/LOADTEST.md).
PRIOR_EXEC_S = 0.010
EWMA_ALPHA = 0.2
SAFETY = 1.5
PROBE_AFTER_S = 1.0
MAX_SAMPLE_S = 1.0


class RankTimeEstimate:
    """Expected wall time of a ranking job submitted now, kept up to date by the jobs themselves.

    ``submitted`` is called on the event loop and ``finished`` from the rank threads (a job's
    done callback); the arithmetic is on floats and ints under a lock so the counters stay
    exact.
    """

    def __init__(self, threads: int, prior_exec_s: float = PRIOR_EXEC_S) -> None:
        self.threads = threads
        self.exec_s = prior_exec_s
        self.in_flight = 0
        self.last_finished = time.monotonic()
        self._lock = threading.Lock()

    def expected_s(self) -> float:
        waves = self.in_flight // self.threads + 1
        return self.exec_s * waves * SAFETY

    def fits(self, remaining_s: float) -> bool:
        """Rank if the estimate fits, or to probe when the estimate has gone stale."""
        if remaining_s <= 0:
            return False
        if self.expected_s() <= remaining_s:
            return True
        now = time.monotonic()
        with self._lock:
            if now - self.last_finished <= PROBE_AFTER_S:
                return False
            self.last_finished = now  # one probe per PROBE_AFTER_S, not one per request
            return True

    def submitted(self) -> None:
        with self._lock:
            self.in_flight += 1

    def finished(self, exec_s: float | None) -> None:
        """A job left the pool; ``exec_s`` is its run time, None if it never ran (cancelled)."""
        with self._lock:
            self.in_flight -= 1
            if exec_s is None:
                return
            self.exec_s += EWMA_ALPHA * (min(exec_s, MAX_SAMPLE_S) - self.exec_s)
            self.last_finished = time.monotonic()
