"""Why an item is in an answer: which stage-1 sources proposed it, where stage 1 put it, what
the ranker scored it, and which features moved that score most (``GET /recommendations?explain``).

Contributions are TreeSHAP values (LightGBM ``pred_contrib``; Lundberg et al., "Consistent
Individualized Feature Attribution for Tree Ensembles", 2018): per item they sum, with the
model's expected value, to its ranker score. They are computed only for the k rows returned,
since their cost grows with trees x leaves x depth per row; the features are recomputed for
the request (same inputs, same code, so the same rows the ranker scored).
"""

from dataclasses import dataclass

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


def explain_candidates(state: UserState | None, ranked: Ranked) -> list[ItemExplanation]:
    """What stage 1 knows of each answered item: sources, score and rank (no ranker). Items
    that are not candidates (popular items of a fallback, ``state`` None) have nothing to say
    beyond the answer's ``fallback``."""
    if state is None or ranked.positions is None:
        return [ItemExplanation([], None, None, None, [], None) for _ in ranked.item_idx]
    return [
        ItemExplanation(
            sources=SOURCES.names_of(int(state.cand_sources[p])),
            stage1_score=float(state.cand_score[p]),
            stage1_rank=int(p),
            ranker_score=None,
            contributions=[],
            expected_value=None,
        )
        for p in ranked.positions.tolist()
    ]


def explain_ranked(
    model: ServingModel, state: UserState, ctx: RequestContext, ranked: Ranked, top_n: int
) -> list[ItemExplanation]:
    """The stage-1 facts of each item plus the ranker's score and its ``top_n`` largest feature
    contributions, for an answer the ranker ordered."""
    base = explain_candidates(state, ranked)
    if ranked.positions is None or not len(ranked.positions):
        return base
    rows = build_features([state], [ctx], model.items)[ranked.positions]
    shap = model.ranker.contributions(rows)
    out = []
    for item, x, phi, score in zip(base, rows, shap, ranked.scores.tolist(), strict=True):
        order = np.argsort(-np.abs(phi[:-1]), kind="stable")[:top_n]
        out.append(
            ItemExplanation(
                sources=item.sources,
                stage1_score=item.stage1_score,
                stage1_rank=item.stage1_rank,
                ranker_score=float(score),
                contributions=[
                    Contribution(FEATURE_NAMES[j], float(x[j]), float(phi[j])) for j in order
                ],
                expected_value=float(phi[-1]),
            )
        )
    return out
