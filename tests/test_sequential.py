"""The sequential candidate source and features, and ranked cold start (issue 14)."""

from collections.abc import Iterator

import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient

from recsys.candidates.neighbours import ItemNeighbours
from recsys.candidates.registry import SOURCES
from recsys.candidates.sequential import SequentialSource, summed_per_row
from recsys.candidates.source import UserBatch
from recsys.features import FEATURE_NAMES, RequestContext, build_features
from recsys.serving import ServingModel, apply_events, cold_start_state
from recsys.store.codec import decode_user_state
from recsys.store.events import WatchEvent
from recsys.store.user_store import read_user
from tests.test_api_support import Built, api_client


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


# --------------------------------------------------------------------------- through the API


@pytest.fixture(scope="module")
def api(built: Built) -> Iterator[TestClient]:
    """Deadlines no busy test machine can miss: these tests are about what is answered."""
    with api_client(built, built.with_serve(deadline_ms=10_000, redis_timeout_ms=5_000)) as c:
        yield c


@pytest.fixture(scope="module")
def model(built: Built) -> ServingModel:
    return ServingModel.load(built.artifacts, built.version)  # what the API loads from disk


SEQ = [FEATURE_NAMES.index(n) for n in ("seq_trans_last1", "seq_trans_last3", "seq_rank_last")]
TS = 1_800_000_000


def served_features(built: Built, model: ServingModel, user: str) -> tuple[np.ndarray, np.ndarray]:
    """(candidates, features) exactly as the API computes them for ``user`` right now."""
    with redis.Redis.from_url(built.settings.redis_url or "") as client:
        record = read_user(client, built.keys, built.version, user, 100)
    assert record.state is not None
    state = apply_events(decode_user_state(record.state), record.events, model)
    return state.cand_item, build_features([state], [RequestContext(TS, 0)], model.items)


def test_a_watch_changes_the_sequential_features(
    built: Built, api: TestClient, model: ServingModel
) -> None:
    items = model.items
    user = built.known_users(3)[2]
    before_items, before = served_features(built, model, user)
    # watch a candidate that leads somewhere: its next items become "what follows the last watch"
    watch = next(int(c) for c in before_items if (items.transitions.ids[c] >= 0).sum() >= 3)
    body = {"user_id": user, "item_id": str(items.ids_list[watch]), "timestamp": TS}
    assert api.post("/events", json=body).status_code == 202
    after_items, after = served_features(built, model, user)
    assert watch not in after_items
    common, at_before, at_after = np.intersect1d(before_items, after_items, return_indices=True)
    assert len(common) == len(after_items)  # only the watched item left the candidates
    changed = before[at_before][:, SEQ] != after[at_after][:, SEQ]
    assert changed.any(axis=0).all()  # every sequential feature moved for some candidate
    # and they now describe the new watch: its next items carry its transition probabilities
    nxt = items.transitions.ids[watch]
    last1 = after[at_after, FEATURE_NAMES.index("seq_trans_last1")]
    checked = 0
    for item, prob in zip(nxt[nxt >= 0], items.transitions.sims[watch][nxt >= 0], strict=True):
        if item in common:
            assert last1[np.flatnonzero(common == item)[0]] == np.float32(prob)
            checked += 1
    assert checked > 0


def test_a_new_user_with_events_is_ranked_not_given_popular_items(
    built: Built, api: TestClient, model: ServingModel
) -> None:
    items = model.items
    history = built.result.candidate_model.history
    u = int(np.argmax(np.diff(history.offsets)))  # someone with a long history to borrow
    watched = history.item[history.offsets[u] : history.offsets[u] + 3]
    ids = [str(items.ids_list[i]) for i in watched]
    for j, item_id in enumerate(ids):
        body = {"user_id": "cold-ranked", "item_id": item_id, "timestamp": TS + j}
        assert api.post("/events", json=body).status_code == 202
    ranked = api.get("/recommendations/cold-ranked", params={"k": 20, "ts": TS + 60}).json()
    assert ranked["fallback"] is None
    got = [str(i["item_id"]) for i in ranked["items"]]
    assert len(got) == 20 and not set(got) & set(ids)
    # not popularity order: the answer to a user with no events (popular items) differs
    plain = api.get("/recommendations/cold-no-events", params={"k": 40}).json()
    assert plain["fallback"] == "cold-start"
    assert got != [str(i["item_id"]) for i in plain["items"] if str(i["item_id"]) not in ids][:20]
    # candidates from the build's sources anchored on the events, best stage-1 score first
    state = cold_start_state(model, [WatchEvent(i, TS + j, "tv") for j, i in enumerate(ids)])
    assert state is not None and state.hist_item.tolist() == watched.tolist()
    assert len(state.cand_item) == built.settings.candidates.per_user
    assert not np.isin(watched, state.cand_item).any()
    found = np.bitwise_or.reduce(state.cand_sources)
    assert found & SOURCES["sequential"].flag and found & SOURCES["item_factors"].flag
    following = set(items.transitions.ids[watched].ravel()) - {-1}
    assert following & set(state.cand_item[(state.cand_sources & SOURCES["sequential"].flag) > 0])
    assert np.all(np.diff(state.cand_score) <= 0)  # stored best first, as the build's are


def test_cold_start_without_a_known_item_is_none(model: ServingModel) -> None:
    assert cold_start_state(model, [WatchEvent("no-such-item", TS, "tv")]) is None
    assert cold_start_state(model, []) is None


def test_fold_in_places_a_known_user_near_their_als_vector(built: Built) -> None:
    fit = built.result.candidate_model
    cos = []
    for u in range(40):
        row = fit.seen[u]
        x = fit.fold_in.user_vector(fit.factors.item, row.indices, row.data)
        y = fit.factors.user[u]
        cos.append(x @ y / (np.linalg.norm(x) * np.linalg.norm(y)))
    assert np.median(cos) > 0.95


def test_a_new_users_skips_and_exclusions_leave_the_ranked_answer(
    built: Built, api: TestClient, model: ServingModel
) -> None:
    """Issue 15 on issue 14's ranked cold start: only positive events anchor a new user (a skip
    is not taste), every reacted-to or excluded item stays out of the answer, and the answer
    can be explained like a known user's."""
    items = model.items
    history = built.result.candidate_model.history
    u = int(np.argsort(np.diff(history.offsets))[-2])  # another user with a long history
    watched = history.item[history.offsets[u] : history.offsets[u] + 3]
    ids = [str(items.ids_list[i]) for i in watched]
    for j, item_id in enumerate(ids):
        for user in ("cold-watches", "cold-and-skips"):
            body = {"user_id": user, "item_id": item_id, "timestamp": TS + j}
            assert api.post("/events", json=body).status_code == 202
    params = {"k": 20, "ts": TS + 60}
    first = [
        str(i["item_id"])
        for i in api.get("/recommendations/cold-watches", params=params).json()["items"]
    ]
    skip, leave = first[0], first[1]
    body = {"user_id": "cold-and-skips", "item_id": skip, "timestamp": TS + 10, "type": "skip"}
    assert api.post("/events", json=body).status_code == 202
    answer = api.get(
        "/recommendations/cold-and-skips", params={**params, "exclude": leave, "explain": "true"}
    ).json()
    assert answer["fallback"] is None
    got = [str(i["item_id"]) for i in answer["items"]]
    assert len(got) == 20 and not {skip, leave} & set(got)
    assert all(i["explanation"]["sources"] for i in answer["items"])  # stage 1 proposed each
    events = [WatchEvent(i, TS + j, "tv") for j, i in enumerate(ids)]
    state = cold_start_state(model, [*events, WatchEvent(skip, TS + 10, "tv", type="skip")])
    assert state is not None and state.hist_item.tolist() == watched.tolist()
    assert items.index_of(skip) not in state.cand_item
    # a new user whose only known event is a skip has nothing to start from: popular items,
    # minus the skipped and the excluded ones
    only = [WatchEvent(items.ids_list[int(items.popular[0])], TS, "tv", type="dislike")]
    assert cold_start_state(model, only) is None
    body = {"user_id": "cold-only-dislikes", "item_id": only[0].item_id, "timestamp": TS}
    assert api.post("/events", json={**body, "type": "dislike"}).status_code == 202
    top = str(items.ids_list[int(items.popular[1])])
    plain = api.get("/recommendations/cold-only-dislikes", params={"k": 10, "exclude": top}).json()
    assert plain["fallback"] == "cold-start"
    shown = [str(i["item_id"]) for i in plain["items"]]
    assert len(shown) == 10 and str(only[0].item_id) not in shown and top not in shown
