"""Live drift: the ranker's features on live requests against the build's training window.

A worker samples at most one ranked request per ``interval_s``. The request path only keeps a
reference to that request's feature matrix and scores (the rank thread already computed them);
binning them into the reference's bins happens later, in a background thread, when the counts
are flushed to Redis (``recsys.store.drift_counts``), where every worker's counts add up. PSI
then compares the shares of those counts with the reference's shares (``recsys.psi``), with the
thresholds the evaluation report flags with.
"""

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from recsys.inspection.records import BinnedReference, DriftReference
from recsys.psi import MAJOR, MODERATE, DriftFlag, bin_counts, flag, psi_of_shares
from recsys.records import Record

SCORE: str = "score"
"""The name the ranker's score is counted under, next to the features."""
MAX_PENDING: int = 256
"""Sampled requests held between two flushes at most (~15 MB); more are dropped, not queued."""


@dataclass
class LiveCounts:
    """Counts per variable in the reference's bins, and how many requests and rows made them."""

    requests: int = 0
    rows: int = 0
    counts: dict[str, np.ndarray] = field(default_factory=dict)  # variable -> int64 [bins]

    def add(self, other: "LiveCounts") -> None:
        self.requests += other.requests
        self.rows += other.rows
        for name, c in other.counts.items():
            mine = self.counts.get(name)
            self.counts[name] = c.copy() if mine is None else mine + c


class LiveDriftSampler:
    """Keeps the features of a sample of one build's ranked requests; bins them on demand.

    ``due`` is called on the event loop for every ranked request (a clock read and a compare),
    ``offer`` from the rank thread (a list append), ``drain`` from a background thread."""

    def __init__(self, reference: DriftReference, names: Sequence[str], interval_s: float):
        self.names = [n for n in names if n in reference.features]
        self.columns = [list(names).index(n) for n in self.names]
        self.edges = [reference.features[n].edges_array() for n in self.names]
        self.score_edges = reference.score.edges_array()
        self.interval_s = interval_s
        self._next_at = 0.0
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._lock = threading.Lock()
        self.dropped = 0

    def due(self, now: float | None = None) -> bool:
        """Whether this request should be sampled (then the next one is an interval away)."""
        now = time.monotonic() if now is None else now
        if now < self._next_at:
            return False
        self._next_at = now + self.interval_s
        return True

    def offer(self, features: np.ndarray, scores: np.ndarray) -> None:
        with self._lock:
            if len(self._pending) >= MAX_PENDING:
                self.dropped += 1
                return
            self._pending.append((features, scores))

    def drain(self) -> LiveCounts:
        """The sampled requests since the last drain, binned (then forgotten)."""
        with self._lock:
            pending, self._pending = self._pending, []
        out = LiveCounts()
        for features, scores in pending:
            out.add(self.bin(features, scores))
        return out

    def bin(self, features: np.ndarray, scores: np.ndarray) -> LiveCounts:
        counts = {
            name: bin_counts(features[:, j], e)
            for name, j, e in zip(self.names, self.columns, self.edges, strict=True)
        }
        counts[SCORE] = bin_counts(scores, self.score_edges)
        return LiveCounts(requests=1, rows=int(features.shape[0]), counts=counts)


class LiveShift(Record):
    """One variable: its PSI between the training window and live requests, and both sides'
    shares per bin (the last bin: missing)."""

    psi: float | None
    flag: DriftFlag | None
    edges: list[float]
    reference_shares: list[float]
    live_shares: list[float] | None
    reference_mean: float | None
    reference_missing: float
    live_missing: float | None


class LiveDrift(Record):
    reference: str
    reference_requests: int
    reference_rows: int
    live_requests: int
    live_rows: int
    moderate: float
    major: float
    features: dict[str, LiveShift]
    score: LiveShift


def _shift(ref: BinnedReference, counts: np.ndarray | None) -> LiveShift:
    total = int(counts.sum()) if counts is not None else 0
    if counts is None or total == 0 or len(counts) != len(ref.shares):
        return LiveShift(
            psi=None,
            flag=None,
            edges=ref.edges,
            reference_shares=ref.shares,
            live_shares=None,
            reference_mean=ref.mean,
            reference_missing=ref.missing,
            live_missing=None,
        )
    shares = counts / total
    value = psi_of_shares(ref.shares, shares)
    return LiveShift(
        psi=round(value, 5),
        flag=flag(value),
        edges=ref.edges,
        reference_shares=ref.shares,
        live_shares=[round(float(s), 6) for s in shares],
        reference_mean=ref.mean,
        reference_missing=ref.missing,
        live_missing=round(float(shares[-1]), 6),
    )


def live_drift(reference: DriftReference, live: LiveCounts) -> LiveDrift:
    """PSI of every feature and of the score, live against the reference (None without live
    rows yet)."""
    return LiveDrift(
        reference=reference.reference,
        reference_requests=reference.requests,
        reference_rows=reference.rows,
        live_requests=live.requests,
        live_rows=live.rows,
        moderate=MODERATE,
        major=MAJOR,
        features={
            name: _shift(ref, live.counts.get(name)) for name, ref in reference.features.items()
        },
        score=_shift(reference.score, live.counts.get(SCORE)),
    )


def counts_from_fields(fields: Mapping[str, int]) -> LiveCounts:
    """``LiveCounts`` from the flat fields they are stored as (``to_fields``)."""
    out = LiveCounts(requests=int(fields.get("requests", 0)), rows=int(fields.get("rows", 0)))
    bins: dict[str, dict[int, int]] = {}
    for key, value in fields.items():
        name, sep, b = key.rpartition(":")
        if sep and name.startswith("v:") and b.isdigit():
            bins.setdefault(name[2:], {})[int(b)] = int(value)
    for variable, by_bin in bins.items():
        arr = np.zeros(max(by_bin) + 1, dtype=np.int64)
        arr[list(by_bin)] = list(by_bin.values())
        out.counts[variable] = arr
    return out


def to_fields(live: LiveCounts) -> dict[str, int]:
    """Flat ``{field: increment}``: ``requests``, ``rows`` and ``v:<variable>:<bin>`` for every
    bin (zeros included, so every variable's bins are all there when read back)."""
    out = {"requests": live.requests, "rows": live.rows}
    for name, counts in live.counts.items():
        out |= {f"v:{name}:{b}": int(c) for b, c in enumerate(counts.tolist())}
    return out
