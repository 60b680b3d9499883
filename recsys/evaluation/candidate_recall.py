"""Stage 1 on its own: how many held-out items the candidates hold (the ceiling of stage 2), at
several depths of the stored order, and what each source found, in the merge and alone."""

from collections.abc import Sequence
from typing import Final

import numpy as np

from recsys.candidates.generate import recent_items, seen_keys
from recsys.candidates.merge import SourceList, merge
from recsys.candidates.model import CandidateModel
from recsys.candidates.source import CandidateSource, UserBatch
from recsys.config import CandidateConfig
from recsys.evaluation.baselines import pad_rows
from recsys.evaluation.protocol import HeldOutRequests
from recsys.evaluation.ranking_metrics import Hits, summarize
from recsys.evaluation.records import CandidateRecall, SourceRecall

CANDIDATE_DEPTHS: Final = (1, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
_BATCH: Final = 1024  # users whose candidates one source finds at once


def candidate_depths(per_user: int) -> list[int]:
    return sorted({d for d in CANDIDATE_DEPTHS if d < per_user} | {per_user})


def recall_at_depths(
    rows: Sequence[np.ndarray], relevant: list[np.ndarray], depths: Sequence[int]
) -> dict[int, float]:
    """``{depth: recall}`` of ranked rows cut at each depth."""
    padded = pad_rows(list(rows), max(depths))
    return {d: round(summarize(Hits.at_k(padded, relevant, d).recall()), 5) for d in depths}


def recall(rows: Sequence[np.ndarray], relevant: list[np.ndarray]) -> float:
    """Recall of whole rows, however long."""
    width = max(1, max((len(r) for r in rows), default=1))
    return round(summarize(Hits.at_k(pad_rows(list(rows), width), relevant, width).recall()), 5)


def candidate_recall(
    model: CandidateModel,
    req: HeldOutRequests,
    candidates: list[np.ndarray],
    candidate_flags: list[np.ndarray],
    config: CandidateConfig,
) -> CandidateRecall:
    """Recall of held-out items: of the merged candidates (in stored, stage-1 order, at several
    depths), of the part each source found, and of each source's own top ``per_user`` (seen
    removed, in the source's order) had it filled every slot alone."""
    depths = candidate_depths(config.per_user)
    sources = {}
    for active in model.sources:
        flag = active.spec.flag
        found = [c[(f & flag) != 0] for c, f in zip(candidates, candidate_flags, strict=True)]
        alone = _source_alone(model, active.source, flag, req, config)
        sources[active.spec.name] = SourceRecall(
            recall_alone=recall(alone, req.relevant),
            recall_alone_at=recall_at_depths(alone, req.relevant, depths),
            recall_in_merged=recall(found, req.relevant),
            slots_per_user=round(float(np.mean([len(x) for x in found])), 1),
        )
    return CandidateRecall(
        per_user=round(float(np.mean([len(c) for c in candidates])), 1),
        recall=recall(candidates, req.relevant),
        recall_at=recall_at_depths(candidates, req.relevant, depths),
        sources=sources,
    )


def _source_alone(
    model: CandidateModel,
    source: CandidateSource,
    flag: int,
    req: HeldOutRequests,
    config: CandidateConfig,
) -> list[np.ndarray]:
    """One source's own top ``per_user`` for each request, seen items removed."""
    per_user, n_items = config.per_user, model.items.n_items
    rows: list[np.ndarray] = []
    for start in range(0, len(req.users), _BATCH):
        users = req.users[start : start + _BATCH].astype(np.int64)
        batch = UserBatch(
            users=users,
            factors=model.factors.user[users],
            recent=recent_items(model.history, users, config.recent_items),
            max_seen=int(np.diff(model.seen.indptr)[users].max()),
        )
        offered = SourceList(source.candidates(batch, per_user), flag, per_user, per_user)
        merged = merge([offered], seen_keys(model.seen, users, n_items), n_items, per_user)
        rows += np.split(merged.items, merged.offsets[1:-1])
    return rows
