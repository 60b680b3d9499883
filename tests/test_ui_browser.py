"""The dashboard in a real browser (issue 16): headless Chromium (Debian's package, driven by
Playwright) against a live server with an API key set, serving an A/B split between two real
builds (a champion and a challenger line, issue 15). One browser and one server for the module;
the promotion test runs last, since it changes which build is the champion."""

from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx2 as httpx
import pytest
import redis
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Page,
    Response,
    expect,
    sync_playwright,
)

from api.app import create_app
from loadtest.browser import launch
from recsys.experiment import TrafficSplit
from recsys.inspection.tables import load_tables
from recsys.pipeline import run_build
from recsys.store.user_store import current_build
from tests.test_api_support import Built, live_server

KEY = "browser-key"
SPLIT = {"champion": 0.5, "challenger": 0.5}
SALT = "browser"
HEADERS = {"X-API-Key": KEY}


@pytest.fixture(scope="module")
def challenger(built: Built) -> str:
    """A second build line's build, from the same data (issue 15's ``recsys build --name``)."""
    with redis.Redis.from_url(built.settings.redis_url or "") as client:
        return run_build(
            built.dataset, built.artifacts, client, built.settings, name="challenger"
        ).version


@pytest.fixture(scope="module")
def server(built: Built, challenger: str) -> Iterator[str]:
    # generous Redis and ranking budgets: these tests compare answers, and on a busy machine a
    # 20 ms read can time out into a fallback on one side of a comparison only
    settings = built.with_serve(
        api_key=KEY, redis_timeout_ms=500, deadline_ms=2000, ab=SPLIT, ab_salt=SALT
    )
    with live_server(create_app(settings, built.artifacts)) as base:
        yield base


def users_of(arm: str, candidates: list[str]) -> list[str]:
    split = TrafficSplit.of(SPLIT, SALT)
    return [u for u in candidates if split.assign(u) == arm]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()


@dataclass
class Problems:
    """What a page must never show: console errors, uncaught exceptions, failed requests."""

    seen: list[str] = field(default_factory=list)

    def console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.seen.append(f"console: {message.text}")

    def response(self, response: Response) -> None:
        if response.status >= 400:
            self.seen.append(f"HTTP {response.status} {response.url}")


@pytest.fixture
def page(browser: Browser, server: str) -> Iterator[tuple[Page, Problems]]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    problems = Problems()
    page.on("console", problems.console)
    page.on("pageerror", lambda error: problems.seen.append(f"page error: {error}"))
    page.on(
        "requestfailed",
        lambda request: problems.seen.append(f"failed: {request.url} ({request.failure})"),
    )
    page.on("response", problems.response)
    # signing in through the form, as a person would
    page.goto(f"{server}/ui")
    assert "/ui/login" in page.url
    page.fill("input[name=key]", KEY)
    page.click("button[type=submit]")
    page.wait_for_url(f"{server}/ui")
    # the overview's data is on its way: navigating before it is back would abort it (a failed
    # request), as a person clicking away at once would
    expect(page.locator("#status")).not_to_have_text("Loading…", timeout=15_000)
    yield page, problems
    context.close()


def loaded(page: Page, url: str) -> str:
    """Open ``url`` and wait for its data; returns the status line."""
    page.goto(url)
    status = page.locator("#status")
    expect(status).not_to_have_text("Loading…", timeout=15_000)
    assert "error" not in (status.get_attribute("class") or ""), status.inner_text()
    return status.inner_text()


def test_signing_in_keeps_the_session_out_of_reach_of_scripts(
    page: tuple[Page, Problems], server: str
) -> None:
    p, problems = page
    cookies = {c["name"]: c for c in p.context.cookies()}
    session = cookies["recsys_ui"]
    assert session["httpOnly"] and session["sameSite"] == "Strict" and session["path"] == "/ui"
    assert p.evaluate("document.cookie") == ""  # HttpOnly: invisible to the page's scripts
    assert KEY not in p.url
    assert problems.seen == []


def test_every_page_loads_with_no_console_error_and_shows_the_builds_data(
    page: tuple[Page, Problems], server: str, built: Built
) -> None:
    p, problems = page
    tables = load_tables(built.result.path)
    assert tables.audience is not None
    user = tables.audience.users[0]
    ids = built.result.candidate_model.items.ids_list
    item = int(tables.audience.reach.argmax())
    title = tables.catalogue["title"][item]

    loaded(p, f"{server}/ui")
    assert built.version in p.locator("main").inner_text()
    assert p.locator("main").get_by_text("healthy").count() == 1
    arms = p.locator("tr.arm-row").evaluate_all("rows => rows.map(r => r.dataset.arm)")
    assert sorted(arms) == ["challenger", "champion"]

    loaded(p, f"{server}/ui/builds")
    row = p.locator(f"tr[data-version='{built.version}']")
    assert row.count() == 1 and "current" in row.inner_text()
    assert p.locator("canvas").count() >= 2  # feature importance and time per stage (uPlot)
    top_feature = max(
        built.result.manifest.ranker.feature_importance_gain.items(), key=lambda kv: kv[1]
    )[0]
    assert p.locator(".chart-data td").first.text_content() == top_feature  # its data table

    loaded(p, f"{server}/ui/users?user={user}")
    assert p.locator("tr.answer-item").count() == 20
    assert p.locator("tr.answer-item .explain.ranker").count() == 20  # explanations shown
    assert "Candidates by source" in p.locator("main").inner_text()
    first_source = p.locator("details").first  # its table is built when it is opened
    first_source.locator("summary").click()
    expect(first_source.locator("tbody tr").first).to_be_visible()

    loaded(p, f"{server}/ui/items?item={ids[item]}")
    assert title in p.locator("h1").inner_text()
    assert p.locator("canvas").count() >= 1  # events over time
    assert "Recommended to" in p.locator("main").inner_text()

    loaded(p, f"{server}/ui/drift")
    text = p.locator("main").inner_text()
    assert "stage1_score" in text and "training window" in text
    assert problems.seen == []


def test_the_user_inspector_lists_what_get_recommendations_answers(
    page: tuple[Page, Problems], server: str, built: Built
) -> None:
    p, problems = page
    known = built.known_users(40)
    for user, device, ts in [
        (users_of("champion", known)[0], "tv", 1_707_700_000),
        (users_of("challenger", known)[0], "mobile", 1_707_650_000),
        ("someone-new", "tv", 1_707_700_000),
    ]:
        expected = httpx.get(
            f"{server}/recommendations/{user}",
            params={"k": 12, "device": device, "ts": ts, "explain": "true"},
            headers=HEADERS,
        ).json()
        loaded(p, f"{server}/ui/users?user={user}&k=12&device={device}&ts={ts}")
        rows = p.locator("tr.answer-item")
        shown = rows.evaluate_all("rows => rows.map(r => r.dataset.itemId)")
        assert shown == [str(i["item_id"]) for i in expected["items"]]
        assert len(shown) == 12
        context = p.locator("#answer-context").inner_text()
        assert f"arm {expected['arm']}, build {expected['model_version']}" in context
        # each item's explanation, as explain=true gives it: sources, stage-1 rank, ranker
        # score, the largest contribution
        for row, item in zip(rows.all(), expected["items"], strict=True):
            why = item["explanation"]
            tags = row.locator(".tag").evaluate_all("tags => tags.map(t => t.textContent)")
            assert tags == why["sources"]
            text = row.inner_text()
            if why["stage1_rank"] is not None:
                assert f"stage 1: #{why['stage1_rank'] + 1}," in text
            if why["ranker_score"] is not None:
                assert f"ranker: {why['ranker_score']:,.4f}" in text
            if why["contributions"]:
                assert f"{why['contributions'][0]['feature']} = " in text
        if user == "someone-new":
            assert expected["fallback"] == "cold-start" and "not a candidate" in text
        else:
            assert expected["fallback"] is None and why["contributions"]
    assert problems.seen == []


def test_the_overview_shows_each_arms_online_metrics(
    page: tuple[Page, Problems], server: str, built: Built
) -> None:
    p, problems = page
    known = built.known_users(40)
    clicked = 0
    for arm in ("champion", "challenger"):
        for user in users_of(arm, known)[:3]:
            answer = httpx.get(
                f"{server}/recommendations/{user}", params={"k": 10}, headers=HEADERS
            ).json()
            assert answer["arm"] == arm
            if arm == "challenger":  # a click on its first item, naming the answer
                event = {
                    "user_id": user,
                    "item_id": answer["items"][0]["item_id"],
                    "type": "click",
                    "request_id": answer["request_id"],
                }
                r = httpx.post(f"{server}/events", json=event, headers=HEADERS)
                assert r.status_code == 202, r.text
                clicked += 1
    loaded(p, f"{server}/ui")
    rows = {
        r.get_attribute("data-arm"): r.locator("td").all_inner_texts()
        for r in p.locator("tr.online-row").all()
    }
    assert set(rows) == {"champion", "challenger"}
    # columns: arm, answers, ranked, items shown, CTR, ...
    assert rows["champion"][4] == "0.00%"  # shown, never clicked
    shown = int(rows["challenger"][3].replace(",", ""))
    ctr = float(rows["challenger"][4].rstrip("%")) / 100
    assert shown >= 30 and ctr == pytest.approx(clicked / shown, abs=6e-5)
    assert problems.seen == []


def test_the_overview_refreshes_in_place_and_links_stay_in_the_document(
    page: tuple[Page, Problems], server: str, built: Built
) -> None:
    """A refresh updates the drawn overview (its nodes stay), and moving to another page, by a
    link, a form or the back button, loads no new document and stops the overview's refresh:
    the browser often runs on the machine it watches (issue 16's load test)."""
    p, problems = page
    status = loaded(p, f"{server}/ui")
    p.evaluate("document.querySelector('[data-view=overview]').drawnOnce = true")
    p.evaluate("window.sameDocument = true")
    expect(p.locator("#status")).not_to_have_text(status, timeout=15_000)  # the next refresh
    assert p.evaluate("document.querySelector('[data-view=overview]').drawnOnce") is True
    assert built.version in p.locator("main").inner_text()

    overview_calls: list[str] = []
    p.on("request", lambda r: overview_calls.append(r.url) if "/api/overview" in r.url else None)
    p.click("header nav a[href='/ui/builds']")
    p.wait_for_url(f"{server}/ui/builds")
    expect(p.locator(f"tr[data-version='{built.version}']")).to_have_count(1)
    assert p.title() == "recsys · Builds"
    assert p.locator("header nav a[aria-current=page]").inner_text() == "Builds"

    user = built.known_users(5)[0]
    p.click("header nav a[href='/ui/users']")
    p.fill("input[name=user]", user)
    p.fill("input[name=k]", "7")
    p.click("form button[type=submit]")
    p.wait_for_url(f"{server}/ui/users?user={user}**")
    expect(p.locator("tr.answer-item")).to_have_count(7)
    p.locator("tr.answer-item a").first.click()  # an item's page
    p.wait_for_url(f"{server}/ui/items?item=**")
    expect(p.locator("main h1")).not_to_have_text("Item")  # its title, once its data is drawn

    p.go_back()
    p.wait_for_url(f"{server}/ui/users?user={user}**")
    expect(p.locator("tr.answer-item")).to_have_count(7)
    assert p.evaluate("window.sameDocument") is True  # one document all along
    p.wait_for_timeout(5_500)  # more than ui.refresh_s since the overview's last refresh
    assert overview_calls == []
    assert p.locator("main h1").inner_text() == "User inspector"
    assert problems.seen == []


def test_promote_from_the_builds_page_switches_the_champion(
    page: tuple[Page, Problems], server: str, built: Built, challenger: str
) -> None:
    """Last in the module: after it, the challenger's build is the champion's."""
    p, problems = page
    user = users_of("champion", built.known_users(40))[0]

    def served_to_champion_users() -> str:
        answer = httpx.get(f"{server}/recommendations/{user}", headers=HEADERS).json()
        assert answer["arm"] == "champion"
        return str(answer["model_version"])

    assert served_to_champion_users() == built.version
    loaded(p, f"{server}/ui/builds")
    assert p.locator(f"tr[data-version='{built.version}'] button.promote").count() == 0
    button = p.locator(f"tr[data-version='{challenger}'] button.promote")
    assert button.count() == 1
    p.once("dialog", lambda dialog: dialog.accept())  # "Promote challenger ...?"
    button.click()
    expect(p.locator("#promote-status")).to_contain_text(f"the champion is now {challenger}")
    with redis.Redis.from_url(built.settings.redis_url or "") as client:
        assert current_build(client, built.keys) == challenger
    # this worker swapped at once; the page drew the builds again
    assert served_to_champion_users() == challenger
    assert "current" in p.locator(f"tr[data-version='{challenger}']").inner_text()
    assert p.locator("button.promote").count() == 0
    assert problems.seen == []
