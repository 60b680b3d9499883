"""Has the world moved since the ranker learned it? Population stability of features and scores.

PSI, its bins and its thresholds are declared in ``recsys.psi`` (the dashboard's live drift
reads the same).

The report compares every candidate of the ranker's own training requests (the build's training
window, as of its label cut) with every candidate of a sample of test requests, as served.
"""

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from recsys.config import Settings
from recsys.evaluation.records import Drift, Shift
from recsys.evaluation.served import Served
from recsys.features import FEATURE_NAMES, build_features
from recsys.psi import (  # re-exported: the report's names for them
    BINS,
    EPSILON,
    MAJOR,
    MODERATE,
    bin_edges,
    bin_shares,
    flag,
    psi,
)
from recsys.ranking.training_set import TrainingWindow, labelled_requests, request_states
from recsys.serving import ServingModel

__all__ = [
    "BINS",
    "EPSILON",
    "MAJOR",
    "MODERATE",
    "bin_edges",
    "bin_shares",
    "describe_shift",
    "drift",
    "feature_drift",
    "flag",
    "psi",
    "training_window_features",
]


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
