"""GET /metrics: Prometheus text with latency by route template and outcome, fallbacks by
reason, time per stage and the build being served; never a raw path or a user id as a label."""

import re

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.test_api_support import Built

ROUTE = "/recommendations/{user_id}"


def _samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Sample values of one metric family, keyed by their sorted labels."""
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


def _count(text: str, route: str, outcome: str) -> float:
    counts = _samples(text, "recsys_http_request_duration_seconds_count")
    return counts.get((("outcome", outcome), ("route", route)), 0.0)


def test_requests_are_counted_by_route_template_and_outcome(api: TestClient, built: Built) -> None:
    before = api.get("/metrics").text
    users = built.known_users(3)
    for user in users:
        assert api.get(f"/recommendations/{user}").json()["fallback"] is None
    api.get("/recommendations/nobody-knows-me")
    api.get("/recommendations/1", params={"k": 0})
    api.post("/events", json={"user_id": "m", "item_id": 1})
    api.get("/no/such/path")
    after = api.get("/metrics").text

    def delta(route: str, outcome: str) -> float:
        return _count(after, route, outcome) - _count(before, route, outcome)

    assert delta(ROUTE, "ok") == 3
    assert delta(ROUTE, "cold-start") == 1
    assert delta(ROUTE, "4xx") == 1
    assert delta("/events", "ok") == 1
    assert delta("unmatched", "4xx") == 1
    assert delta("/metrics", "ok") == 1  # the first scrape, counted by the time of the second


def test_labels_never_carry_raw_paths_or_user_ids(api: TestClient) -> None:
    for i in range(20):
        api.get(f"/recommendations/secret-user-{i}")
        api.get(f"/random/{i}")
    text = api.get("/metrics").text
    assert "secret-user" not in text
    assert "/random" not in text
    routes = set(re.findall(r'route="([^"]*)"', text))
    assert routes <= {ROUTE, "/events", "/healthz", "/readyz", "/metrics", "unmatched"}


def test_fallbacks_stages_and_model_version_are_exported(api: TestClient, built: Built) -> None:
    api.get("/recommendations/cold-user-for-metrics")
    api.get(f"/recommendations/{built.known_users(1)[0]}")
    text = api.get("/metrics").text
    fallbacks = _samples(text, "recsys_fallbacks_total")
    assert fallbacks[(("reason", "cold-start"),)] >= 1
    assert (("reason", "redis-unavailable"),) in fallbacks  # exported at 0 before it happens
    assert (("reason", "ranker-timeout"),) in fallbacks
    stages = _samples(text, "recsys_stage_duration_seconds_count")
    for stage in ("redis", "rank", "serialise"):
        assert stages[(("stage", stage),)] >= 1
    assert _samples(text, "recsys_model_info") == {(("version", built.version),): 1.0}
    assert 'le="0.1"' in text  # a bucket edge at the deadline
