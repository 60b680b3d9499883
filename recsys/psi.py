"""The population stability index (PSI): how far a current sample of a variable has moved from a
reference sample, over bins cut at the reference's deciles:

    PSI = sum over bins b of (cur_b - ref_b) * ln(cur_b / ref_b)

with ``ref_b`` and ``cur_b`` the shares of each sample in bin ``b``. It is symmetric in the two
shares, 0 for identical distributions, and the industry reading (Siddiqi, *Credit Risk
Scorecards*, 2006) is: below 0.1 stable, 0.1 to 0.2 a moderate shift worth a look, above 0.2 a
major shift. Missing values (NaN, a real state of several features: no history, unknown release)
get a bin of their own, so a change in how often a feature is missing counts as drift too. An
empty bin would make the log infinite; shares are floored at ``EPSILON`` first.

Declared once for the evaluation report (``recsys.evaluation.drift``: training window vs test
window) and the dashboard (``recsys.inspection.live_drift``: training window vs live requests),
which keeps only the reference's edges and shares, so both read the same thresholds.
"""

from typing import Final, Literal

import numpy as np
import numpy.typing as npt

BINS: Final = 10
EPSILON: Final = 1e-4
MODERATE: Final = 0.1
MAJOR: Final = 0.2
DriftFlag = Literal["stable", "moderate", "major"]


def bin_edges(reference: npt.ArrayLike, bins: int = BINS) -> npt.NDArray[np.float64]:
    """Inner edges at the reference's deciles, taken as observed values (inverted CDF) and
    deduplicated: a binary feature gets 2 bins and a constant one 1, where interpolated
    quantiles would cut between the values and leave bins that can only add noise."""
    ref = np.asarray(reference, dtype=np.float64)
    ref = ref[~np.isnan(ref)]
    if ref.size == 0:
        return np.empty(0, dtype=np.float64)
    # the i-th decile is the ceil(n * i / bins)-th smallest value, in integer arithmetic:
    # float quantile positions put 0.3 * 100 at 30.000000000000004 and pick the wrong value
    position = (ref.size * np.arange(1, bins) + bins - 1) // bins - 1
    return np.unique(np.sort(ref)[position])


def bin_counts(values: npt.ArrayLike, edges: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """Counts of ``values`` in the bins ``(-inf, e0], (e0, e1], ..., (e_last, inf)`` and, last,
    NaN: ``len(edges) + 2`` counts. A value equal to an edge belongs to the bin the edge closes,
    so each decile edge closes a bin with (at least) its 10% of the reference."""
    v = np.asarray(values, dtype=np.float64)
    missing = np.isnan(v)
    counts = np.bincount(np.searchsorted(edges, v[~missing], side="left"), minlength=edges.size + 1)
    return np.append(counts, missing.sum()).astype(np.int64)


def bin_shares(values: npt.ArrayLike, edges: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Shares of ``values`` in the bins of ``bin_counts``."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        raise ValueError("cannot compute shares of an empty sample")
    return bin_counts(v, edges) / v.size


def psi_of_shares(reference: npt.ArrayLike, current: npt.ArrayLike) -> float:
    """PSI of two share vectors over the same bins (each floored at ``EPSILON``)."""
    ref = np.maximum(np.asarray(reference, dtype=np.float64), EPSILON)
    cur = np.maximum(np.asarray(current, dtype=np.float64), EPSILON)
    if ref.shape != cur.shape:
        raise ValueError(f"shares over different bins: {ref.shape} vs {cur.shape}")
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def psi(reference: npt.ArrayLike, current: npt.ArrayLike, bins: int = BINS) -> float:
    """Population stability index of ``current`` against ``reference`` (module docstring)."""
    edges = bin_edges(reference, bins)
    return psi_of_shares(bin_shares(reference, edges), bin_shares(current, edges))


def flag(value: float) -> DriftFlag:
    if value > MAJOR:
        return "major"
    if value > MODERATE:
        return "moderate"
    return "stable"
