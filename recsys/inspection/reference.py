"""The reference distribution of live drift: the ranker's features and scores over every
candidate of a sample of its own training requests, kept as bins (edges and shares), so the
API can measure live requests against it without the training window in memory."""

from recsys.config import Settings
from recsys.evaluation.drift import training_window_features
from recsys.features import FEATURE_NAMES
from recsys.inspection.records import BinnedReference, DriftReference
from recsys.ranking.ranker import Ranker
from recsys.ranking.training_set import TrainingWindow

REFERENCE = "candidates of the ranker's training requests, as of its label cut"


def drift_reference(
    window: TrainingWindow, devices: list[str], settings: Settings, ranker: Ranker
) -> DriftReference | None:
    """Bins of every feature and of the ranker's score over ``inspection.drift_requests``
    training requests (the evaluation report's reference, ``recsys.evaluation.drift``); None
    when that is 0 or there are none."""
    n = settings.inspection.drift_requests
    if n == 0:
        return None
    matrix, requests = training_window_features(window, devices, settings, n)
    if matrix.shape[0] == 0:
        return None
    return DriftReference(
        reference=REFERENCE,
        requests=requests,
        rows=int(matrix.shape[0]),
        features={name: BinnedReference.of(matrix[:, j]) for j, name in enumerate(FEATURE_NAMES)},
        score=BinnedReference.of(ranker.score(matrix)),
    )
