"""The dashboard's HTTP side (issue 16), without a browser: sign-in and its cookie, CSRF, what
each page's JSON holds on a real build, bad input, and the packaged assets."""

import json
import re
import shlex
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.prometheus import PrometheusMetrics
from api.ui.auth import COOKIE, CSRF_HEADER
from api.ui.live import FAMILIES, online_view
from cli.demo import dashboard_url, serve_command
from cli.main import _parser, main
from recsys.config import Settings, with_overrides
from recsys.evaluation.records import EvalReport, read_report
from recsys.inspection.tables import load_tables
from tests.test_api_support import Built, api_client

KEY = "dash-ключ"  # non-ASCII on purpose: a form posts UTF-8, a header carries bytes
KEY_HEADER = {b"X-API-Key": KEY.encode()}


@pytest.fixture(scope="module")
def keyed(built: Built) -> Iterator[TestClient]:
    # generous Redis and ranking budgets: the tests compare answers, and on a busy machine a
    # 20 ms read can time out into a fallback on one side of a comparison only
    settings = built.with_serve(api_key=KEY, redis_timeout_ms=500, deadline_ms=2000)
    with api_client(built, settings) as client:
        yield client


def sign_in(client: TestClient, next_path: str = "/ui") -> str:
    """Sign in through the form; returns the session cookie's value."""
    client.cookies.clear()
    r = client.post("/ui/login", data={"key": KEY, "next": next_path}, follow_redirects=False)
    assert r.status_code == 303, r.text
    return r.cookies[COOKIE]


def csrf_of(client: TestClient) -> str:
    page = client.get("/ui").text
    found = re.search(r'<meta name="csrf-token" content="([^"]+)">', page)
    assert found, "a signed-in page carries its CSRF token"
    return found.group(1)


# ---------------------------------------------------------------------------- access


def test_without_a_key_the_dashboard_is_as_open_as_the_api(api: TestClient, built: Built) -> None:
    page = api.get("/ui")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert 'name="csrf-token"' not in page.text  # no session, nothing to protect
    overview = api.get("/ui/api/overview").json()
    assert [b["build_version"] for b in overview["served"]] == [built.version]


def test_with_a_key_pages_ask_to_sign_in_and_data_needs_the_key(keyed: TestClient) -> None:
    keyed.cookies.clear()
    r = keyed.get("/ui/users?user=7", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == f"/ui/login?next={quote('/ui/users?user=7', safe='')}"
    form = keyed.get(r.headers["location"])
    assert form.status_code == 200 and 'type="password"' in form.text
    assert keyed.get("/ui/api/overview").status_code == 401
    assert keyed.get("/ui/api/overview", headers=KEY_HEADER).status_code == 200


def test_signing_in_sets_a_signed_httponly_strict_cookie_and_never_puts_the_key_in_a_url(
    keyed: TestClient,
) -> None:
    keyed.cookies.clear()
    r = keyed.post("/ui/login", data={"key": KEY, "next": "/ui/drift"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/ui/drift"
    cookie = r.headers["set-cookie"]
    for attribute in ("HttpOnly", "SameSite=strict", "Path=/ui", "Max-Age=43200"):
        assert attribute.lower() in cookie.lower()
    assert "secure" not in cookie.lower()  # plain HTTP here; Secure over HTTPS
    assert quote(KEY) not in r.headers["location"] and KEY not in r.headers["set-cookie"]
    assert keyed.get("/ui/api/overview").status_code == 200
    # the cookie opens the dashboard only: the API keeps its header auth
    value = r.cookies[COOKIE]
    api = keyed.get("/recommendations/1", headers={"Cookie": f"{COOKIE}={value}"})
    assert api.status_code == 401


def test_a_wrong_key_a_forged_or_an_expired_session_is_refused(keyed: TestClient) -> None:
    keyed.cookies.clear()
    r = keyed.post("/ui/login", data={"key": "guess", "next": "/ui"}, follow_redirects=False)
    assert r.status_code == 401 and COOKIE not in r.cookies
    token = sign_in(keyed)
    expiry, nonce, mac = token.split(".")
    for forged in (f"{int(expiry) + 10**6}.{nonce}.{mac}", f"{expiry}.{nonce}.{mac[:-2]}AA"):
        keyed.cookies.clear()
        keyed.cookies.set(COOKIE, forged, path="/ui")
        assert keyed.get("/ui/api/overview").status_code == 401
    auth = keyed.app.state.ui_auth  # type: ignore[attr-defined]
    keyed.cookies.clear()
    keyed.cookies.set(COOKIE, auth.new_session(now=time.time() - 10**6), path="/ui")
    assert keyed.get("/ui/api/overview").status_code == 401


@pytest.mark.parametrize(
    "headers",
    [{"Origin": "http://evil.example"}, {"Sec-Fetch-Site": "cross-site"}, {"Origin": "null"}],
)
def test_a_sign_in_form_posted_from_another_site_is_refused(
    keyed: TestClient, headers: dict[str, str]
) -> None:
    keyed.cookies.clear()
    r = keyed.post(
        "/ui/login", data={"key": KEY, "next": "/ui"}, headers=headers, follow_redirects=False
    )
    assert r.status_code == 403 and COOKIE not in r.cookies


@pytest.mark.parametrize(
    "target",
    ["//evil.example/", "https://evil.example/ui", "/\\evil.example", "/recommendations/1"],
)
def test_after_signing_in_the_browser_stays_on_the_dashboard(
    keyed: TestClient, target: str
) -> None:
    keyed.cookies.clear()
    r = keyed.post("/ui/login", data={"key": KEY, "next": target}, follow_redirects=False)
    assert r.headers["location"] == "/ui"


def test_signing_out_needs_the_sessions_csrf_token(keyed: TestClient) -> None:
    sign_in(keyed)
    token = csrf_of(keyed)
    assert keyed.post("/ui/logout").status_code == 403
    assert keyed.post("/ui/logout", headers={CSRF_HEADER: token + "x"}).status_code == 403
    cross = {CSRF_HEADER: token, "Sec-Fetch-Site": "cross-site"}
    assert keyed.post("/ui/logout", headers=cross).status_code == 403
    r = keyed.post("/ui/logout", headers={CSRF_HEADER: token})
    assert r.status_code == 204 and "max-age=0" in r.headers["set-cookie"].lower()


def test_promote_is_refused_without_a_key_a_token_or_from_another_site(
    api: TestClient, keyed: TestClient, built: Built
) -> None:
    """Refusals only (the browser test promotes for real): none of them moves the champion."""
    line = {"line": "challenger"}
    open_r = api.post("/ui/api/promote", json=line)
    assert open_r.status_code == 403 and "API key" in open_r.json()["detail"]
    assert api.get("/ui/api/builds").json()["can_promote"] is False
    keyed.cookies.clear()
    assert keyed.post("/ui/api/promote", json=line).status_code == 401
    sign_in(keyed)
    token = csrf_of(keyed)
    assert keyed.post("/ui/api/promote", json=line).status_code == 403  # no CSRF token
    cross = {CSRF_HEADER: token, "Sec-Fetch-Site": "cross-site"}
    assert keyed.post("/ui/api/promote", json=line, headers=cross).status_code == 403
    signed = {CSRF_HEADER: token}
    assert keyed.get("/ui/api/builds").json()["can_promote"] is True
    for body, status, fragment in [
        ({"line": "challenger"}, 409, "no build named 'challenger'"),
        ({"line": "champion"}, 409, "champion already"),
        ({"line": "Not A Name!"}, 422, "build name"),
        ({"name": "challenger"}, 422, "line"),
    ]:
        r = keyed.post("/ui/api/promote", json=body, headers=signed)
        assert r.status_code == status and fragment in str(r.json()["detail"]), r.text
    overview = keyed.get("/ui/api/overview", headers=KEY_HEADER).json()
    assert overview["current_build"] == built.version


def test_online_metrics_by_arm_come_from_the_live_counters() -> None:
    metrics = PrometheusMetrics()
    popularity = np.linspace(0.0, 1.0, 100)
    assert online_view(metrics.samples(FAMILIES)) is None  # nothing shown yet
    metrics.observe_answer("champion", "b1", None, np.arange(10), popularity)
    metrics.observe_answer("champion", "b1", "cold-start", np.arange(10, 20), popularity)
    metrics.observe_answer("challenger", "b2", None, np.arange(5), popularity)
    metrics.count_event("champion", "click", True, None)
    metrics.count_event("champion", "watch", True, 0.5)
    metrics.count_event("champion", "watch", False, 1.0)  # names no answer: not in the CTR
    metrics.count_event("champion", "dislike", True, None)
    online = {o.arm: o for o in online_view(metrics.samples(FAMILIES)) or []}
    champion, challenger = online["champion"], online["challenger"]
    assert (champion.answers, champion.items_shown, champion.ranked_share) == (2, 20, 0.5)
    assert champion.ctr == 2 / 20 and champion.dislike_rate == 1 / 20
    assert champion.completion == 0.75 and champion.watches_with_completion == 2
    assert champion.pop_pct == pytest.approx(popularity[:20].mean(), abs=1e-5)
    assert champion.coverage == 0.2 and challenger.coverage == 0.05
    assert (challenger.ctr, challenger.completion) == (0.0, None)


# ---------------------------------------------------------------------------- pages' data


def test_the_user_inspector_answers_as_get_recommendations(keyed: TestClient, built: Built) -> None:
    user = built.known_users(3)[2]
    params = {"k": 15, "device": "tv", "ts": 1_707_700_000}
    api = keyed.get(f"/recommendations/{user}", params=params, headers=KEY_HEADER).json()
    view = keyed.get(f"/ui/api/users/{user}", params=params, headers=KEY_HEADER).json()
    assert [i["item_id"] for i in view["answer"]["items"]] == [i["item_id"] for i in api["items"]]
    assert [i["score"] for i in view["answer"]["items"]] == [i["score"] for i in api["items"]]
    assert view["answer"]["fallback"] is None and view["known"]
    # candidates by source account for every candidate's flags, in stage-1 order
    assert view["candidates_total"] == 60
    for source in view["candidates"]:
        ranks = [c["stage1_rank"] for c in source["items"]]
        assert ranks == sorted(ranks) and all(
            source["source"] in c["sources"] for c in source["items"]
        )
    assert sum(s["count"] for s in view["candidates"]) >= view["candidates_total"]
    # the comparison: another context, every item of both answers once
    alt = view["alternative"]
    assert alt["context"] != view["answer"]["context"]
    both = {i["item_id"] for i in view["answer"]["items"]} | {i["item_id"] for i in alt["items"]}
    assert {c["item_id"] for c in view["changes"]} == both


def test_an_event_shows_in_the_history_and_leaves_the_answer(
    keyed: TestClient, built: Built
) -> None:
    user = built.known_users(4)[3]
    before = keyed.get(f"/ui/api/users/{user}", headers=KEY_HEADER).json()
    watched = before["answer"]["items"][0]["item_id"]
    event = {"user_id": user, "item_id": watched, "timestamp": 1_707_700_000, "device": "tv"}
    assert keyed.post("/events", json=event, headers=KEY_HEADER).status_code == 202
    after = keyed.get(f"/ui/api/users/{user}", headers=KEY_HEADER).json()
    assert after["history"][0]["item_id"] == watched and after["history"][0]["live"]
    assert watched not in [i["item_id"] for i in after["answer"]["items"]]


def test_an_unknown_user_is_a_cold_start_not_an_error(keyed: TestClient) -> None:
    view = keyed.get("/ui/api/users/nobody-at-all", headers=KEY_HEADER).json()
    assert not view["known"] and view["answer"]["fallback"] == "cold-start"
    assert view["history"] == [] and view["candidates_total"] == 0


def test_the_item_page_shows_the_builds_tables(keyed: TestClient, built: Built) -> None:
    tables = load_tables(built.result.path)
    ids = built.result.candidate_model.items.ids_list
    index = int(np.argmax(tables.audience.reach))  # type: ignore[union-attr]
    view = keyed.get(f"/ui/api/items/{ids[index]}", headers=KEY_HEADER).json()
    assert view["item_id"] == ids[index] and view["model_version"] == built.version
    assert sum(view["activity"]["counts"]) == view["events_all_time"] > 0
    by_source = {n["source"]: n for n in view["neighbours"]}
    factors = tables.neighbours["item_factors"]
    assert [n["item_id"] for n in by_source["item_factors"]["items"]] == [
        ids[j] for j in factors.ids[index] if j >= 0
    ]
    audience = view["audience"]
    assert audience["reach"] == int(tables.audience.reach[index]) > 0  # type: ignore[union-attr]
    assert [u["position"] for u in audience["users"]] == sorted(
        u["position"] for u in audience["users"]
    )


def test_overview_and_builds_describe_the_served_build(keyed: TestClient, built: Built) -> None:
    user = built.known_users(1)[0]
    for _ in range(5):
        keyed.get(f"/recommendations/{user}", headers=KEY_HEADER)
    keyed.get("/recommendations/not-a-known-user", headers=KEY_HEADER)
    overview = keyed.get("/ui/api/overview", headers=KEY_HEADER).json()
    served = overview["served"][0]
    manifest = built.result.manifest
    assert served["build_version"] == built.version == overview["current_build"]
    assert served["data"] == manifest.data.model_dump()
    assert served["ranker_valid_ndcg_at_10"] == manifest.ranker.valid_ndcg_at_10
    traffic = overview["traffic"]
    assert traffic["requests"] >= 6 and traffic["p99_ms"] is not None
    assert abs(sum(traffic["outcome_shares"].values()) - 1) < 1e-3
    assert traffic["outcome_shares"]["cold-start"] > 0
    assert overview["redis"]["ok"] and overview["example_users"]
    builds = keyed.get("/ui/api/builds", headers=KEY_HEADER).json()
    row = next(b for b in builds["builds"] if b["build_version"] == built.version)
    assert row["current"] and row["served"] and row["on_disk"]
    assert row["ranker"]["valid_ndcg_at_10"] == manifest.ranker.valid_ndcg_at_10
    assert list(row["ranker"]["feature_importance"]) == sorted(
        manifest.ranker.feature_importance_gain,
        key=lambda f: -manifest.ranker.feature_importance_gain[f],
    )


def test_drift_counts_live_requests_against_the_builds_reference(
    keyed: TestClient, built: Built
) -> None:
    users = built.known_users(30)
    deadline = time.monotonic() + 10
    live = None
    while time.monotonic() < deadline:
        for user in users:  # sampled at most once per 100 ms per worker
            keyed.get(f"/recommendations/{user}", headers=KEY_HEADER)
        time.sleep(0.3)
        live = keyed.get("/ui/api/drift", headers=KEY_HEADER).json()["live"]
        if live["live_requests"] >= 2:
            break
    assert live is not None and live["live_requests"] >= 2
    reference = built.result.manifest.inspection.drift_reference  # type: ignore[union-attr]
    assert live["reference_rows"] == reference.rows  # type: ignore[union-attr]
    assert live["live_rows"] >= 2 * 50  # whole candidate lists, not single rows
    shifts = [*live["features"].values(), live["score"]]
    assert all(s["psi"] is not None and s["psi"] >= 0 for s in shifts)
    assert all(abs(sum(s["live_shares"]) - 1) < 1e-3 for s in shifts)


# ---------------------------------------------------------------------------- edges


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/ui/api/users/7?k=0", 422),
        ("/ui/api/users/7?ts=-1", 422),
        ("/ui/api/users/7?device=", 422),
        ("/ui/api/items/no-such-item", 404),
        ("/ui/api/nothing-here", 404),
    ],
)
def test_bad_input_gets_a_4xx_with_a_message(keyed: TestClient, path: str, status: int) -> None:
    r = keyed.get(path, headers=KEY_HEADER)
    assert r.status_code == status
    assert r.json()["detail"]


def test_assets_are_the_packages_own_files_addressed_by_content(api: TestClient) -> None:
    page = api.get("/ui").text
    urls = re.findall(r'(?:src|href)="(/ui/static/[^"]+)"', page)
    assert {u.split("?")[0] for u in urls} >= {
        "/ui/static/ui.js",
        "/ui/static/ui.css",
        "/ui/static/vendor/uplot/uPlot.iife.min.js",
        "/ui/static/vendor/uplot/uPlot.min.css",
    }
    static = resources.files("api.ui") / "static"
    for url in urls:
        r = api.get(url)
        name = url.split("?")[0].removeprefix("/ui/static/")
        assert r.status_code == 200 and r.content == static.joinpath(name).read_bytes()
        assert "immutable" in r.headers["cache-control"]
    assert "http" not in " ".join(urls)  # nothing from another host
    for bad in ("/ui/static/../app.py", "/ui/static/%2e%2e/app.py", "/ui/static/ui.py"):
        assert api.get(bad).status_code == 404


def test_the_dashboard_can_be_switched_off(built: Built) -> None:
    settings = built.settings.model_copy(
        update={"ui": built.settings.ui.model_copy(update={"enabled": False})}
    )
    with api_client(built, settings) as client:
        assert client.get("/ui").status_code == 404
        assert client.get("/ui/api/overview").status_code == 404
        assert client.get("/healthz").status_code == 200


# ---------------------------------------------------------------------------- the report, serve


def test_overview_and_drift_show_the_evaluation_report(built: Built) -> None:
    folder = Path(__file__).resolve().parents[1] / "docs" / "reports" / "synth"
    report = read_report(json.loads((folder / "report.json").read_text()))
    assert isinstance(report, EvalReport) and report.drift is not None
    settings = with_overrides(built.settings, {"ui": {"eval_report": folder}})
    with api_client(built, settings) as client:
        overview = client.get("/ui/api/overview").json()
        drift = client.get("/ui/api/drift").json()
    summary = overview["report"]
    assert summary["build_version"] == report.build_version
    assert summary["rows"]["two_stage"]["ndcg@10"] == report.results["two_stage"]["ndcg@10"]
    assert sum(summary["drift_flags"].values()) == len(report.drift.features)
    assert drift["report_psi"] == {n: s.psi for n, s in report.drift.features.items()} | {
        "score": report.drift.score.psi
    }


def test_a_missing_evaluation_report_is_a_usage_error(
    built: Built, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["serve", "--artifacts", str(built.artifacts), "--eval-report", "/no/such/report"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "/no/such/report" in err and len(err.splitlines()) == 1


def test_the_demo_prints_the_command_that_serves_its_build() -> None:
    command = serve_command(Path("demo-output/artifacts"), Path("demo-output/report"), Settings())
    assert command == (
        "recsys serve --artifacts demo-output/artifacts --eval-report demo-output/report"
    )
    args = _parser().parse_args(shlex.split(command)[1:])
    assert (args.command, args.artifacts, args.eval_report) == (
        "serve",
        Path("demo-output/artifacts"),
        Path("demo-output/report"),
    )
    given = Settings(redis_url="redis://:hunter2@db:6379/0", key_prefix="recsys-demo")
    shown = serve_command(Path("a"), Path("r"), given)
    assert "hunter2" not in shown and "RECSYS_KEY_PREFIX=recsys-demo" in shown
    assert dashboard_url(Settings()) == "http://127.0.0.1:8000/ui"
