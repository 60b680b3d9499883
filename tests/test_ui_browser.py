"""The dashboard in a real browser (issue 16): headless Chromium (Debian's package, driven by
Playwright) against a live server on a real build with an API key set. One browser and one
build for the module."""

from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx2 as httpx
import pytest
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
from recsys.inspection.tables import load_tables
from tests.test_api_support import Built, live_server

KEY = "browser-key"


@pytest.fixture(scope="module")
def server(built: Built) -> Iterator[str]:
    # generous Redis and ranking budgets: these tests compare answers, and on a busy machine a
    # 20 ms read can time out into a fallback on one side of a comparison only
    settings = built.with_serve(api_key=KEY, redis_timeout_ms=500, deadline_ms=2000)
    with live_server(create_app(settings, built.artifacts)) as base:
        yield base


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
    assert "Candidates by source" in p.locator("main").inner_text()

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
    for user, device, ts in [
        (built.known_users(5)[4], "tv", 1_707_700_000),
        (built.known_users(6)[5], "mobile", 1_707_650_000),
        ("someone-new", "tv", 1_707_700_000),
    ]:
        expected = httpx.get(
            f"{server}/recommendations/{user}",
            params={"k": 12, "device": device, "ts": ts},
            headers={"X-API-Key": KEY},
        ).json()
        loaded(p, f"{server}/ui/users?user={user}&k=12&device={device}&ts={ts}")
        shown = p.locator("tr.answer-item").evaluate_all("rows => rows.map(r => r.dataset.itemId)")
        assert shown == [str(i["item_id"]) for i in expected["items"]]
        assert len(shown) == 12
    assert problems.seen == []
