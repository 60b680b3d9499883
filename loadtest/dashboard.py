"""A dashboard kept open during a load test step (``recsys loadtest --dashboard``).

Headless Chromium (``loadtest/browser.py``) opens two tabs on the server under test: the
overview, which reloads its data every ``ui.refresh_s`` (5 s) by itself, and a second tab that
moves through the other pages (builds, a user, an item, drift), one every ``cycle_s`` (5 s), with
users, devices, times and items drawn from the traffic plan, the way a click on one of the
dashboard's links moves: in the same document, through the page's own router (``ui.js``). So
every dashboard endpoint is called while locust measures the API: more than one person watching
the overview would cost.
The browser runs on the machine under test, like locust; its CPU is in the step's figures.

Everything a page must never do counts as an error: a console error, an uncaught exception, a
failed request or an HTTP error status. The load test fails on any.
"""

import random
import threading
from dataclasses import dataclass, field
from statistics import median
from types import TracebackType
from typing import TYPE_CHECKING, Final, Self
from urllib.parse import quote

from loadtest.browser import launch
from loadtest.traffic import TrafficPlan

if TYPE_CHECKING:
    from playwright.sync_api import ConsoleMessage, Page, Request, Response

DATA_PATH: Final = "/ui/api/"
CYCLE_S: Final = 5.0
MAX_PROBLEMS_KEPT: Final = 10


@dataclass(frozen=True)
class DashboardStats:
    """What the open dashboard saw during a step."""

    data_loads: int = 0  # JSON answers of /ui/api/* the pages received
    errors: int = 0
    p50_ms: float | None = None  # of those answers, as the browser timed them
    p95_ms: float | None = None
    max_ms: float | None = None
    problems: list[str] = field(default_factory=list)  # the first few errors, in words

    @classmethod
    def of(cls, times_ms: list[float], errors: int, problems: list[str] | None = None) -> Self:
        """The stats of these data-load times (ms) and errors."""
        return cls(
            data_loads=len(times_ms),
            errors=errors,
            p50_ms=round(median(times_ms), 1) if times_ms else None,
            p95_ms=round(_percentile(times_ms, 0.95), 1) if times_ms else None,
            max_ms=round(max(times_ms), 1) if times_ms else None,
            problems=list(problems or []),
        )


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class DashboardSession:
    """A browser with the dashboard open until the block ends (a thread of its own: Playwright's
    sync API stays on the thread that started it)."""

    def __init__(
        self, base_url: str, plan: TrafficPlan, seed: int = 0, cycle_s: float = CYCLE_S
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.plan = plan
        self.cycle_s = cycle_s
        self.rng = random.Random(seed)
        self._stop = threading.Event()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dashboard", daemon=True)
        self._times_ms: list[float] = []
        self._errors = 0
        self._problems: list[str] = []
        self._failure: BaseException | None = None

    # ------------------------------------------------------------------ the block

    def __enter__(self) -> Self:
        self._thread.start()
        if not self._started.wait(timeout=60):
            raise RuntimeError("the dashboard's browser did not open its first page within 60 s")
        if self._failure is not None:
            raise RuntimeError(f"the dashboard's browser did not start: {self._failure}")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    @property
    def stats(self) -> DashboardStats:
        return DashboardStats.of(self._times_ms, self._errors, self._problems)

    # ------------------------------------------------------------------ the browser

    def _problem(self, text: str) -> None:
        self._errors += 1
        if len(self._problems) < MAX_PROBLEMS_KEPT:
            self._problems.append(text)

    def _watch(self, page: "Page") -> None:
        def console(message: "ConsoleMessage") -> None:
            if message.type == "error":
                self._problem(f"console: {message.text}")

        def response(r: "Response") -> None:
            if r.status >= 400:
                self._problem(f"HTTP {r.status} {r.url}")

        def finished(request: "Request") -> None:
            if DATA_PATH in request.url:
                timing = request.timing
                self._times_ms.append(timing["responseEnd"])

        page.on("console", console)
        page.on("pageerror", lambda error: self._problem(f"page error: {error}"))
        page.on(
            "requestfailed",
            lambda request: self._problem(f"failed: {request.url} ({request.failure})"),
        )
        page.on("response", response)
        page.on("requestfinished", finished)

    def _next_page(self, step: int) -> str:
        plan, rng = self.plan, self.rng
        kind = ("builds", "users", "items", "drift")[step % 4]
        if kind == "users":
            user = rng.choices(plan.users, weights=plan.user_weights)[0]
            device = rng.choices(plan.devices, weights=plan.device_weights)[0]
            ts = plan.ts_start + rng.randrange(plan.ts_span_s)
            return f"/ui/users?user={quote(user, safe='')}&device={quote(device)}&ts={ts}"
        if kind == "items":
            item = rng.choices(plan.items, weights=plan.item_weights)[0]
            return f"/ui/items?item={quote(str(item), safe='')}"
        return f"/ui/{kind}"

    def _run(self) -> None:
        # everything inside the try: a failure here (Playwright missing included) must reach
        # __enter__, or the run would go on and report a dashboard that never opened as clean
        try:
            from playwright.sync_api import sync_playwright

            with sync_playwright() as playwright:
                browser = launch(playwright)
                context = browser.new_context(viewport={"width": 1280, "height": 900})
                overview, other = context.new_page(), context.new_page()
                self._watch(overview)
                self._watch(other)
                overview.goto(f"{self.base_url}/ui")  # reloads its data by itself
                self._started.set()
                other.goto(f"{self.base_url}{self._next_page(0)}")
                step = 1
                while not self._stop.is_set():
                    # waiting inside Playwright lets it deliver both tabs' events meanwhile
                    other.wait_for_timeout(self.cycle_s * 1000)
                    if self._stop.is_set():
                        break
                    # as a click on a link does: the page's script shows the next page in the
                    # same document (ui.js ``navigate``)
                    other.evaluate("url => window.recsysUi.navigate(url)", self._next_page(step))
                    step += 1
                browser.close()
        except Exception as e:  # reported by __enter__, or as an error of the step
            self._failure = e
            self._problem(f"browser: {e}")
            self._started.set()
