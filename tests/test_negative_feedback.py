"""Negative feedback reaches the next build: the data contract's type column, what a build
makes of skips and dislikes, and the event export from the API into the next build's data."""

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import redis
from fastapi.testclient import TestClient

from cli.main import main
from recsys.columns import Columns
from recsys.data.dataset import Dataset, write_dataset
from recsys.data.load import load_dataset
from recsys.errors import DataError
from recsys.events_index import index_events
from recsys.ids import IdIndex
from recsys.pipeline import run_build
from recsys.ranking.training_set import (
    NEGATIVE_GRADE,
    candidate_relevance,
    label_grades,
    sample_negatives,
)
from recsys.store.codec import decode_user_state
from recsys.store.keys import Keys
from tests.test_api_support import Built


def _write(tmp: Path, interactions: str) -> Path:
    tmp.mkdir(parents=True)
    (tmp / "interactions.csv").write_text(interactions)
    (tmp / "items.csv").write_text("item_id\n10\n20\n30\n")
    return tmp


def test_the_type_column_is_validated_and_defaults_to_watch(tmp_path: Path) -> None:
    good = _write(
        tmp_path / "good", "user_id,item_id,timestamp,type\n1,10,5,skip\n1,20,6,\n2,30,7,dislike\n"
    )
    (good / "x").mkdir()
    data = load_dataset(good)
    assert data.interactions[Columns.event_type].to_list() == ["skip", "watch", "dislike"]
    write_dataset(data, good / "x")
    assert load_dataset(good / "x").interactions.equals(data.interactions)
    bad = _write(tmp_path / "bad", "user_id,item_id,timestamp,type\n1,10,5,like\n1,20,6,Watch\n")
    with pytest.raises(DataError) as info:
        load_dataset(bad)
    assert str(info.value) == (
        "interactions.csv: column 'type' has 2 unknown event types (e.g. 'like', 'Watch'): "
        "expected one of watch, click, skip, dislike"
    )


def test_negative_labels_are_kept_as_negatives() -> None:
    events = pl.DataFrame(
        {
            Columns.user: [1, 1, 1, 1],
            Columns.item: [10, 20, 30, 30],
            Columns.timestamp: [1, 2, 3, 4],
            Columns.weight: [1.0] * 4,
            Columns.device: ["tv"] * 4,
            Columns.completion: [0.95, None, None, 0.3],
            Columns.event_type: ["watch", "dislike", "skip", "watch"],
        }
    )
    indexed = index_events(events, IdIndex.from_values(events[Columns.user]),
                           IdIndex(pl.Series([10, 20, 30, 40])), ["tv"])  # fmt: skip
    grades = label_grades(indexed)
    assert grades.tolist() == [3, NEGATIVE_GRADE, NEGATIVE_GRADE, 1]
    candidates = np.array([3, 1, 0, 2], dtype=np.int32)  # items 40, 20, 10, 30
    rel = candidate_relevance(candidates, indexed.item, grades)
    assert rel.tolist() == [0, NEGATIVE_GRADE, 3, 1]  # a watch after a skip is a watch
    keep = sample_negatives(rel, 0, np.random.default_rng(0))
    assert keep.tolist() == [1, 2, 3]  # the disliked candidate stays, unsampled


def test_a_build_learns_taste_from_positives_and_excludes_every_reaction(
    built: Built, redis_url: str, tmp_path: Path, redis_client: redis.Redis
) -> None:
    inter = built.dataset.interactions
    user = int(inter[Columns.user][0])
    rows = inter.filter(pl.col(Columns.user) == user)
    # two items this user never watched: one disliked, one skipped
    unseen = built.dataset.items.filter(~pl.col(Columns.item).is_in(rows[Columns.item].implode()))
    disliked, skipped = unseen[Columns.item][0], unseen[Columns.item][1]
    last = int(rows[Columns.timestamp].max())  # type: ignore[arg-type]
    extra = rows.head(2).with_columns(
        pl.Series(Columns.item, [disliked, skipped]),
        pl.Series(Columns.timestamp, [last + 10, last + 20]),
        pl.Series(Columns.event_type, ["dislike", "skip"]).cast(inter.schema[Columns.event_type]),
    )
    dataset = Dataset(pl.concat([inter, extra]).sort(Columns.timestamp), built.dataset.items)
    settings = built.settings.model_copy(update={"key_prefix": f"{built.settings.key_prefix}-neg"})
    result = run_build(dataset, tmp_path, redis_client, settings)
    blob = redis_client.get(Keys(settings.key_prefix).user_state(result.version, str(user)))
    assert blob is not None
    state = decode_user_state(blob)
    model = result.candidate_model
    idx = {int(model.items.item_ids[i]): i for i in range(model.items.n_items)}
    assert idx[disliked] not in state.cand_item and idx[skipped] not in state.cand_item
    # not taste: the history and the popularity count only the user's watches
    assert state.n_events == rows.height
    assert idx[disliked] not in state.hist_item.tolist()
    watched_count = int((inter[Columns.item] == disliked).sum())
    assert model.items.pop_all[idx[disliked]] == pytest.approx(np.log1p(watched_count))


def test_api_events_reach_the_next_build(
    api: TestClient,
    built: Built,
    redis_url: str,
    tmp_path: Path,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """POST /events -> recsys events export -> recsys build: the next build has them."""
    user = built.known_users(3)[2]
    body = api.get(f"/recommendations/{user}", params={"k": 3}).json()
    top = [i["item_id"] for i in body["items"]]
    event = {"user_id": user, "item_id": top[0], "timestamp": 1_800_000_000, "type": "dislike"}
    for _ in range(2):  # a retried delivery: stored twice, exported once
        assert api.post("/events", json=event).status_code == 202
    api.post("/events", json={"user_id": user, "item_id": top[1], "timestamp": 1_800_000_100,
                              "completion": 1.0, "request_id": body["request_id"]})  # fmt: skip
    api.post("/events", json={"user_id": "api-newcomer", "item_id": top[2], "type": "click",
                              "timestamp": 1_800_000_200})  # fmt: skip
    data = tmp_path / "data"
    write_dataset(built.dataset, data)
    monkeypatch.setenv("RECSYS_KEY_PREFIX", built.settings.key_prefix)
    out = tmp_path / "next"
    args = ["events", "export", str(out), "--data", str(data), "--redis-url", redis_url]
    assert main(args) == 0
    merged = load_dataset(out)
    added = merged.interactions.filter(pl.col(Columns.timestamp) >= 1_800_000_000)
    assert added.select(Columns.user, Columns.item, Columns.event_type).rows() == [
        (user, top[0], "dislike"),
        (user, top[1], "watch"),
        ("api-newcomer", top[2], "click"),
    ]
    assert merged.interactions.height == built.dataset.interactions.height + 3
    # user ids became text (an API user the dataset never had); everything else is unchanged
    before = built.dataset.interactions.with_columns(pl.col(Columns.user).cast(pl.String))
    kept = merged.interactions.filter(pl.col(Columns.timestamp) < 1_800_000_000)
    assert kept.sort(kept.columns).equals(before.sort(before.columns))
    # exporting again into the merged data adds nothing
    assert main(["events", "export", str(tmp_path / "again"), "--data", str(out),
                 "--redis-url", redis_url]) == 0  # fmt: skip
    assert load_dataset(tmp_path / "again").interactions.height == merged.interactions.height
    # the next build excludes the disliked item and learned the watch
    settings = built.settings.model_copy(update={"key_prefix": f"{built.settings.key_prefix}-x"})
    result = run_build(merged, tmp_path / "art", redis_client, settings)
    blob = redis_client.get(Keys(settings.key_prefix).user_state(result.version, user))
    assert blob is not None
    state = decode_user_state(blob)
    ids = result.candidate_model.items.ids_list
    assert top[0] not in [ids[i] for i in state.cand_item]
    assert [ids[i] for i in state.hist_item][-1] == top[1]


def test_export_needs_a_redis_and_refuses_to_overwrite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["events", "export", str(tmp_path / "x")]) == 2
    assert "give --redis-url, or --artifacts" in capsys.readouterr().err
    data = tmp_path / "d"
    data.mkdir()
    assert (
        main(["events", "export", str(data), "--data", str(data), "--redis-url", "redis://x"]) == 2
    )
    assert "not over it" in capsys.readouterr().err
