"""The manifest's ``inspection`` section: what the build saved for the dashboard, and the
reference distribution live drift is measured against."""

import numpy as np
import numpy.typing as npt
from pydantic import Field

from recsys.psi import bin_counts, bin_edges
from recsys.records import Record


class BinnedReference(Record):
    """One variable of the reference, as PSI needs it: the inner bin edges (its deciles) and
    the reference's share in each bin, the last bin holding missing values (``recsys.psi``)."""

    edges: list[float]
    shares: list[float]
    mean: float | None
    missing: float

    @classmethod
    def of(cls, values: npt.ArrayLike) -> "BinnedReference":
        v = np.asarray(values, dtype=np.float64)
        edges = bin_edges(v)
        counts = bin_counts(v, edges)
        finite = v[~np.isnan(v)]
        return cls(
            edges=[float(e) for e in edges],
            shares=[round(float(c) / max(v.size, 1), 6) for c in counts],
            mean=round(float(finite.mean()), 6) if finite.size else None,
            missing=round(float(np.isnan(v).mean()), 6) if v.size else 0.0,
        )

    def edges_array(self) -> npt.NDArray[np.float64]:
        return np.asarray(self.edges, dtype=np.float64)


class DriftReference(Record):
    """The ranker's inputs as it learned them: every candidate of a sample of its training
    requests, as of its label cut (the evaluation report's drift reference, kept as bins)."""

    reference: str
    requests: int
    rows: int
    features: dict[str, BinnedReference]
    score: BinnedReference


class InspectionSummary(Record):
    """What the build saved for inspection, and what it cost."""

    files: list[str]
    bytes: int
    seconds: float
    activity_bucket_s: int = Field(description="Width of one bucket of item activity.")
    activity_start_ts: int
    activity_buckets: int
    neighbours: dict[str, int]
    """Item-to-item source -> neighbours kept per item."""
    audience_users: int
    """Users whose answers were ranked to find whom each item is recommended to (0: none)."""
    audience_k: int
    drift_reference: DriftReference | None = None
