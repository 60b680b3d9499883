"""Has the world moved since the ranker learned it? Population stability of features and scores.

The population stability index compares a *current* sample of a variable with a *reference*
sample over bins cut at the reference's deciles:

    PSI = sum over bins b of (cur_b - ref_b) * ln(cur_b / ref_b)

with ``ref_b`` and ``cur_b`` the shares of each sample in bin ``b``. It is symmetric in the two
shares, 0 for identical distributions, and the industry reading (Siddiqi, *Credit Risk
Scorecards*, 2006) is: below 0.1 stable, 0.1 to 0.2 a moderate shift worth a look, above 0.2 a
major shift. Missing values (NaN, a real state of several features: no history, unknown release)
get a bin of their own, so a change in how often a feature is missing counts as drift too. An
empty bin would make the log infinite; shares are floored at ``EPSILON`` first.

The report compares every candidate of the ranker's own training requests (the build's training
window, as of its label cut) with every candidate of a sample of test requests, as served.
"""

from collections.abc import Callable, Sequence
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt

from recsys.config import Settings
from recsys.evaluation.records import Drift, Shift
from recsys.evaluation.served import Served
from recsys.features import FEATURE_NAMES, build_features
from recsys.ranking.training_set import TrainingWindow, labelled_requests, request_states
from recsys.serving import ServingModel

BINS: Final = 10
EPSILON: Final = 1e-4
MODERATE: Final = 0.1
MAJOR: Final = 0.2


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


def bin_shares(values: npt.ArrayLike, edges: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Shares of ``values`` in the bins ``(-inf, e0], (e0, e1], ..., (e_last, inf)`` and, last,
    NaN. A value equal to an edge belongs to the bin the edge closes, so each decile edge
    closes a bin with (at least) its 10% of the reference."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        raise ValueError("cannot compute shares of an empty sample")
    missing = np.isnan(v)
    counts = np.bincount(
        np.searchsorted(edges, v[~missing], side="left"), minlength=edges.size + 1
    ).astype(np.float64)
    return np.append(counts, missing.sum()) / v.size


def psi(reference: npt.ArrayLike, current: npt.ArrayLike, bins: int = BINS) -> float:
    """Population stability index of ``current`` against ``reference`` (module docstring)."""
    edges = bin_edges(reference, bins)
    ref = np.maximum(bin_shares(reference, edges), EPSILON)
    cur = np.maximum(bin_shares(current, edges), EPSILON)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def flag(value: float) -> Literal["stable", "moderate", "major"]:
    if value > MAJOR:
        return "major"
    if value > MODERATE:
        return "moderate"
    return "stable"


def _nan_stat(
    fn: Callable[[npt.NDArray[np.float64]], Any], values: npt.NDArray[np.float64]
) -> float | None:
    finite = values[~np.isnan(values)]
    return round(float(fn(finite)), 5) if finite.size else None


def describe_shift(reference: npt.ArrayLike, current: npt.ArrayLike) -> Shift:
    """PSI, its flag, and the plain moments behind it, for one variable."""
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    value = psi(ref, cur)
    return Shift(
        psi=round(value, 5),
        flag=flag(value),
        reference_mean=_nan_stat(np.mean, ref),
        current_mean=_nan_stat(np.mean, cur),
        reference_std=_nan_stat(np.std, ref),
        current_std=_nan_stat(np.std, cur),
        reference_missing=round(float(np.isnan(ref).mean()), 5),
        current_missing=round(float(np.isnan(cur).mean()), 5),
    )


def feature_drift(
    reference: npt.NDArray[np.floating[Any]],
    current: npt.NDArray[np.floating[Any]],
    names: Sequence[str],
) -> dict[str, Shift]:
    """:func:`describe_shift` of every column of two feature matrices, by feature name."""
    if reference.ndim != 2 or current.ndim != 2:
        raise ValueError("feature matrices must be 2-D [rows, features]")
    if reference.shape[1] != len(names) or current.shape[1] != len(names):
        raise ValueError(
            f"{len(names)} feature names for matrices of {reference.shape[1]} and "
            f"{current.shape[1]} columns"
        )
    return {name: describe_shift(reference[:, j], current[:, j]) for j, name in enumerate(names)}


def training_window_features(
    window: TrainingWindow, devices: list[str], settings: Settings, max_requests: int
) -> tuple[np.ndarray, int]:
    """Features of every candidate of the ranker's training requests, as of its label cut.

    The build's own training window (same label split, same stage 1 on history), and the same
    request sample (``labelled_requests`` draws the same permutation, so these requests are the
    first of the ranker's own), but without negative sampling: drift compares candidate
    distributions, and sampling 100 negatives of 500 would itself look like drift."""
    requests = labelled_requests(window, devices, max_requests, settings.ranker.seed)
    model = window.candidate_model
    parts = [
        build_features(states, contexts, model.items)
        for states, contexts, _ in request_states(requests, model, settings)
    ]
    if not parts:
        return np.empty((0, len(FEATURE_NAMES)), np.float32), 0
    return np.concatenate(parts), len(requests.users)


def drift(
    window: TrainingWindow,
    model: ServingModel,
    served: Served,
    settings: Settings,
    max_requests: int,
) -> Drift:
    """PSI of each ranker feature and of the ranker's score, training window vs test window."""
    reference, n_requests = training_window_features(
        window, model.items.devices, settings, max_requests
    )
    current = build_features(served.sample_states, served.sample_contexts, model.items)
    return Drift(
        reference="candidates of the ranker's training requests, as of its label cut",
        current="candidates of the test requests, as served",
        reference_requests=n_requests,
        current_requests=len(served.sample_states),
        reference_rows=int(reference.shape[0]),
        current_rows=int(current.shape[0]),
        features=feature_drift(reference, current, FEATURE_NAMES),
        score=describe_shift(model.ranker.score(reference), model.ranker.score(current)),
    )
