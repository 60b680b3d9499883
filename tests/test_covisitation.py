"""Transition and co-visitation tables from time-ordered events (issue 14)."""

import numpy as np
import pytest

from recsys.candidates.covisitation import CovisitParams, sequence_tables

DAY = 86400


def params(**kw: object) -> CovisitParams:
    base: dict[str, object] = {
        "window": 1,
        "max_gap_s": 10 * DAY,
        "position_decay": 1.0,
        "half_life_days": 1e9,
        "neighbours": 4,
    }
    return CovisitParams(**(base | kw))  # type: ignore[arg-type]


def table(ids: np.ndarray, sims: np.ndarray, item: int) -> dict[int, float]:
    """Row ``item`` as {neighbour: value}, values rounded off their float32 tails."""
    return {
        int(b): round(float(v), 6) for b, v in zip(ids[item], sims[item], strict=True) if b >= 0
    }


def r(x: float) -> float:
    return round(x, 6)


# user 0: 0 1 2 ; user 1: 0 1 3 ; user 2: 0 2 (and a repeat view of 2)
USER = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
ITEM = np.array([0, 1, 2, 0, 1, 3, 0, 2, 2])
TS = np.array([10, 20, 30, 10, 20, 30, 10, 20, 25]) * 60


def test_transitions_are_next_item_probabilities() -> None:
    t = sequence_tables(USER, ITEM, TS, 5, int(TS.max()), params()).transitions
    assert table(t.ids, t.sims, 0) == {1: r(2 / 3), 2: r(1 / 3)}  # 0 -> 1 twice, 0 -> 2 once
    assert table(t.ids, t.sims, 1) == {2: 0.5, 3: 0.5}
    assert table(t.ids, t.sims, 2) == {}  # 2 -> 2 is a repeat view, not a pair
    assert t.ids[0].tolist() == [1, 2, -1, -1]  # best first, -1 padded
    assert np.isneginf(t.sims[0, 2:]).all()


def test_covisits_count_both_directions_within_the_window() -> None:
    c = sequence_tables(USER, ITEM, TS, 5, int(TS.max()), params(window=2)).covisits
    # 0 and 2: user 0 (lag 2), user 2 (lag 1) twice (2 is watched twice after 0, within 2)
    assert table(c.ids, c.sims, 2) == {0: 3.0, 1: 1.0}
    assert table(c.ids, c.sims, 0) == {2: 3.0, 1: 2.0, 3: 1.0}


def test_events_unordered_in_the_input_are_ordered_by_time() -> None:
    order = np.random.default_rng(0).permutation(len(USER))
    a = sequence_tables(USER, ITEM, TS, 5, int(TS.max()), params(window=2))
    b = sequence_tables(USER[order], ITEM[order], TS[order], 5, int(TS.max()), params(window=2))
    np.testing.assert_array_equal(a.transitions.sims, b.transitions.sims)
    np.testing.assert_array_equal(a.covisits.ids, b.covisits.ids)


def test_gap_window_and_decays() -> None:
    user = np.zeros(4, dtype=np.int64)
    item = np.array([0, 1, 2, 3])
    ts = np.array([0, 60, 120, 120 + 3 * DAY])
    p = params(window=3, max_gap_s=DAY, position_decay=0.5)
    t = sequence_tables(user, item, ts, 4, int(ts.max()), p).transitions
    # 0 -> 1 (lag 1, weight 1) and 0 -> 2 (lag 2, weight 0.5); 3 is past the gap
    assert table(t.ids, t.sims, 0) == {1: r(2 / 3), 2: r(1 / 3)}
    assert table(t.ids, t.sims, 2) == {}
    # recency: the pair that ended a half-life before the last event weighs half
    user = np.array([0, 0, 1, 1])
    item = np.array([0, 1, 0, 2])
    ts = np.array([0, 10, 10 * DAY, 10 * DAY + 10])
    t = sequence_tables(user, item, ts, 3, int(ts.max()), params(half_life_days=10.0)).transitions
    got = table(t.ids, t.sims, 0)
    assert np.isclose(got[2], 2 / 3, rtol=1e-5) and np.isclose(got[1], 1 / 3, rtol=1e-5)


def test_partitions_and_user_numbering_do_not_change_a_bit() -> None:
    """Partitions bound memory; the result must not depend on them, nor on how users are
    numbered (features must match bit for bit wherever the same events are given)."""
    rng = np.random.default_rng(3)
    n = 20_000
    user = np.sort(rng.integers(0, 500, n))
    item = rng.zipf(1.3, n) % 300
    ts = np.concatenate([np.sort(rng.integers(0, 90 * DAY, c)) for c in np.bincount(user)])
    p = params(window=4, position_decay=0.8, half_life_days=20.0, neighbours=20)
    one = sequence_tables(user, item, ts, 300, int(ts.max()), p)
    renumbered = rng.permutation(500)[user]
    three = sequence_tables(
        renumbered, item, ts, 300, int(ts.max()), CovisitParams(**(p.__dict__ | {"partitions": 3}))
    )
    for a, b in ((one.transitions, three.transitions), (one.covisits, three.covisits)):
        np.testing.assert_array_equal(a.ids, b.ids)
        np.testing.assert_array_equal(a.sims, b.sims)
    assert (one.transitions.ids >= 0).sum() > 1000


def _reference(
    user: np.ndarray, item: np.ndarray, ts: np.ndarray, p: CovisitParams
) -> tuple[dict[tuple[int, int], float], dict[tuple[int, int], int]]:
    """The definition, pair by pair in plain Python: (a -> b weights, {a, b} co-visit counts)."""
    weights: dict[tuple[int, int], float] = {}
    counts: dict[tuple[int, int], int] = {}
    as_of = int(ts.max())
    for u in np.unique(user):
        rows = np.flatnonzero(user == u)
        rows = rows[np.argsort(ts[rows], kind="stable")]
        for k, j in enumerate(rows):
            for lag, m in enumerate(rows[k + 1 : k + 1 + p.window], start=1):
                a, b = int(item[j]), int(item[m])
                if a == b or ts[m] - ts[j] > p.max_gap_s:
                    continue
                w = p.position_decay ** (lag - 1) * 0.5 ** (
                    (as_of - ts[m]) / DAY / p.half_life_days
                )
                weights[a, b] = weights.get((a, b), 0.0) + w
                counts[a, b] = counts.get((a, b), 0) + 1
                counts[b, a] = counts.get((b, a), 0) + 1
    return weights, counts


def test_tables_follow_the_definition_and_not_the_partitions() -> None:
    """Every partition count gives the same bits, and those are the definition's pairs: each
    event paired with the next ``window`` of its user's events within the gap (the partitions
    read pairs from shared positions; an off-by-one there would drop or add pairs at users'
    boundaries)."""
    rng = np.random.default_rng(11)
    n = 1_500
    user = rng.integers(0, 60, n)
    item = rng.integers(0, 40, n)
    ts = rng.integers(0, 40 * DAY, n)
    p = params(window=3, max_gap_s=5 * DAY, position_decay=0.6, half_life_days=15.0, neighbours=40)
    one = sequence_tables(user, item, ts, 40, int(ts.max()), p)
    for parts in (2, 3, 7, 64):
        other = sequence_tables(
            user, item, ts, 40, int(ts.max()), CovisitParams(**(p.__dict__ | {"partitions": parts}))
        )
        for a, b in ((one.transitions, other.transitions), (one.covisits, other.covisits)):
            np.testing.assert_array_equal(a.ids, b.ids)
            np.testing.assert_array_equal(a.sims, b.sims)
    weights, counts = _reference(user, item, ts, p)
    for a in range(40):
        out = {b: w for (s, b), w in weights.items() if s == a}
        total = sum(out.values())
        assert table(one.transitions.ids, one.transitions.sims, a) == pytest.approx(
            {b: w / total for b, w in out.items()}, rel=1e-4, abs=1e-6
        )
        assert table(one.covisits.ids, one.covisits.sims, a) == {
            b: float(c) for (s, b), c in counts.items() if s == a
        }
