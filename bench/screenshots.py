"""Screenshots of every dashboard page for docs/img/, taken with the real browser on a real build.

    python bench/screenshots.py [--out docs/img] [--work bench-output/screenshots]

(``make screenshots``.) A synthetic log (3,000 users x 600 items, seed 7), its evaluation report
and two builds with default settings (the champion, and a challenger line of the same data:
``recsys build --name challenger``); the API with an API key and a 50/50 A/B split between
them, on a local Redis, fed some traffic (known and unknown users; clicks, watches and skips
that name the answer they came from) so that live traffic, online metrics and drift have data;
then headless Chromium signs in and photographs each page. About three minutes on the 2-core
development machine. Build versions, times and live figures differ from run to run; the layout
does not.
"""

import argparse
import contextlib
import logging
import random
import shutil
import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import uvicorn
from playwright.sync_api import Page, expect, sync_playwright

from api.app import create_app
from eval.run import run_eval
from loadtest.browser import launch
from offline.data import synth
from recsys.artifacts import REDIS_DIR
from recsys.config import Settings, with_overrides
from recsys.data.load import load_dataset
from recsys.inspection.tables import load_tables
from recsys.net import free_port
from recsys.pipeline import run_build
from recsys.store.connect import open_redis

log = logging.getLogger("screenshots")

KEY = "screenshot-key"
USERS, ITEMS, SEED = 3000, 600, 7
WIDTH = 1280
SPLIT = {"champion": 0.5, "challenger": 0.5}


@contextlib.contextmanager
def serving(settings: Settings, artifacts: Path) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, artifacts), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{base}/readyz").status_code == 200:
                break
        time.sleep(0.1)
    try:
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def traffic(
    base: str, users: list[str], items: list[object], day_after: int, stop: threading.Event
) -> None:
    """Requests like the load test's, slowly: known users on a device at a time in the day
    after the log ends, some unknown users (cold start), some events: a few organic watches,
    and clicks, watches and skips of items recent answers showed, naming those answers."""
    rng = random.Random(SEED)
    headers = {"X-API-Key": KEY}
    shown: deque[tuple[str, str, list[object]]] = deque(maxlen=50)
    with httpx.Client(base_url=base, headers=headers, timeout=5) as client:
        while not stop.is_set():
            r = rng.random()
            if r < 0.1:
                client.get(f"/recommendations/new-{rng.randrange(10**6)}")
            elif r < 0.13:
                event = {"user_id": rng.choice(users), "item_id": rng.choice(items)}
                client.post("/events", json=event)
            elif r < 0.25 and shown:
                user, request_id, answer = shown.popleft()
                kind = rng.choice(["click", "watch", "watch", "skip"])
                event = {
                    "user_id": user,
                    "item_id": answer[min(int(rng.expovariate(0.4)), len(answer) - 1)],
                    "type": kind,
                    "request_id": request_id,
                }
                if kind == "watch":
                    event["completion"] = round(rng.uniform(0.2, 1.0), 2)
                client.post("/events", json=event)
            else:
                user = rng.choice(users)
                params = {
                    "device": rng.choice(["tv", "mobile", "web", "tablet"]),
                    "ts": day_after + rng.randrange(86_400),
                }
                body = client.get(f"/recommendations/{user}", params=params).json()
                if body.get("items"):
                    ids = [i["item_id"] for i in body["items"]]
                    shown.append((user, body["request_id"], ids))
            time.sleep(0.02)


def shoot(page: Page, url: str, path: Path, wait_s: float = 0.5) -> None:
    page.goto(url)
    expect(page.locator("#status")).not_to_have_text("Loading…", timeout=30_000)
    time.sleep(wait_s)
    page.screenshot(path=str(path), full_page=True)
    log.info("wrote %s", path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("docs/img"))
    p.add_argument("--work", type=Path, default=Path("bench-output/screenshots"))
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    shutil.rmtree(args.work, ignore_errors=True)
    data, artifacts, report = args.work / "data", args.work / "artifacts", args.work / "report"
    args.out.mkdir(parents=True, exist_ok=True)
    settings = Settings(redis_url=None)
    synth(data, users=USERS, items=ITEMS, seed=SEED)
    run_eval(data, report, "leave-last-out", settings)
    with open_redis(None, artifacts / REDIS_DIR) as (client, url):
        dataset = load_dataset(data)
        build = run_build(dataset, artifacts, client, settings)
        run_build(dataset, artifacts, client, settings, name="challenger")
        tables = load_tables(build.path)
        assert tables.audience is not None
        app_settings = with_overrides(
            settings,
            {
                "redis_url": url,
                "serve": {"api_key": KEY, "build_poll_s": 1.0, "ab": SPLIT},
                "ui": {"eval_report": report, "refresh_s": 2.0},
            },
        )
        users = build.users.keys()
        items = build.candidate_model.items.ids_list
        with serving(app_settings, artifacts) as base:
            stop = threading.Event()
            day_after = build.manifest.data.last_ts
            feeder = threading.Thread(target=traffic, args=(base, users, items, day_after, stop))
            feeder.start()
            try:
                time.sleep(8)  # live traffic for the overview, sampled requests for drift
                with sync_playwright() as playwright:
                    browser = launch(playwright)
                    page = browser.new_page(viewport={"width": WIDTH, "height": 900})
                    page.goto(f"{base}/ui/login?next=/ui")
                    page.screenshot(path=str(args.out / "ui-login.png"))
                    page.fill("input[name=key]", KEY)
                    page.click("button[type=submit]")
                    page.wait_for_url(f"{base}/ui")
                    shoot(page, f"{base}/ui", args.out / "ui-overview.png", wait_s=5)
                    shoot(page, f"{base}/ui/builds", args.out / "ui-builds.png")
                    user = tables.audience.users[0]
                    ts = build.manifest.data.last_ts + 3600
                    shoot(
                        page,
                        f"{base}/ui/users?user={user}&device=tv&ts={ts}&k=10",
                        args.out / "ui-user.png",
                    )
                    item = items[int(tables.audience.reach.argmax())]
                    shoot(page, f"{base}/ui/items?item={item}", args.out / "ui-item.png")
                    shoot(page, f"{base}/ui/drift", args.out / "ui-drift.png")
                    browser.close()
            finally:
                stop.set()
                feeder.join()
        client.close()


if __name__ == "__main__":
    main()
