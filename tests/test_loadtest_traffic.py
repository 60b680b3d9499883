"""The load test's traffic: the 80/10/10 mix, activity-weighted users, and requests the API
accepts. Unit level: no locust process, no server."""

import random
from collections import Counter
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import polars as pl
import pytest

from api.schemas import EventIn
from loadtest.plan import plan_from_dataset
from loadtest.run import clients_for
from loadtest.traffic import PlannedRequest, TrafficMix, TrafficPlan, TrafficShares
from recsys.columns import Columns
from recsys.data.synth import generate_synthetic
from recsys.durations import parse_duration

N_DRAWS = 20_000


def _plan(**overrides: object) -> TrafficPlan:
    fields: dict[str, object] = {
        "users": ["light", "heavy", "a/b c"],
        "user_weights": [1.0, 8.0, 1.0],
        "items": [10, "x"],
        "item_weights": [3.0, 1.0],
        "devices": ["tv", "mobile"],
        "device_weights": [1.0, 1.0],
        "ts_start": 1_700_000_000,
    }
    fields.update(overrides)
    return TrafficPlan(**fields)  # type: ignore[arg-type]


def _draw(plan: TrafficPlan, n: int = N_DRAWS, seed: int = 0) -> list[PlannedRequest]:
    mix = TrafficMix(plan, random.Random(seed))
    return [mix.next_request() for _ in range(n)]


def test_the_mix_is_80_known_10_unknown_10_events() -> None:
    kinds = Counter(r.kind for r in _draw(_plan()))
    assert kinds["known"] / N_DRAWS == pytest.approx(0.8, abs=0.015)
    assert kinds["unknown"] / N_DRAWS == pytest.approx(0.1, abs=0.01)
    assert kinds["event"] / N_DRAWS == pytest.approx(0.1, abs=0.01)


def test_heavy_users_are_asked_for_in_proportion_to_their_activity() -> None:
    known = [r for r in _draw(_plan()) if r.kind == "known"]
    users = Counter(unquote(urlsplit(r.path).path.rsplit("/", 1)[1]) for r in known)
    assert users["heavy"] / len(known) == pytest.approx(0.8, abs=0.02)
    assert users["light"] / len(known) == pytest.approx(0.1, abs=0.015)


def test_unknown_users_are_new_ids_every_time() -> None:
    unknown = [r.path for r in _draw(_plan()) if r.kind == "unknown"]
    ids = {urlsplit(p).path.rsplit("/", 1)[1] for p in unknown}
    assert len(ids) == len(unknown)
    assert not ids & {"light", "heavy"}


def test_recommendation_requests_carry_context_and_encoded_ids() -> None:
    plan = _plan(user_weights=[0.0, 0.0, 1.0], shares=TrafficShares(1.0, 0.0, 0.0))
    for req in _draw(plan, 200):
        url = urlsplit(req.path)
        assert req.method == "GET"
        assert url.path == "/recommendations/a%2Fb%20c"  # "/" inside an id stays one segment
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        assert query["k"] == "20"
        assert query["device"] in {"tv", "mobile"}
        assert plan.ts_start <= int(query["ts"]) < plan.ts_start + plan.ts_span_s


def test_events_are_bodies_the_api_accepts() -> None:
    plan = _plan(shares=TrafficShares(0.0, 0.0, 1.0))
    events = _draw(plan, 500)
    for req in events:
        assert (req.method, req.path, req.name) == ("POST", "/events", "POST /events")
        event = EventIn.model_validate(req.body)  # the API's own schema, strict types
        assert event.user_id in plan.users
    items = Counter(r.body["item_id"] for r in events if r.body)
    assert items[10] / len(events) == pytest.approx(0.75, abs=0.06)  # by popularity


def test_same_seed_same_traffic() -> None:
    assert _draw(_plan(), 100, seed=3) == _draw(_plan(), 100, seed=3)
    assert _draw(_plan(), 100, seed=3) != _draw(_plan(), 100, seed=4)


def test_shares_must_sum_to_one() -> None:
    with pytest.raises(ValueError, match="sum to 1"):
        TrafficShares(0.8, 0.1, 0.2)


def test_plan_from_data_weights_users_and_items_by_their_events(tmp_path: Path) -> None:
    dataset = generate_synthetic(n_users=200, n_items=80, seed=1, events_per_user=15)
    plan = plan_from_dataset(dataset)
    inter = dataset.interactions
    counts = dict(inter.group_by(Columns.user).len().iter_rows())
    assert len(plan.users) == len(counts)
    for user, weight in zip(plan.users, plan.user_weights, strict=True):
        assert weight == counts[int(user)]
    item_counts = dict(inter.group_by(Columns.item).len().iter_rows())
    assert dict(zip(plan.items, plan.item_weights, strict=True)) == item_counts
    assert set(plan.devices) == set(inter[Columns.device].unique().to_list())
    assert plan.ts_start == inter[Columns.timestamp].max() + 1  # type: ignore[operator]
    path = tmp_path / "plan.json"
    plan.save(path)
    assert TrafficPlan.load(path) == plan


def test_a_log_without_devices_asks_with_one_unknown_device() -> None:
    dataset = generate_synthetic(n_users=50, n_items=30, seed=2, events_per_user=5)
    no_device = type(dataset)(dataset.interactions.drop(Columns.device), dataset.items)
    plan = plan_from_dataset(no_device)
    assert plan.devices == ["unknown"]
    assert isinstance(no_device.interactions, pl.DataFrame)


def test_clients_and_durations() -> None:
    assert clients_for(150, 1.0) == 150
    assert clients_for(150, 0.5) == 75
    assert clients_for(0.1, 1.0) == 1
    assert parse_duration("60s") == 60
    assert parse_duration("2m") == 120
    assert parse_duration("90") == 90
    for bad in ("", "soon", "-5s", "0"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_a_dashboard_that_cannot_open_stops_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """`recsys loadtest --dashboard` without Playwright once ran its steps with no dashboard open
    and reported 0 errors (the import failed outside the thread's handler): it must refuse."""
    import sys

    from loadtest.dashboard import DashboardSession

    monkeypatch.setitem(sys.modules, "playwright.sync_api", None)  # import raises ImportError
    with (
        pytest.raises(RuntimeError, match="did not start"),
        DashboardSession("http://127.0.0.1:9", _plan()),
    ):
        pass
