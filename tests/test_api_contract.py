"""The OpenAPI contract: every field and parameter documented with examples, the hot path's
hand-rendered JSON matching the documented model, and a schemathesis run (valid and invalid
inputs) against a real uvicorn server over a real Redis that finds no 5xx and no answer
outside the documented statuses, content types and schemas."""

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import create_app
from api.schemas import RecommendationResponse
from tests.test_api_support import Built, api_client, live_server

# Our own models; FastAPI's HTTPValidationError / ValidationError are documented by FastAPI.
OWN_SCHEMAS = {
    "RecommendationResponse",
    "ScoredItem",
    "EventIn",
    "EventAccepted",
    "Health",
    "ErrorBody",
    "Explanation",
    "Contribution",
}


@pytest.fixture(scope="module")
def openapi(built: Built) -> dict[str, Any]:
    with api_client(built) as api:
        schema: dict[str, Any] = api.get("/openapi.json").json()
        return schema


def _has_examples(spec: dict[str, Any]) -> bool:
    return bool(spec.get("examples") or "example" in spec)


def test_every_body_field_has_a_description_and_examples(openapi: dict[str, Any]) -> None:
    schemas = openapi["components"]["schemas"]
    assert set(schemas) >= OWN_SCHEMAS
    for name in OWN_SCHEMAS:
        for field, spec in schemas[name]["properties"].items():
            assert spec.get("description"), f"{name}.{field} has no description"
            assert _has_examples(spec), f"{name}.{field} has no examples"


def test_every_parameter_has_a_description_and_examples(openapi: dict[str, Any]) -> None:
    parameters = [
        (path, p)
        for path, item in openapi["paths"].items()
        for operation in item.values()
        for p in operation.get("parameters", [])
    ]
    assert {p["name"] for _, p in parameters} == {
        "user_id",
        "k",
        "device",
        "ts",
        "exclude",
        "explain",
    }
    for path, p in parameters:
        assert p.get("description"), f"{path} {p['name']} has no description"
        assert _has_examples(p) or _has_examples(p["schema"]), f"{path} {p['name']}: no examples"


def test_every_operation_is_documented(openapi: dict[str, Any]) -> None:
    operations = {
        (method.upper(), path): op
        for path, item in openapi["paths"].items()
        for method, op in item.items()
    }
    assert set(operations) == {
        ("GET", "/recommendations/{user_id}"),
        ("POST", "/events"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
    }
    for key, op in operations.items():
        assert op.get("description") or op.get("summary"), key
    assert {"202", "413", "422", "503"} <= set(operations[("POST", "/events")]["responses"])


def test_rendered_answers_match_the_documented_model(built: Built) -> None:
    """The hot path writes JSON by hand (orjson); it must be exactly what the docs promise."""
    user = built.known_users(1)[0]
    tight = built.with_serve(deadline_ms=1.0, redis_timeout_ms=1000.0)
    with api_client(built) as api, api_client(built, tight) as rushed:
        answers = [
            api.get(f"/recommendations/{user}", params={"k": 500}),
            api.get("/recommendations/someone-new", params={"k": 3}),
            rushed.get(f"/recommendations/{user}", params={"k": 5}),
        ]
    fallbacks = []
    for r in answers:
        assert r.headers["content-type"] == "application/json"
        parsed = RecommendationResponse.model_validate_json(r.content)
        fallbacks.append(parsed.fallback)
    assert fallbacks == [None, "cold-start", "ranker-timeout"]


@pytest.fixture(scope="module")
def api_schema(built: Built) -> Iterator[Any]:
    """The schema as a client sees it, served by a real uvicorn (real HTTP parsing)."""
    with live_server(create_app(built.settings, built.artifacts)) as base_url:
        yield schemathesis.openapi.from_url(f"{base_url}/openapi.json")


POSITIVE, NEGATIVE = GenerationMode.POSITIVE, GenerationMode.NEGATIVE
# (method, path, examples, mode): negative cases only where there is input to get wrong
RUNS = [
    ("GET", "/recommendations/{user_id}", 120, POSITIVE),
    ("GET", "/recommendations/{user_id}", 120, NEGATIVE),
    ("POST", "/events", 120, POSITIVE),
    ("POST", "/events", 120, NEGATIVE),
    ("GET", "/readyz", 5, POSITIVE),
    ("GET", "/healthz", 5, POSITIVE),
    ("GET", "/metrics", 5, POSITIVE),
]


@pytest.mark.parametrize(("method", "path", "examples", "mode"), RUNS)
def test_schemathesis_finds_no_server_error(
    api_schema: Any, method: str, path: str, examples: int, mode: GenerationMode
) -> None:
    """Valid (positive) and schema-violating (negative) requests: never a 5xx, and every answer
    in a documented status, content type and schema. (schemathesis' own pytest integration,
    ``from_fixture``, does not run on pytest 9 yet, so Hypothesis drives its strategies.)"""

    @given(case=api_schema[path][method].as_strategy(generation_mode=mode))
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    def check(case: Any) -> None:
        statuses.append(case.call_and_validate(checks=CHECKS).status_code)

    statuses: list[int] = []
    check()
    assert statuses, "schemathesis sent no request"


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
