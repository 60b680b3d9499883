"""Input at the HTTP edge: every malformed request gets a 4xx that names what is wrong, odd but
valid ids are served, and nothing a client sends produces a 500 or a stack trace."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from tests.test_api_support import Built, api_client


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        ("k=0", "greater than or equal to 1"),
        ("k=501", "less than or equal to 500"),
        ("k=99999999999999999999999999", "less than or equal to 500"),
        ("k=2.5", "valid integer"),
        ("k=", "valid integer"),
        ("ts=yesterday", "valid integer"),
        ("ts=1.5", "valid integer"),
        ("ts=-1", "greater than or equal to 0"),
        ("ts=99999999999999999999", "less than or equal to 4294967295"),
        ("device=" + "d" * 33, "at most 32"),
    ],
)
def test_bad_query_parameter_is_a_422_naming_it(api: TestClient, query: str, fragment: str) -> None:
    r = api.get(f"/recommendations/1?{query}")
    assert r.status_code == 422, r.text
    error = r.json()["detail"][0]
    assert error["loc"][0] == "query"
    assert fragment in error["msg"]


def test_user_id_longer_than_256_characters_is_a_422(api: TestClient) -> None:
    assert api.get("/recommendations/" + "u" * 256).status_code == 200
    r = api.get("/recommendations/" + "u" * 257)
    assert r.status_code == 422
    assert "at most 256" in r.text


@pytest.mark.parametrize(
    ("path_segment", "user_id"),
    [
        ("%E3%83%A6%E3%83%BC%E3%82%B6%E3%83%BC", "ユーザー"),
        ("a%2Fb", "a/b"),
        ("%7Bhash%7Dtag", "{hash}tag"),
        ("%7D%7B", "}{"),
        ("star*%3F%5B", "star*?["),
        ("nul%00byte", "nul\x00byte"),
        ("line%0Abreak%0D%0A", "line\nbreak\r\n"),
        ("%20", " "),
        ("%ED%A0%80", "\ufffd\ufffd\ufffd"),  # a UTF-8-encoded surrogate decodes to U+FFFD
    ],
)
def test_odd_user_ids_get_a_cold_start_answer(
    api: TestClient, built: Built, path_segment: str, user_id: str
) -> None:
    r = api.get(f"/recommendations/{path_segment}", params={"k": 3})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["user_id"] == user_id
    assert body["fallback"] == "cold-start"
    assert body["model_version"] == built.version
    assert len(body["items"]) == 3


def test_odd_user_ids_keep_their_own_events(api: TestClient) -> None:
    """Braces are Redis Cluster hash-tag characters; ids must still map to their own keys."""
    top = api.get("/recommendations/%7Bx%7D", params={"k": 1}).json()["items"][0]["item_id"]
    assert api.post("/events", json={"user_id": "{x}", "item_id": top}).status_code == 202
    assert top not in _item_ids(api, "%7Bx%7D")
    assert top in _item_ids(api, "%7Bx%7Dy")  # a different user sharing the hash tag


def _item_ids(api: TestClient, path_segment: str) -> list[object]:
    items = api.get(f"/recommendations/{path_segment}", params={"k": 50}).json()["items"]
    return [i["item_id"] for i in items]


GOOD_EVENT: dict[str, Any] = {
    "user_id": "42",
    "item_id": 3,
    "timestamp": 1_700_000_000,
    "device": "tv",
    "completion": 0.5,
}


@pytest.mark.parametrize(
    ("change", "field", "fragment"),
    [
        ({"item_id": None}, "item_id", ""),
        ({"user_id": ""}, "user_id", "at least 1 character"),
        ({"user_id": "u" * 257}, "user_id", "at most 256"),
        ({"user_id": 42}, "user_id", "valid string"),
        ({"item_id": True}, "item_id", ""),
        ({"item_id": 2**70}, "item_id", "less than"),
        ({"item_id": 3.5}, "item_id", ""),
        ({"item_id": [3]}, "item_id", ""),
        ({"timestamp": "soon"}, "timestamp", "valid integer"),
        ({"timestamp": 1.7e9}, "timestamp", "valid integer"),
        ({"timestamp": -1}, "timestamp", "greater than or equal to 0"),
        ({"timestamp": 2**40}, "timestamp", "less than or equal to"),
        ({"timestamp": 2**32}, "timestamp", "less than or equal to 4294967295"),  # wraps in uint32
        ({"completion": 1.5}, "completion", "less than or equal to 1"),
        ({"completion": -0.1}, "completion", "greater than or equal to 0"),
        ({"completion": "0.5"}, "completion", "valid number"),
        ({"device": "d" * 33}, "device", "at most 32"),
        ({"device": ""}, "device", "at least 1 character"),
        ({"colour": "red"}, "colour", "Extra inputs are not permitted"),
    ],
)
def test_bad_event_field_is_a_422_naming_it(
    api: TestClient, change: dict[str, Any], field: str, fragment: str
) -> None:
    body = {k: v for k, v in {**GOOD_EVENT, **change}.items() if v is not None}
    r = api.post("/events", json=body)
    assert r.status_code == 422, r.text
    errors = r.json()["detail"]
    assert any(field in e["loc"] for e in errors), errors
    assert any(fragment in e["msg"] for e in errors), errors


@pytest.mark.parametrize(
    "raw",
    [
        b'{"user_id": "\\ud800", "item_id": 1}',  # a lone surrogate: valid JSON, not valid text
        b'{"user_id": "1", "item_id": 1, "completion": NaN}',
        b'{"user_id": "1", "item_id": 1, "completion": Infinity}',
        b"[1, 2, 3]",
        b'"just a string"',
        b"null",
        b"{not json",
        b"",
        b'{"user_id": "1", "item_id": 1',
    ],
)
def test_malformed_event_bodies_are_4xx(api: TestClient, raw: bytes) -> None:
    r = api.post("/events", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["detail"]


def test_an_event_body_that_is_not_text_is_a_400(api: TestClient) -> None:
    r = api.post("/events", content=b"\xff\xfe{", headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json()["detail"] == "There was an error parsing the body"


def test_a_valid_event_is_accepted(api: TestClient) -> None:
    r = api.post("/events", json=GOOD_EVENT)
    assert r.status_code == 202
    assert r.json() == {"status": "accepted"}
    minimal = api.post("/events", json={"user_id": "42", "item_id": "a string id"})
    assert minimal.status_code == 202


def test_event_body_over_the_limit_is_a_413_with_the_limit(api: TestClient, built: Built) -> None:
    limit = built.settings.serve.max_body_bytes
    big = {**GOOD_EVENT, "user_id": "u" * (limit + 1)}
    r = api.post("/events", json=big)
    assert r.status_code == 413
    assert f"the limit is {limit} bytes" in r.json()["detail"]


def test_streamed_body_over_the_limit_is_cut_off_with_a_413(api: TestClient, built: Built) -> None:
    """No Content-Length (chunked): the body is counted as it arrives, never buffered whole."""
    limit = built.settings.serve.max_body_bytes

    def chunks() -> Iterator[bytes]:
        yield b'{"user_id": "1", "item_id": "'
        for _ in range(limit // 512 + 2):
            yield b"x" * 512
        yield b'"}'

    r = api.post("/events", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert f"the limit is {limit} bytes" in r.json()["detail"]


def test_unknown_routes_and_methods_are_4xx(api: TestClient) -> None:
    assert api.get("/nope").status_code == 404
    assert api.post("/recommendations/1").status_code == 405
    assert api.get("/events").status_code == 405


def test_a_server_error_carries_no_stack_trace(
    built: Built, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """Corrupt data in Redis is a server problem (500), and the answer still hides the trace."""
    user = built.known_users(300)[-1]
    key = built.keys.user_state(built.version, user)
    good = redis_client.get(key)
    redis_client.set(key, b"\x01corrupt")
    try:
        # budgets long enough that a busy machine cannot turn the read into a timeout fallback
        slow_ok = built.with_serve(redis_timeout_ms=2000, deadline_ms=10_000)
        with api_client(built, slow_ok, raise_server_exceptions=False) as api:
            r = api.get(f"/recommendations/{user}")
    finally:
        redis_client.set(key, good or b"")
    assert r.status_code == 500
    assert r.json() == {"detail": "internal error"}
    assert "Traceback" not in r.text


def test_k_defaults_to_the_configured_default_k(api: TestClient, built: Built) -> None:
    user = built.known_users(1)[0]
    assert len(api.get(f"/recommendations/{user}").json()["items"]) == 20
    with api_client(built, built.with_serve(default_k=7)) as seven:
        assert len(seven.get(f"/recommendations/{user}").json()["items"]) == 7
