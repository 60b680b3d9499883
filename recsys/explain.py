"""Why an item is in an answer: which stage-1 sources proposed it, where stage 1 put it, what
the ranker scored it, and which features moved that score most (``GET /recommendations?explain``).

Contributions are TreeSHAP values (LightGBM ``pred_contrib``; Lundberg et al., "Consistent
Individualized Feature Attribution for Tree Ensembles", 2018): per item they sum, with the
model's expected value, to its ranker score. They are computed only for the k rows returned,
since their cost grows with trees x leaves x depth per row; the features are recomputed for
the request (same inputs, same code, so the same rows the ranker scored).
"""

from dataclasses import dataclass, replace

import numpy as np

from recsys.candidates.registry import SOURCES
from recsys.features import FEATURE_NAMES, RequestContext, build_features
from recsys.serving import Ranked, ServingModel
from recsys.user_state import UserState


@dataclass(frozen=True)
class Contribution:
    feature: str
    value: float  # the feature's value for this item (nan: missing)
    contribution: float  # its SHAP value: how much it moved the ranker's score


@dataclass(frozen=True)
class ItemExplanation:
    sources: list[str]  # stage-1 sources that proposed the item, in merge-priority order
    stage1_score: float | None  # None: not a candidate (a popular item of a fallback)
    stage1_rank: int | None  # position in stage-1 order, 0 = first
    ranker_score: float | None  # None: the ranker did not order this answer
    contributions: list[Contribution]  # largest |contribution| first
    expected_value: float | None  # the ranker's mean score, where the contributions start


def explain_candidates(
    state: UserState | None, ranked: Ranked, ranker_scored: bool = False
) -> list[ItemExplanation]:
    """What stage 1 knows of each answered item: sources, score and rank; with
    ``ranker_scored``, the ranker's score too (an answer the ranker ordered, explained without
    contributions). Items that are not candidates (popular items of a fallback, ``state`` None)
    have nothing to say beyond the answer's ``fallback``."""
    if state is None or ranked.positions is None:
        return [ItemExplanation([], None, None, None, [], None) for _ in ranked.item_idx]
    scores = ranked.scores.tolist()
    return [
        ItemExplanation(
            sources=SOURCES.names_of(int(state.cand_sources[p])),
            stage1_score=float(state.cand_score[p]),
            stage1_rank=int(p),
            ranker_score=float(scores[j]) if ranker_scored else None,
            contributions=[],
            expected_value=None,
        )
        for j, p in enumerate(ranked.positions.tolist())
    ]


def explain_ranked(
    model: ServingModel, state: UserState, ctx: RequestContext, ranked: Ranked, top_n: int
) -> list[ItemExplanation]:
    """The stage-1 facts of each item plus the ranker's score and its ``top_n`` largest feature
    contributions, for an answer the ranker ordered."""
    base = explain_candidates(state, ranked, ranker_scored=True)
    if ranked.positions is None or not len(ranked.positions):
        return base
    rows = build_features([state], [ctx], model.items)[ranked.positions]
    shap = model.ranker.contributions(rows)
    out = []
    for item, x, phi in zip(base, rows, shap, strict=True):
        order = np.argsort(-np.abs(phi[:-1]), kind="stable")[:top_n]
        contributions = [Contribution(FEATURE_NAMES[j], float(x[j]), float(phi[j])) for j in order]
        out.append(replace(item, contributions=contributions, expected_value=float(phi[-1])))
    return out
