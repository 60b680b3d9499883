"""The sequential candidate source and features (issue 14)."""

import numpy as np

from recsys.candidates.neighbours import ItemNeighbours
from recsys.candidates.sequential import SequentialSource, summed_per_row
from recsys.candidates.source import UserBatch


def transitions(rows: dict[int, dict[int, float]], n_items: int, m: int = 3) -> ItemNeighbours:
    ids = np.full((n_items, m), -1, dtype=np.int32)
    sims = np.full((n_items, m), -np.inf, dtype=np.float32)
    for a, nxt in rows.items():
        for j, (b, p) in enumerate(sorted(nxt.items(), key=lambda kv: -kv[1])):
            ids[a, j], sims[a, j] = b, p
    return ItemNeighbours(ids, sims)


def test_summed_per_row_sums_each_id_once() -> None:
    ids = np.array([[3, 1, 3, -1], [2, 2, 2, 0]])
    score = np.array([[0.5, 0.25, 0.125, 9.0], [1.0, 1.0, 1.0, 0.5]])
    out_ids, out = summed_per_row(ids, score)
    assert out_ids.tolist() == [[3, 1, -1, -1], [2, -1, -1, 0]]
    assert out[0, :2].tolist() == [0.625, 0.25] and out[1, 0] == 3.0 and out[1, 3] == 0.5
    assert np.isneginf(out[out_ids < 0]).all()


def test_items_several_recent_watches_lead_to_come_first() -> None:
    # watched 0 then 1 (the later weighs 1, the earlier 0.5): 5 follows both, 6 only the last
    table = transitions({0: {4: 0.5, 5: 0.5}, 1: {5: 0.4, 6: 0.6}}, n_items=7)
    source = SequentialSource(table, anchor_decay=0.5)
    recent = np.array([[-1, 0, 1], [-1, -1, -1], [-1, -1, 1]])
    batch = UserBatch(np.arange(3), np.zeros((3, 2), np.float32), recent, max_seen=0)
    out = source.candidates(batch, 3)
    assert out[0].tolist() == [5, 6, 4]  # 0.65, 0.6, 0.25: a best-of would put 6 first
    assert out[1].tolist() == [-1, -1, -1]  # no history, no candidates
    assert out[2].tolist() == [6, 5, -1]
