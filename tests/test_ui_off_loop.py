"""The dashboard never holds up recommendations (issue 16): a page's work runs off the serving
worker's event loop, on one thread of its own, one page at a time.

A real uvicorn server on a real build and Redis. A page's composition is held mid-way by a gate
(a threading event), and while it is held, ``GET /recommendations`` must answer, ranked; on code
that composed pages on the event loop it could not answer until the gate opened, which only
happens after it answered (the bound below is 20 s, against a few ms when it works). Also here:
the item and drift pages of an A/B arm's build (``?arm=``).
"""

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx2 as httpx
import numpy as np
import pytest
import redis

import api.ui.dashboard as dashboard_module
from api.app import create_app
from recsys.pipeline import run_build
from recsys.store.user_store import current_build
from tests.test_api_support import Built, live_server

SPLIT = {"champion": 0.5, "challenger": 0.5}
BOUND_S = 20.0  # generous: an answer takes milliseconds; a blocked loop never answers in time


class Gate:
    """Wraps a function of the dashboard's: the first call waits at the gate until opened."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.entered = threading.Event()
        self.opened = threading.Event()
        self.threads: set[str] = set()
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        self.threads.add(threading.current_thread().name)
        if not self.entered.is_set():
            self.entered.set()
            assert self.opened.wait(60), "the test never opened the gate"
        return self.fn(*args, **kwargs)


@pytest.fixture(scope="module")
def challenger(built: Built) -> str:
    with redis.Redis.from_url(built.settings.redis_url or "") as client:
        result = run_build(
            built.dataset, built.artifacts, client, built.settings, name="challenger"
        )
    return result.version


@pytest.fixture(scope="module")
def server(built: Built, challenger: str) -> Iterator[str]:
    settings = built.with_serve(redis_timeout_ms=500, deadline_ms=2000, ab=SPLIT)
    with live_server(create_app(settings, built.artifacts)) as base:
        yield base


def _get(base: str, path: str, **params: Any) -> httpx.Response:
    return httpx.get(base + path, params=params, timeout=BOUND_S)


@pytest.mark.parametrize(
    ("gated", "page"),
    [
        ("item_view", "item"),  # the item page: composed from the build's tables
        ("history_rows", "user"),  # the user inspector: the user's history
    ],
)
def test_a_page_in_progress_does_not_hold_up_recommendations(
    server: str, built: Built, monkeypatch: pytest.MonkeyPatch, gated: str, page: str
) -> None:
    gate = Gate(getattr(dashboard_module, gated))
    monkeypatch.setattr(dashboard_module, gated, gate)
    user = built.known_users(7)[6]
    item = built.result.candidate_model.items.ids_list[0]
    path = f"/ui/api/items/{item}" if page == "item" else f"/ui/api/users/{user}"
    with ThreadPoolExecutor(2) as browser:
        held: Future[httpx.Response] = browser.submit(_get, server, path)
        try:
            assert gate.entered.wait(BOUND_S), f"the {page} page never reached {gated}"
            second = browser.submit(_get, server, "/ui/api/drift")  # another page meanwhile
            # the page is in progress: a recommendation answers, from the ranker
            answer = _get(server, f"/recommendations/{user}", k=10)
            assert answer.status_code == 200, answer.text
            assert answer.json()["fallback"] is None
            # one page at a time: the second page waits for the first
            assert not second.done()
        finally:
            gate.opened.set()
        assert held.result(BOUND_S).status_code == 200
        assert second.result(BOUND_S).status_code == 200
    assert gate.threads == {"recsys-ui_0"}, "a page is composed on the dashboard's one thread"


def test_the_inspector_answers_as_get_recommendations_from_its_own_thread(
    server: str, built: Built
) -> None:
    """Ranked and explained on the dashboard's thread, the answer is still the API's."""
    for user in built.known_users(12)[8:12]:
        params = {"k": 12, "device": "tv", "ts": 1_707_700_000}
        api = _get(server, f"/recommendations/{user}", **params, explain="true").json()
        view = _get(server, f"/ui/api/users/{user}", **params).json()["answer"]
        assert view["fallback"] is None and api["fallback"] is None
        assert [i["item_id"] for i in view["items"]] == [i["item_id"] for i in api["items"]]
        assert [i["score"] for i in view["items"]] == [i["score"] for i in api["items"]]
        assert [i["explanation"] for i in view["items"]] == [i["explanation"] for i in api["items"]]


def test_item_and_drift_pages_show_the_build_of_the_arm_asked_for(
    server: str, built: Built, challenger: str
) -> None:
    with redis.Redis.from_url(built.settings.redis_url or "") as client:
        champion = current_build(client, built.keys)
    assert champion is not None and champion != challenger
    ids = built.result.candidate_model.items.ids_list
    item = ids[int(np.argmax(built.result.candidate_model.items.pop_all))]
    for arm, version in ((None, champion), ("champion", champion), ("challenger", challenger)):
        extra = {"arm": arm} if arm else {}
        view = _get(server, f"/ui/api/items/{item}", **extra)
        assert view.status_code == 200 and view.json()["model_version"] == version
        drift = _get(server, "/ui/api/drift", **extra)
        assert drift.status_code == 200 and drift.json()["model_version"] == version
    for path in (f"/ui/api/items/{item}", "/ui/api/drift"):
        missing = _get(server, path, arm="nope")
        assert missing.status_code == 404 and "challenger" in missing.json()["detail"]
