"""The closed loop, end to end: simulated users with known tastes ask a two-arm API for
recommendations and post what they did; the online report, read back from the feedback log in
Redis, agrees with the simulator's own counts and tells the normal build from a weakened one."""

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient

from recsys.columns import Columns
from recsys.data.synth import generate_synthetic, synthetic_population
from recsys.evaluation.online import OnlineOptions, load_catalogues, online_report
from recsys.evaluation.records import OnlineReport
from recsys.pipeline import run_build
from recsys.simulation import (
    Population,
    ResponseModel,
    SimulationCounts,
    popularity_only,
    simulate,
    watched_items,
)
from recsys.store.feedback_log import read_impressions, read_logged_events
from recsys.store.keys import Keys
from tests.conftest import small_settings
from tests.test_api_support import Built, api_client

USERS, ITEMS, SEED = 300, 120, 5
START_TS = 1_700_000_000


@dataclass(frozen=True)
class InProcessTransport:
    client: TestClient

    def get(self, path: str, params: Mapping[str, str | int]) -> tuple[int, Any]:
        r = self.client.get(path, params=dict(params))
        return r.status_code, r.json()

    def post(self, path: str, body: Mapping[str, Any]) -> int:
        return self.client.post(path, json=dict(body)).status_code


@dataclass(frozen=True)
class Experiment:
    counts: SimulationCounts
    report: OnlineReport
    logged: int


@pytest.fixture(scope="module")
def experiment(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Experiment]:
    dataset = generate_synthetic(n_users=USERS, n_items=ITEMS, seed=SEED, events_per_user=20)
    # budgets a busy machine cannot miss: every answer ranked, as in an unloaded service
    serve = {"redis_timeout_ms": 5000, "deadline_ms": 20_000, "build_poll_s": 0.05}
    settings = small_settings(
        redis_url, serve={**serve, "ab": {"champion": 0.5, "challenger": 0.5}, "ab_salt": "sim"}
    )
    artifacts = tmp_path_factory.mktemp("artifacts")
    with redis.Redis.from_url(redis_url) as client:
        normal = run_build(dataset, artifacts, client, settings)
        run_build(popularity_only(dataset), artifacts, client, settings, name="challenger")
    built = Built(settings, normal, artifacts, dataset)
    last_ts = int(dataset.interactions[Columns.timestamp].max())  # type: ignore[arg-type]
    population = Population(
        synthetic_population(USERS, ITEMS, SEED),
        watched_items(dataset),
        last_ts,
        ResponseModel(),
        seed=1,
    )
    with api_client(built) as api:
        counts = simulate(
            population, InProcessTransport(api), list(range(USERS)), 4, 10, last_ts + 86400
        )
    # the app has stopped: its impression log wrote what was left on the way out
    keys, shards = Keys(settings.key_prefix), settings.log.shards
    with redis.Redis.from_url(redis_url) as client:
        impressions = read_impressions(client, keys, shards)
        events = read_logged_events(client, keys, shards)
    catalogues = load_catalogues(artifacts, {i.build for i in impressions})
    options = OnlineOptions(window_s=600, resamples=300, permutations=2000)
    report = online_report(impressions, events, catalogues, options)
    yield Experiment(counts, report, len(impressions))


def test_every_answer_is_logged_and_every_event_attributed(experiment: Experiment) -> None:
    counts, report = experiment.counts, experiment.report
    assert counts.failed == 0
    answers = sum(a.answers for a in counts.arms.values())
    assert answers == USERS * 4
    assert experiment.logged == report.impressions == answers
    reactions = sum(a.watches + a.skips + a.dislikes for a in counts.arms.values())
    assert report.events == report.attributed_events == reactions


def test_the_report_counts_what_the_simulator_did(experiment: Experiment) -> None:
    arms = experiment.report.breakdowns["arm"]
    assert set(arms) == set(experiment.counts.arms) == {"champion", "challenger"}
    for name, mine in experiment.counts.arms.items():
        metrics = arms[name].metrics
        assert arms[name].impressions == mine.answers
        assert arms[name].items_shown == mine.shown
        ctr = metrics["ctr@10"].value
        assert ctr is not None and ctr == pytest.approx(mine.ctr_at_10, abs=1e-6)
        assert metrics["watch_rate"].value == pytest.approx(mine.watches / mine.shown, abs=1e-6)
        assert metrics["skip_rate"].value == pytest.approx(mine.skips / mine.shown, abs=1e-6)
        assert metrics["dislike_rate"].value == pytest.approx(mine.dislikes / mine.shown, abs=1e-6)
        ci = metrics["ctr@10"].ci95
        assert ci is not None and ci[0] <= ctr <= ci[1]


def test_the_normal_build_beats_the_popularity_only_one(experiment: Experiment) -> None:
    (comparison,) = experiment.report.comparisons
    assert (comparison.champion, comparison.challenger) == ("champion", "challenger")
    ctr = comparison.metrics["ctr@10"]
    assert ctr["difference"] < 0 and ctr["ci95"][1] < 0
    assert ctr["p_value"] < 0.01
    # the weakened build shows more popular items: it knows nothing else
    pop = experiment.report.breakdowns["arm"]
    assert pop["challenger"].metrics["pop_pct"].value > pop["champion"].metrics["pop_pct"].value
    assert np.isfinite(ctr["p_welch"])
