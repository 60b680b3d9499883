"""Ranker features, defined once and called by both the offline training-set builder and the API.

Inputs are the same on both paths: a user's state as stored in Redis (candidates with stage-1
scores and sources, recent history, activity), the request context (time, device) and the build's
item table. The offline builder passes its states through the Redis codec first, so both paths
see identical, equally quantised inputs. Missing values are NaN, which LightGBM treats as missing.

The features themselves are the table in ``recsys.features.table``; ``recsys.features.inputs``
holds what they are computed from.
"""

from collections.abc import Sequence
from typing import Final

import numpy as np

from recsys.features.inputs import FeatureInputs, RequestContext
from recsys.features.table import FEATURES, Feature
from recsys.items import ItemTable
from recsys.user_state import UserState

__all__ = [
    "CATEGORICAL_FEATURES",
    "FEATURES",
    "FEATURE_NAMES",
    "Feature",
    "RequestContext",
    "build_features",
]

FEATURE_NAMES: Final = FEATURES.names
CATEGORICAL_FEATURES: Final = FEATURES.categorical


def build_features(
    states: Sequence[UserState], contexts: Sequence[RequestContext], items: ItemTable
) -> np.ndarray:
    """Feature matrix [total candidates, n features], rows in each state's candidate order,
    columns in ``FEATURE_NAMES`` order, written into one preallocated float32 matrix."""
    x = FeatureInputs(states, contexts, items)
    out = np.empty((x.n_rows, len(FEATURES)), dtype=np.float32)
    for j, feature in enumerate(FEATURES):
        out[:, j] = feature.compute(x)  # casts to float32 as np.asarray(..., np.float32) would
    return out
