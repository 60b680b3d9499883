"""Optional API key (X-API-Key) and CORS, both off unless configured."""

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from cli.main import main
from recsys.config import ServeConfig
from tests.test_api_support import Built, api_client

KEY = "s3cret-ключ"  # non-ASCII on purpose: headers travel as bytes
EVENT = {"user_id": "sec", "item_id": 1}


@pytest.fixture(scope="module")
def keyed(built: Built) -> Iterator[TestClient]:
    with api_client(built, built.with_serve(api_key=KEY)) as client:
        yield client


def _key_header(key: str) -> dict[bytes, bytes]:
    return {b"X-API-Key": key.encode()}


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong"}, {"X-API-Key": ""}])
def test_with_a_key_configured_data_routes_refuse_a_missing_or_wrong_key(
    keyed: TestClient, built: Built, headers: dict[str, str]
) -> None:
    user = built.known_users(1)[0]
    for r in (
        keyed.post("/events", json=EVENT, headers=headers),
        keyed.get(f"/recommendations/{user}", headers=headers),
    ):
        assert r.status_code == 401
        assert r.json() == {"detail": "missing or invalid X-API-Key header"}


def test_with_a_key_configured_the_right_key_is_let_through(
    keyed: TestClient, built: Built
) -> None:
    user = built.known_users(1)[0]
    assert keyed.post("/events", json=EVENT, headers=_key_header(KEY)).status_code == 202
    r = keyed.get(f"/recommendations/{user}", headers=_key_header(KEY))
    assert r.status_code == 200
    assert r.json()["fallback"] is None


def test_probes_and_metrics_need_no_key(keyed: TestClient) -> None:
    assert keyed.get("/healthz").status_code == 200
    assert keyed.get("/readyz").status_code == 200
    assert keyed.get("/metrics").status_code == 200


def test_readiness_details_only_for_callers_with_the_key(keyed: TestClient, built: Built) -> None:
    """Issue 12: /readyz showed anyone the Redis address and the artifacts path (in detail) and
    the build. With a key set, a caller without it sees the status alone."""
    anonymous = keyed.get("/readyz")
    assert anonymous.status_code == 200
    assert anonymous.json() == {"status": "ok", "model_version": None, "detail": None}
    trusted = keyed.get("/readyz", headers=_key_header(KEY))
    assert trusted.json()["model_version"] == built.version


def test_readiness_failures_show_details_only_with_the_key(built: Built) -> None:
    settings = built.with_serve(api_key=KEY)
    with api_client(built, settings) as api:
        api.app.state.holder.ready_key = "no-such-key"  # type: ignore[attr-defined]
        anonymous = api.get("/readyz")
        trusted = api.get("/readyz", headers=_key_header(KEY))
    assert anonymous.status_code == trusted.status_code == 503
    assert anonymous.json()["detail"] is None
    assert "no-such-key" in trusted.json()["detail"]


@pytest.mark.parametrize("key", ["", "   "])
def test_an_empty_key_is_an_error_not_auth_off(key: str) -> None:
    """Issue 12: RECSYS_SERVE__API_KEY= (empty) silently turned auth off."""
    with pytest.raises(ValidationError, match="empty"):
        ServeConfig(api_key=key)  # type: ignore[arg-type]


def test_an_empty_key_stops_serve_at_start_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RECSYS_SERVE__API_KEY", "")
    assert main(["serve", "--artifacts", str(tmp_path)]) == 2
    assert "serve.api_key" in capsys.readouterr().err


def test_listening_beyond_loopback_without_a_key_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RECSYS_SERVE__API_KEY", raising=False)
    missing = str(tmp_path / "none")  # serve stops there, after its start-up checks
    with caplog.at_level(logging.WARNING):
        main(["serve", "--artifacts", missing, "--host", "127.0.0.1"])
    assert "without an API key" not in caplog.text
    with caplog.at_level(logging.WARNING):
        main(["serve", "--artifacts", missing, "--host", "0.0.0.0"])
    assert "listening on 0.0.0.0 without an API key" in caplog.text
    caplog.clear()
    monkeypatch.setenv("RECSYS_SERVE__API_KEY", KEY)
    with caplog.at_level(logging.WARNING):
        main(["serve", "--artifacts", missing, "--host", "0.0.0.0"])
    assert "without an API key" not in caplog.text


def test_docs_stay_open_with_a_key_and_can_be_turned_off(keyed: TestClient, built: Built) -> None:
    assert keyed.get("/docs").status_code == 200
    assert keyed.get("/openapi.json").status_code == 200
    with api_client(built, built.with_serve(openapi_docs=False)) as api:
        assert api.get("/docs").status_code == 404
        assert api.get("/openapi.json").status_code == 404


def test_the_openapi_schema_says_whether_a_key_is_needed(
    keyed: TestClient, api: TestClient
) -> None:
    keyed_schema = keyed.get("/openapi.json").json()
    assert keyed_schema["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-API-Key"
    assert keyed_schema["paths"]["/events"]["post"]["security"] == [{"APIKeyHeader": []}]
    assert "security" not in keyed_schema["paths"]["/healthz"]["get"]
    open_schema = api.get("/openapi.json").json()
    assert "securitySchemes" not in open_schema.get("components", {})
    assert "security" not in open_schema["paths"]["/events"]["post"]


def test_without_a_key_configured_no_header_is_needed(api: TestClient) -> None:
    assert api.post("/events", json=EVENT).status_code == 202


def test_cors_is_off_by_default(api: TestClient) -> None:
    r = api.get("/healthz", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers
    preflight = api.options(
        "/events",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 405
    assert "access-control-allow-origin" not in preflight.headers


def test_cors_allows_only_the_configured_origins(built: Built) -> None:
    settings = built.with_serve(cors_origins=["https://app.example"])
    with api_client(built, settings) as api:
        allowed = api.get("/healthz", headers={"Origin": "https://app.example"})
        other = api.get("/healthz", headers={"Origin": "https://evil.example"})
        preflight = api.options(
            "/events",
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,x-api-key",
            },
        )
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    assert "access-control-allow-origin" not in other.headers
    assert preflight.status_code == 200
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "x-api-key" in preflight.headers["access-control-allow-headers"].lower()
