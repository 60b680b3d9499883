"""What a build saves for the dashboard (issue 16): item activity, neighbour tables, the audience
of each item, the drift reference and the build history; and live drift's counting."""

import asyncio
import json
import secrets
import threading
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import redis
import redis.asyncio as aioredis

from recsys.artifacts import BuildManifest, read_manifest, write_manifest
from recsys.columns import Columns
from recsys.evaluation.drift import training_window_features
from recsys.features import FEATURE_NAMES, RequestContext
from recsys.inspection.history import (
    HISTORY_FILE,
    BuildHistoryEntry,
    append_history,
    read_history,
)
from recsys.inspection.live_drift import (
    SCORE,
    LiveCounts,
    LiveDriftSampler,
    counts_from_fields,
    live_drift,
    to_fields,
)
from recsys.inspection.records import BinnedReference
from recsys.inspection.tables import FILES, item_activity, load_tables
from recsys.pipeline import run_build
from recsys.psi import bin_counts, bin_edges, psi_of_shares
from recsys.serving import ServingModel, rank
from recsys.store.codec import decode_user_state
from recsys.store.drift_counts import add_live_counts, read_live_counts
from recsys.store.keys import Keys
from recsys.store.user_store import read_states
from tests.test_api_support import Built
from tests.test_eval_records import MANIFEST


def test_a_build_saves_its_tables_and_records_their_cost(built: Built) -> None:
    inspection = built.result.manifest.inspection
    assert inspection is not None
    assert inspection.files == list(FILES)
    on_disk = sum((built.result.path / f).stat().st_size for f in FILES)
    assert inspection.bytes == on_disk > 0
    assert inspection.seconds > 0
    assert {"inspection", "inspection: drift reference"} <= set(built.result.manifest.timings_s)


def test_item_activity_counts_every_event_of_every_item(built: Built) -> None:
    tables = load_tables(built.result.path)
    events = built.dataset.interactions
    item_ids = built.result.candidate_model.items.ids_list
    per_item = dict(events.group_by(Columns.item).len().iter_rows())
    for index in range(0, len(item_ids), 7):
        starts, counts = tables.activity.series(index)
        assert counts.sum() == per_item.get(item_ids[index], 0)
        assert np.all(np.diff(starts) == tables.activity.bucket_s)
    # the day of each event: one item's series matches a count by hand
    item = next(i for i in range(len(item_ids)) if per_item.get(item_ids[i], 0) >= 5)
    ts = events.filter(pl.col(Columns.item) == item_ids[item])[Columns.timestamp].to_numpy()
    starts, counts = tables.activity.series(item)
    by_hand = np.bincount((ts - starts[0]) // 86_400, minlength=len(counts))
    assert counts.tolist() == by_hand.tolist()


def test_weekly_buckets_past_half_a_year() -> None:
    ts = np.array([0, 86_400 * 200, 86_400 * 200 + 5, 86_400 * 400], dtype=np.int64)
    activity = item_activity(np.array([1, 1, 1, 0], dtype=np.int32), ts, 3)
    assert activity.bucket_s == 7 * 86_400
    assert activity.series(1)[1].sum() == 3 and activity.series(2)[1].sum() == 0
    assert activity.series(1)[1][200 // 7] == 2


def test_neighbour_tables_are_the_sources_own(built: Built) -> None:
    tables = load_tables(built.result.path)
    m = built.settings.inspection.neighbours
    expected = {
        s.spec.name: s.source.neighbours  # type: ignore[attr-defined]
        for s in built.result.candidate_model.sources
        if hasattr(s.source, "neighbours")
    }
    assert set(tables.neighbours) == set(expected) == {"item_factors", "item_content", "sequential"}
    for name, table in tables.neighbours.items():
        assert np.array_equal(table.ids, expected[name].ids[:, :m])
        assert np.allclose(table.sims, expected[name].sims[:, :m])


def test_the_audience_is_what_the_ranker_answers_those_users(built: Built, redis_url: str) -> None:
    tables = load_tables(built.result.path)
    audience = tables.audience
    assert audience is not None
    k = built.settings.inspection.audience_k
    assert len(audience.users) == min(built.settings.inspection.audience_users, 300)
    assert audience.reach.sum() == len(audience.users) * k  # every answer has k items here
    model = ServingModel.load(built.artifacts, built.version)
    # re-rank a few of the users the table names, as the API would for the build's time
    checked = 0
    with redis.Redis.from_url(redis_url) as client:
        for item in np.argsort(-audience.reach)[:5].tolist():
            user_pos = int(audience.top_users[item, 0])
            user = audience.users[user_pos]
            blob = read_states(client, built.keys, built.version, [user])[0]
            assert blob is not None
            state = decode_user_state(blob)
            ctx = RequestContext(ts=model.items.as_of_ts, device=int(state.hist_device[-1]))
            answer = rank(model, [state], [ctx], k)[0]
            position = int(audience.top_position[item, 0])
            assert answer.item_idx[position] == item
            assert np.isclose(answer.scores[position], audience.top_score[item, 0], atol=1e-5)
            checked += 1
    assert checked == 5


def test_the_drift_reference_bins_the_training_window(built: Built, redis_url: str) -> None:
    with redis.Redis.from_url(redis_url) as client:
        result = run_build(
            built.dataset, built.artifacts, client, built.settings, keep_training_window=True
        )
    assert result.manifest.inspection is not None and result.training_window is not None
    reference = result.manifest.inspection.drift_reference
    assert reference is not None
    matrix, n = training_window_features(
        result.training_window,
        result.candidate_model.items.devices,
        built.settings,
        built.settings.inspection.drift_requests,
    )
    assert reference.requests == n and reference.rows == len(matrix)
    for j, name in enumerate(FEATURE_NAMES):
        ref, edges = reference.features[name], bin_edges(matrix[:, j])
        assert ref.edges == edges.tolist()
        assert np.allclose(ref.shares, bin_counts(matrix[:, j], edges) / len(matrix), atol=1e-6)
    # what the API loads is what the build saved
    model = ServingModel.load(built.artifacts, result.version)
    assert model.drift_reference == reference


def test_manifests_with_and_without_the_inspection_section_round_trip(
    built: Built, tmp_path: Path
) -> None:
    write_manifest(tmp_path, built.result.manifest)
    assert read_manifest(tmp_path) == built.result.manifest
    older = BuildManifest.model_validate(MANIFEST)
    assert older.inspection is None
    assert "inspection" not in older.to_json_dict()  # an earlier build's manifest is unchanged


def test_the_history_keeps_every_published_build_of_its_prefix(built: Built) -> None:
    entries = read_history(built.artifacts, built.settings.key_prefix)
    versions = [e.build_version for e in entries]
    assert built.version in versions and versions == sorted(versions, reverse=True)
    entry = entries[versions.index(built.version)]
    assert entry.ranker == built.result.manifest.ranker
    assert entry.artifact_bytes > built.result.manifest.inspection.bytes  # type: ignore[union-attr]
    assert read_history(built.artifacts, "another-prefix") == []


def test_a_torn_history_line_is_skipped(built: Built, tmp_path: Path) -> None:
    line = (built.artifacts / HISTORY_FILE).read_text().splitlines()[0]
    (tmp_path / HISTORY_FILE).write_text(f"{line}\n{line[: len(line) // 2]}\n{line}\n")
    prefix = json.loads(line)["key_prefix"]
    assert len(read_history(tmp_path, prefix)) == 2


def test_the_history_keeps_its_last_entries_even_with_builds_appending_together(
    built: Built, tmp_path: Path
) -> None:
    """Bounded by ``inspection.history_entries``: the oldest lines go, every remaining line is
    whole, and of 4 x 15 appends racing in threads 10 survive and none is lost to a
    concurrent trim (what is left of each thread's entries is its newest, with no gap)."""
    line = json.loads((built.artifacts / HISTORY_FILE).read_text().splitlines()[0])
    entry = BuildHistoryEntry.model_validate(line)

    def named(thread: int, i: int) -> BuildHistoryEntry:
        return entry.model_copy(update={"build_version": f"20991231T0000{thread:02d}Z-{i:06x}"})

    for i in range(7):
        append_history(tmp_path, named(0, i), keep=5)
    kept = read_history(tmp_path, entry.key_prefix)
    assert [e.build_version for e in kept] == [named(0, i).build_version for i in (6, 5, 4, 3, 2)]

    racing = tmp_path / "racing"
    racing.mkdir()
    threads = [
        threading.Thread(
            target=lambda t=t: [append_history(racing, named(t, i), keep=10) for i in range(15)]
        )
        for t in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = (racing / HISTORY_FILE).read_text().splitlines()
    assert len(lines) == 10
    versions = [BuildHistoryEntry.model_validate(json.loads(x)).build_version for x in lines]
    assert len(set(versions)) == 10
    for t in range(4):  # trimming drops the oldest first: each thread keeps a suffix of its own
        mine = [int(v[-6:], 16) for v in versions if v.startswith(f"20991231T0000{t:02d}Z")]
        assert mine == list(range(15 - len(mine), 15))
    assert not [p.name for p in racing.iterdir() if p.name.endswith(".tmp")]
    with pytest.raises(ValueError, match="keep"):
        append_history(racing, entry, keep=0)


# ---------------------------------------------------------------------------- live drift


def _reference(rng: np.random.Generator) -> tuple[object, np.ndarray]:
    from recsys.inspection.records import DriftReference

    matrix = rng.normal(size=(2000, len(FEATURE_NAMES))).astype(np.float32)
    matrix[:100, 3] = np.nan
    scores = rng.normal(size=2000).astype(np.float32)
    ref = DriftReference(
        reference="test",
        requests=40,
        rows=2000,
        features={n: BinnedReference.of(matrix[:, j]) for j, n in enumerate(FEATURE_NAMES)},
        score=BinnedReference.of(scores),
    )
    return ref, matrix


def test_the_sampler_takes_one_request_per_interval_and_bins_it_later() -> None:
    rng = np.random.default_rng(0)
    ref, _ = _reference(rng)
    sampler = LiveDriftSampler(ref, FEATURE_NAMES, interval_s=0.1)  # type: ignore[arg-type]
    assert sampler.due(10.0) and not sampler.due(10.05) and sampler.due(10.11)
    live = rng.normal(loc=0.5, size=(500, len(FEATURE_NAMES))).astype(np.float32)
    scores = rng.normal(size=500).astype(np.float32)
    sampler.offer(live, scores)
    sampler.offer(live, scores)
    counts = sampler.drain()
    assert counts.requests == 2 and counts.rows == 1000
    for j, name in enumerate(FEATURE_NAMES):
        edges = ref.features[name].edges_array()  # type: ignore[attr-defined]
        assert counts.counts[name].tolist() == (2 * bin_counts(live[:, j], edges)).tolist()
    assert sampler.drain().requests == 0  # drained once


def test_live_psi_is_the_psi_of_the_counted_shares() -> None:
    rng = np.random.default_rng(1)
    ref, matrix = _reference(rng)
    sampler = LiveDriftSampler(ref, FEATURE_NAMES, interval_s=0.0)  # type: ignore[arg-type]
    same = sampler.bin(matrix, np.zeros(len(matrix), dtype=np.float32))
    view = live_drift(ref, same)  # type: ignore[arg-type]
    assert all(s.psi is not None and s.psi < 1e-3 for s in view.features.values())
    shifted = sampler.bin(matrix + 1.0, np.zeros(len(matrix), dtype=np.float32))
    view = live_drift(ref, shifted)  # type: ignore[arg-type]
    name = FEATURE_NAMES[0]
    counts = shifted.counts[name]
    expected = psi_of_shares(ref.features[name].shares, counts / counts.sum())  # type: ignore[attr-defined]
    assert view.features[name].psi == round(expected, 5)
    assert view.features[name].flag == "major"
    assert live_drift(ref, LiveCounts()).features[name].psi is None  # type: ignore[arg-type]


def test_counts_round_trip_through_redis_and_add_up_over_workers(redis_url: str) -> None:
    rng = np.random.default_rng(2)
    ref, matrix = _reference(rng)
    sampler = LiveDriftSampler(ref, FEATURE_NAMES, interval_s=0.0)  # type: ignore[arg-type]
    one = sampler.bin(matrix[:500], rng.normal(size=500).astype(np.float32))
    two = sampler.bin(matrix[500:800], rng.normal(size=300).astype(np.float32))
    assert counts_from_fields(to_fields(one)).counts.keys() == one.counts.keys()
    keys = Keys(f"test-{secrets.token_hex(4)}")

    async def flush_and_read() -> LiveCounts:
        client = aioredis.Redis.from_url(redis_url)
        try:
            await add_live_counts(client, keys, "20260101T000000Z-abcdef", one, 60)
            await add_live_counts(client, keys, "20260101T000000Z-abcdef", two, 60)
            assert 0 < await client.ttl(keys.live_drift("20260101T000000Z-abcdef")) <= 60
            return await read_live_counts(client, keys, "20260101T000000Z-abcdef")
        finally:
            await client.delete(keys.live_drift("20260101T000000Z-abcdef"))
            await client.aclose()

    total = asyncio.run(flush_and_read())
    assert total.requests == 2 and total.rows == 800
    for name in [*FEATURE_NAMES, SCORE]:
        assert total.counts[name].tolist() == (one.counts[name] + two.counts[name]).tolist()
