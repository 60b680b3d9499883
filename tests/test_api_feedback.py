"""Closing the loop through the HTTP API on a real Redis: event types, exclusions, request ids,
the impression and event logs, explanations and the live online counters."""

import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from recsys.candidates.registry import SOURCES
from recsys.features import FEATURE_NAMES, RequestContext
from recsys.feedback import EVENT_TYPES
from recsys.serving import ServingModel, apply_events, rank
from recsys.store.codec import decode_user_state
from recsys.store.events import WatchEvent
from recsys.store.feedback_log import read_impressions, read_logged_events
from tests.test_api_support import Built, api_client

# Budgets a busy shared machine cannot miss, where a test compares answers: a Redis read that
# times out would turn a ranked answer into a popular-items fallback.
ROOMY: dict[str, Any] = {"redis_timeout_ms": 5000, "deadline_ms": 20_000}


@pytest.fixture(scope="module")
def api(built: Built) -> Iterator[TestClient]:
    """The module's app, with budgets that keep every answer ranked on a busy machine: a
    redis-unavailable answer cannot read the user's events, so it could show one of them."""
    with api_client(built, built.with_serve(**ROOMY)) as client:
        yield client


def _items(body: dict[str, Any]) -> list[str]:
    return [str(i["item_id"]) for i in body["items"]]


def _ask(api: TestClient, user: str, **params: Any) -> dict[str, Any]:
    r = api.get(f"/recommendations/{user}", params={"k": 50, **params})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def _post(api: TestClient, user: str, item: str | int, **fields: Any) -> None:
    r = api.post("/events", json={"user_id": user, "item_id": item, **fields})
    assert r.status_code == 202, r.text


def _metrics(api: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = api.get("/metrics").text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_an_item_the_user_reacted_to_never_comes_back(
    api: TestClient, built: Built, event_type: str
) -> None:
    """Whatever the event, the item leaves that user's answers at once, for known users (the
    ranker's path) and unknown ones (cold start), and stays out."""
    known = built.known_users(40)[EVENT_TYPES.index(event_type)]
    for user in (known, f"new-{event_type}"):
        gone = []
        for _ in range(3):  # the top item each time, so the answer keeps changing
            body = _ask(api, user)
            top = body["items"][0]["item_id"]
            _post(api, user, top, type=event_type, request_id=body["request_id"])
            gone.append(str(top))
            later = _ask(api, user)
            assert not set(gone) & set(_items(later)), f"{event_type} of {gone} came back"
        assert not set(gone) & set(_items(_ask(api, user, k=500)))
        assert not set(gone) & set(_items(_ask(api, user, k=5, explain="true")))


def test_skips_and_dislikes_leave_the_candidates_but_not_the_history(
    built: Built, redis_client: redis.Redis
) -> None:
    """What the next answer is computed from: every event's item leaves the candidates; a watch
    or click joins the history (features change), a skip or dislike does not."""
    model = ServingModel.load(built.artifacts, built.version)
    user = built.known_users(1)[0]
    blob = redis_client.get(built.keys.user_state(built.version, user))
    assert blob is not None
    state = decode_user_state(blob)
    item = model.items.ids_list[int(state.cand_item[0])]
    ts = int(state.hist_ts[-1]) + 60
    for event_type in EVENT_TYPES:
        event = WatchEvent(item, ts, "tv", 0.9, type=event_type)  # type: ignore[arg-type]
        after = apply_events(state, [event], model)
        assert len(after.cand_item) == len(state.cand_item) - 1
        assert state.cand_item[0] not in after.cand_item
        joined = event_type in ("watch", "click")
        assert after.n_events == state.n_events + joined
        assert (after.hist_item[-1] == state.cand_item[0]) == joined
        if not joined:
            np.testing.assert_array_equal(after.hist_item, state.hist_item)
            np.testing.assert_array_equal(after.hist_ts, state.hist_ts)


def test_excluded_items_are_left_out(api: TestClient, built: Built) -> None:
    user = built.known_users(1)[0]
    top = _items(_ask(api, user, k=10))
    body = _ask(api, user, k=10, exclude=",".join([*top[:4], "not-an-item"]))
    assert not set(top[:4]) & set(_items(body))
    assert _items(body)[:6] == top[4:]  # the same order for the rest
    cold = _items(_ask(api, "exclude-cold", k=5))
    assert not set(cold[:2]) & set(_items(_ask(api, "exclude-cold", exclude=",".join(cold[:2]))))


def test_more_than_100_exclusions_is_a_422_saying_so(api: TestClient) -> None:
    r = api.get("/recommendations/7", params={"exclude": ",".join(map(str, range(101)))})
    assert r.status_code == 422
    (error,) = r.json()["detail"]
    assert error["loc"] == ["query", "exclude"]
    assert error["msg"] == "at most 100 item ids may be excluded, got 101"
    hundred = ",".join(map(str, range(100)))
    assert api.get("/recommendations/7", params={"exclude": hundred}).status_code == 200


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("type", "like", "'watch', 'click', 'skip' or 'dislike'"),
        ("type", 1, "'watch', 'click', 'skip' or 'dislike'"),
        ("request_id", "x" * 65, "at most 64 characters"),
        ("request_id", "", "at least 1 character"),
    ],
)
def test_bad_event_type_or_request_id_is_a_422(
    api: TestClient, field: str, value: object, fragment: str
) -> None:
    r = api.post("/events", json={"user_id": "7", "item_id": 1, field: value})
    assert r.status_code == 422
    (error,) = r.json()["detail"]
    assert error["loc"] == ["body", field] and fragment in error["msg"]


def test_every_answer_is_logged_under_its_request_id(
    api: TestClient, built: Built, redis_client: redis.Redis
) -> None:
    keys, shards = built.keys, built.settings.log.shards
    since_ms = time.time_ns() // 1_000_000
    users = [*built.known_users(5), "log-cold"]
    bodies = [_ask(api, u, k=7, device="tv", ts=1_700_000_000) for u in users]
    assert len({b["request_id"] for b in bodies}) == len(bodies)
    assert {b["arm"] for b in bodies} == {"champion"}
    _post(api, users[0], bodies[0]["items"][2]["item_id"], type="click", completion=0.5,
          request_id=bodies[0]["request_id"])  # fmt: skip
    deadline = time.monotonic() + 5
    while True:  # written in batches, off the request path
        logged = {i.request_id: i for i in read_impressions(redis_client, keys, shards, since_ms)}
        if all(b["request_id"] in logged for b in bodies) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    for user, body in zip(users, bodies, strict=True):
        imp = logged[body["request_id"]]
        assert (imp.user_id, imp.build, imp.arm, imp.fallback) == (
            user, body["model_version"], "champion", body["fallback"]
        )  # fmt: skip
        assert [str(i) for i in imp.items] == _items(body)
        assert imp.scores == [i["score"] for i in body["items"]]
        assert (imp.ts, imp.device) == (1_700_000_000, "tv")
    (event,) = read_logged_events(redis_client, keys, shards, since_ms)
    assert (event.user_id, event.type, event.event.request_id, event.event.completion) == (
        users[0], "click", bodies[0]["request_id"], 0.5
    )  # fmt: skip
    assert str(event.event.item_id) == _items(bodies[0])[2]


def test_live_online_counters(api: TestClient, built: Built) -> None:
    before = _metrics(api)
    user = built.known_users(70)[-1]
    body = _ask(api, user, k=10)
    _post(api, user, body["items"][0]["item_id"], completion=0.8, request_id=body["request_id"])
    _post(api, user, body["items"][1]["item_id"], type="dislike")
    after = _metrics(api)

    def grew(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert grew("recsys_online_answers_total", arm="champion", fallback="none") == 1
    assert grew("recsys_online_items_shown_total", arm="champion") == 10
    assert 0 < grew("recsys_online_shown_popularity_total", arm="champion") <= 10
    assert grew("recsys_online_events_total", arm="champion", type="watch", attributed="yes") == 1
    assert grew("recsys_online_events_total", arm="champion", type="dislike", attributed="no") == 1
    assert grew("recsys_online_watch_completion_sum", arm="champion") == pytest.approx(0.8)
    coverage = after[("recsys_online_catalogue_coverage", (("arm", "champion"),))]
    assert 10 / built.dataset.n_items <= coverage <= 1
    assert after[("recsys_impressions_total", (("outcome", "dropped"),))] == 0


def test_explanations(built: Built) -> None:
    """Sources from the registry, stage-1 rank and score as stored, and SHAP values that add up
    (with the expected value) to the ranker's score when every feature is listed."""
    settings = built.with_serve(explain_features=len(FEATURE_NAMES), **ROOMY)
    with api_client(built, settings) as api:
        user = built.known_users(2)[1]
        plain = _ask(api, user, k=20, ts=1_700_000_000)
        body = _ask(api, user, k=20, ts=1_700_000_000, explain="true")
    assert _items(body) == _items(plain)
    ranks = []
    for item in body["items"]:
        why = item["explanation"]
        assert why["sources"] and set(why["sources"]) <= set(SOURCES.names)
        assert why["ranker_score"] == item["score"]
        assert len(why["contributions"]) == len(FEATURE_NAMES)
        assert {c["feature"] for c in why["contributions"]} == set(FEATURE_NAMES)
        total = why["expected_value"] + sum(c["contribution"] for c in why["contributions"])
        assert total == pytest.approx(why["ranker_score"], abs=1e-4)
        magnitudes = [abs(c["contribution"]) for c in why["contributions"]]
        assert magnitudes == sorted(magnitudes, reverse=True)
        ranks.append(why["stage1_rank"])
    assert len(set(ranks)) == len(ranks) and min(ranks) >= 0
    # an answer without the ranker explains what it can: popular items have no stage 1
    cold = _ask_plain(built, "explain-cold")
    assert cold["fallback"] == "cold-start"
    assert all(i["explanation"]["sources"] == [] for i in cold["items"])
    assert all(i["explanation"]["ranker_score"] is None for i in cold["items"])


def _ask_plain(built: Built, user: str) -> dict[str, Any]:
    with api_client(built, built.with_serve(**ROOMY)) as api:
        return _ask(api, user, k=5, explain="true")


def test_a_ranker_timeout_explains_stage_one(built: Built) -> None:
    """With no time to rank, items come in stage-1 order: ranks 0, 1, 2... and no ranker."""
    settings = built.with_serve(deadline_ms=0.001, redis_timeout_ms=5000)
    with api_client(built, settings) as api:
        body = _ask(api, built.known_users(3)[2], k=5, explain="true")
    assert body["fallback"] == "ranker-timeout"
    whys = [i["explanation"] for i in body["items"]]
    assert [w["stage1_rank"] for w in whys] == list(range(5))
    assert all(w["ranker_score"] is None and w["contributions"] == [] for w in whys)
    assert [w["stage1_score"] for w in whys] == pytest.approx(
        [i["score"] for i in body["items"]], abs=1e-6
    )
    assert np.all(np.diff([w["stage1_score"] for w in whys]) <= 0)


def test_explanations_that_miss_the_deadline_keep_the_ranked_answer(
    api: TestClient, built: Built, redis_client: redis.Redis
) -> None:
    """Past the deadline, an explained answer keeps its order and ranker scores, with stage-1
    facts and no contributions, rather than falling back."""
    service = api.app.state.service  # type: ignore[attr-defined]
    model = ServingModel.load(built.artifacts, built.version)
    user = built.known_users(4)[3]
    blob = redis_client.get(built.keys.user_state(built.version, user))
    assert isinstance(blob, bytes)
    state = decode_user_state(blob)
    ctx = RequestContext(ts=1_700_000_000, device=0)
    ranked = rank(model, [state], [ctx], 5)[0]
    late = time.perf_counter() - service.deadline_s - 1  # arrived longer ago than the deadline
    whys = api.portal.call(service._explain, model, state, ctx, ranked, late)  # type: ignore[union-attr]
    assert [w.ranker_score for w in whys] == pytest.approx(ranked.scores.tolist())
    assert [w.stage1_rank for w in whys] == ranked.positions.tolist()  # type: ignore[union-attr]
    assert all(w.contributions == [] and w.expected_value is None for w in whys)
    on_time = api.portal.call(service._explain, model, state, ctx, ranked, time.perf_counter())  # type: ignore[union-attr]
    assert all(len(w.contributions) == built.settings.serve.explain_features for w in on_time)
