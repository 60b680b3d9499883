"""Candidate sources: one contract every registered source passes (as every implicit recommender
inherits one test suite), the registry everything else is derived from, the merge rules, and
the index."""

import dataclasses

import numpy as np
import polars as pl
import pytest

from recsys.candidates.ann import build_index
from recsys.candidates.item_to_item import ItemToItemSource, top_unique_per_row
from recsys.candidates.merge import SourceList, merge
from recsys.candidates.model import CandidateModel, fit_candidate_model
from recsys.candidates.neighbours import content_vectors, nearest_items
from recsys.candidates.registry import SOURCES
from recsys.candidates.source import (
    MAX_SOURCES,
    CandidateSource,
    SourceInputs,
    SourceSpec,
    SourceTable,
    UserBatch,
)
from recsys.columns import Columns
from recsys.config import Settings, quotas_model
from recsys.data.synth import generate_synthetic
from recsys.devices import device_vocabulary
from recsys.events_index import index_events
from recsys.features import FEATURE_NAMES
from recsys.ids import IdIndex

ALS, POPULAR, FRESH = (SOURCES[name].flag for name in ("als", "popular", "fresh"))
ITEM_FACTORS = SOURCES["item_factors"].flag


# --------------------------------------------------------------------------- the shared contract


@pytest.fixture(scope="module")
def fitted() -> tuple[CandidateModel, Settings, pl.DataFrame]:
    """Stage 1 fitted on a small synthetic log: real factors, neighbours, titles, releases."""
    data = generate_synthetic(n_users=200, n_items=120, seed=2, events_per_user=15)
    settings = Settings(
        als={"factors": 8, "iterations": 3},
        ann={"kind": "exact"},
        candidates={"per_user": 40, "neighbours": 10},
    )
    users = IdIndex.from_values(data.interactions[Columns.user])
    items = IdIndex(data.items[Columns.item])
    devices = device_vocabulary(data.interactions)
    events = index_events(data.interactions, users, items, devices)
    model = fit_candidate_model(
        events, data.interactions, len(users), data.items, devices, settings
    )
    return model, settings, data.items


def inputs_for(
    fitted: tuple[CandidateModel, Settings, pl.DataFrame], index_kind: str
) -> SourceInputs:
    model, settings, _ = fitted
    ann = settings.ann.model_copy(
        update={"kind": index_kind, "hnsw_m": 8, "ef_construction": 40, "ef_search": 64}
    )
    return SourceInputs(
        items=model.items,
        neighbours=model.neighbours,
        item_index=build_index(model.items.factors, ann),
        config=settings.candidates,
    )


def batch_of(model: CandidateModel, max_seen: int) -> UserBatch:
    users = np.arange(8, dtype=np.int64)
    rng = np.random.default_rng(1)
    recent = rng.integers(0, model.items.n_items, size=(len(users), 4))
    recent[0, :2] = -1  # a user with a short history
    recent[1, :] = -1  # and one with none
    return UserBatch(
        users=users, factors=model.factors.user[users], recent=recent, max_seen=max_seen
    )


@pytest.mark.parametrize("index_kind", ["exact", "hnsw"])
@pytest.mark.parametrize("spec", list(SOURCES), ids=SOURCES.names)
@pytest.mark.parametrize("max_seen", [0, 7])
def test_every_source_keeps_the_contract(
    fitted: tuple[CandidateModel, Settings, pl.DataFrame],
    spec: SourceSpec,
    index_kind: str,
    max_seen: int,
) -> None:
    model = fitted[0]
    source: CandidateSource = spec.build(inputs_for(fitted, index_kind))
    batch = batch_of(model, max_seen)
    n_items = model.items.n_items
    out = source.candidates(batch, 20)
    assert out.shape[0] == len(batch.users)
    assert out.shape[1] <= 20 + batch.max_seen
    assert ((out >= -1) & (out < n_items)).all()
    for row in out:
        real = row[row >= 0]
        assert len(np.unique(real)) == len(real)  # no duplicates
        assert (row[len(real) :] == -1).all()  # blanks only at the end
    # scored() offers the same items, and scores (when it has them) for each, best first
    found, scores = source.scored(batch, 20)
    np.testing.assert_array_equal(found, out)
    if scores is not None:
        assert scores.shape == found.shape
        known = found >= 0
        assert np.isfinite(scores[known]).all()
        for row, ok in zip(scores, known, strict=True):
            assert (np.diff(row[ok]) <= 1e-6).all()
    # the same question gets the same answer
    np.testing.assert_array_equal(source.candidates(batch, 20), out)


@pytest.mark.parametrize("spec", list(SOURCES), ids=SOURCES.names)
def test_every_source_is_derived_everywhere(spec: SourceSpec) -> None:
    """One declaration: its quota setting, flag bit and ranker feature all follow from it."""
    assert spec.name.isidentifier() and 0 <= spec.bit < MAX_SOURCES
    assert spec.flag == 1 << spec.bit
    assert Settings().candidates.quotas.of(spec.name) == spec.quota >= 0
    assert spec.feature == f"src_{spec.name}" and spec.feature in FEATURE_NAMES
    assert SOURCES.names_of(spec.flag) == [spec.name]


def test_settings_and_features_follow_the_registry() -> None:
    assert list(Settings().candidates.quotas.model_dump()) == list(SOURCES.names)
    flags = [n for n in FEATURE_NAMES if n.startswith("src_")]
    assert flags == [s.feature for s in sorted(SOURCES, key=lambda s: s.bit)]
    # src_* sit together, in flag-bit order, so a new source's column comes after the others
    first = FEATURE_NAMES.index(flags[0])
    assert list(FEATURE_NAMES[first : first + len(flags)]) == flags


def test_a_quota_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSYS_CANDIDATES__QUOTAS__FRESH", "3")
    assert Settings().candidates.quotas.of("fresh") == 3
    monkeypatch.setenv("RECSYS_CANDIDATES__QUOTAS__FRESHH", "3")
    with pytest.raises(ValueError, match="freshh"):
        Settings()


def _spec(name: str, bit: int) -> SourceSpec:
    return SourceSpec(name, bit, quota=5, build=SOURCES["popular"].build)


def test_a_new_source_is_one_declaration() -> None:
    """What issue-style additions rely on: a table with one more spec gets its own quota
    setting, and the registry still rejects clashes."""
    free_bit = max(s.bit for s in SOURCES) + 1
    extended = SourceTable([*SOURCES, _spec("covisit", free_bit)])
    quotas = quotas_model(extended)()
    assert quotas.of("covisit") == 5 and quotas.of("als") == SOURCES["als"].quota
    assert extended.by_bit()[-1].name == "covisit"
    assert extended.names_of(ALS | (1 << free_bit)) == ["als", "covisit"]


@pytest.mark.parametrize(
    ("specs", "message"),
    [
        ([_spec("a", 0), _spec("a", 1)], "names repeat"),
        ([_spec("a", 0), _spec("b", 0)], "bits repeat"),
        ([_spec("a", MAX_SOURCES)], "outside"),
        ([_spec("not a name", 1)], "identifier"),
    ],
)
def test_the_registry_rejects_clashes(specs: list[SourceSpec], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SourceTable(specs)


def test_sources_with_no_quota_are_not_built(
    fitted: tuple[CandidateModel, Settings, pl.DataFrame],
) -> None:
    from recsys.candidates.model import build_sources

    inputs = inputs_for(fitted, "exact")
    no_fresh = inputs.config.quotas.model_copy(update={"fresh": 0, "als": 0})
    config = inputs.config.model_copy(update={"quotas": no_fresh})
    built = [a.spec.name for a in build_sources(dataclasses.replace(inputs, config=config))]
    # ALS fills the rest, so it is built even with no quota of its own; order is priority order
    assert built == [n for n in SOURCES.names if n != "fresh"]


# --------------------------------------------------------------------------- the parts


def test_item_to_item_needs_history(
    fitted: tuple[CandidateModel, Settings, pl.DataFrame],
) -> None:
    model = fitted[0]
    source = ItemToItemSource(nearest_items(model.items.factors_normed, 10))
    out = source.candidates(batch_of(model, 7), 5)
    assert (out[1] == -1).all()  # no history, no neighbours
    assert (out[0] >= 0).sum() > 0


def test_top_unique_keeps_best_score_per_item() -> None:
    ids = np.array([[5, 7, 5, 9], [1, 1, 1, -1]])
    score = np.array([[0.1, 0.5, 0.9, 0.2], [0.3, 0.2, 0.1, -np.inf]])
    out = top_unique_per_row(ids, score, 3)
    assert out.tolist() == [[5, 7, 9], [1, -1, -1]]


def test_nearest_items_excludes_self() -> None:
    x = np.eye(5, dtype=np.float32)
    x[1] = x[0]  # item 1 is a copy of item 0
    nbrs = nearest_items(x, 2)
    assert (nbrs.ids != np.arange(5)[:, None]).all()
    assert nbrs.ids[0, 0] == 1 and nbrs.ids[1, 0] == 0
    assert nbrs.sims[0, 0] == pytest.approx(1.0)


def test_content_vectors_put_shared_genres_close() -> None:
    mask = np.array([0b011, 0b011, 0b100, 0b001], dtype=np.uint64)
    titles = pl.Series(["Star Wars", "Star Trek", "Cooking", None])
    v = content_vectors(mask, titles, np.array([1.0, 1.0, 1.0, 1.0]))
    sim = v @ v.T
    assert sim[0, 1] > sim[0, 3] > sim[0, 2]
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)


def _rows(m: np.ndarray) -> list[list[int]]:
    return [list(r) for r in m]


def test_merge_quotas_dedupe_flags_and_fill() -> None:
    als = SourceList(np.array([[1, 2, 3, 4, 5, 6]]), ALS, quota=2, width=6)
    pop = SourceList(np.array([[2, 9, 8, 7]]), POPULAR, quota=2, width=4)
    fresh = SourceList(np.array([[9, 10, -1, -1]]), FRESH, quota=1, width=2)
    seen = np.array([3], dtype=np.int64)  # row 0 has seen item 3
    out = merge([als, pop, fresh], seen, n_items=20, per_user=7)
    got = dict(zip(out.items.tolist(), out.flags.tolist(), strict=True))
    # quotas: ALS {1,2}; popular {9,8} (2 was taken); fresh {10} (9 was taken);
    # fill to 7 with leftovers in priority order: ALS 4, 5 (3 is seen)
    assert set(got) == {1, 2, 9, 8, 10, 4, 5}
    assert got[2] == ALS | POPULAR  # found by both, one slot
    assert got[9] == POPULAR | FRESH
    assert got[10] == FRESH
    assert out.offsets.tolist() == [0, 7]


def test_a_source_offers_only_its_width_of_unseen_items() -> None:
    als = SourceList(np.array([[1, 2], [1, 2]]), ALS, quota=0, width=2)
    pop = SourceList(np.array([[5, 6, 1, 2], [5, 6, 1, 2]]), POPULAR, quota=4, width=2)
    seen = np.array([0 * 20 + 5], dtype=np.int64)  # row 0 has seen item 5
    out = merge([als, pop], seen, n_items=20, per_user=10)
    rows = np.split(out.items, out.offsets[1:-1])
    flags = np.split(out.flags, out.offsets[1:-1])
    # row 0: popular's two unseen are 6 and 1, so 1 is flagged popular and 2 is not
    f0 = dict(zip(rows[0].tolist(), flags[0].tolist(), strict=True))
    assert f0 == {6: POPULAR, 1: ALS | POPULAR, 2: ALS}
    f1 = dict(zip(rows[1].tolist(), flags[1].tolist(), strict=True))
    assert f1 == {5: POPULAR, 6: POPULAR, 1: ALS, 2: ALS}


def test_merge_of_nothing_is_empty() -> None:
    empty = SourceList(np.full((3, 4), -1), FRESH, quota=4, width=4)
    out = merge([empty], np.empty(0, np.int64), n_items=10, per_user=5)
    assert out.offsets.tolist() == [0, 0, 0, 0]
    assert len(out.items) == len(out.flags) == 0


def test_merge_caps_at_per_user_and_handles_many_rows() -> None:
    rng = np.random.default_rng(3)
    a = SourceList(rng.integers(0, 50, size=(4, 30)), ALS, quota=30, width=30)
    b = SourceList(rng.integers(0, 50, size=(4, 30)), POPULAR, quota=30, width=30)
    out = merge([a, b], np.empty(0, np.int64), n_items=50, per_user=12)
    assert np.diff(out.offsets).tolist() == [12, 12, 12, 12]
    for r in range(4):
        row = out.items[out.offsets[r] : out.offsets[r + 1]]
        assert len(set(row.tolist())) == 12
