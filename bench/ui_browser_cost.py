"""What the dashboard costs the browser that shows it: Chromium's CPU seconds per page shown and
per overview refresh, on the load test's build.

    flock /work/bench.lock python bench/ui_browser_cost.py \
        [--artifacts bench-output/loadtest/build-20k] [--rounds 3] \
        [--out bench-output/ui_browser_cost.json]

Why: ``recsys loadtest --dashboard`` keeps the dashboard open in headless Chromium on the machine
under test (``loadtest/dashboard.py``), and a page's drawing is a burst of CPU that two API
workers on 2 cores feel as late answers. CPU seconds, not wall time, so a busy machine changes
the figures little.

One ``recsys serve`` (2 workers, local Redis, no other traffic) and one browser. First the
overview, in a tab of its own, is left open for 2 x ``--rounds`` refreshes (after its first
three, so its live chart is drawn). Then, in a new tab, each page of the load test's second tab
(builds, a user, an item, drift, drawn from the traffic plan as it draws them) is shown
``--rounds`` times two ways: loaded as a new document (``page.goto``, as typing its address
does) and moved to within the document (ui.js ``navigate``, as a click on a link does), each
measured for 1.5 s. Last, ``about:blank`` for 5 s (the idle browser). CPU is that of
Chromium's processes (browser, renderer, GPU, network...), from ``/proc``; Playwright's driver
is left out. Renderer main-thread times per refresh come from the DevTools protocol
(``Performance.getMetrics``).

Run it from another checkout to measure other code: the server and the pages are the current
directory's (``python -m cli.main``), the script can come from anywhere.
"""

import argparse
import json
import os
import platform
import time
from pathlib import Path
from statistics import median

from playwright.sync_api import Page, sync_playwright

from loadtest.browser import launch
from loadtest.dashboard import DashboardSession
from loadtest.run import PLAN_FILE, serve_build
from loadtest.traffic import TrafficPlan
from recsys.artifacts import REDIS_DIR
from recsys.config import Settings
from recsys.store.connect import open_redis

TICKS = os.sysconf("SC_CLK_TCK")
SETTLE_MS = 1500
MAIN_THREAD = ("TaskDuration", "ScriptDuration", "LayoutDuration", "RecalcStyleDuration")


def _parents() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    return children


def chromium_cpu_s() -> float:
    """CPU seconds so far of every Chromium process below this one."""
    children, total = _parents(), 0.0
    todo = list(children.get(os.getpid(), []))
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            if b"chrom" not in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]:
                continue
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / TICKS
    return total


def _show(page: Page, url: str, in_place: bool) -> float:
    before = chromium_cpu_s()
    if in_place:
        page.evaluate("url => window.recsysUi.navigate(url)", url)
    else:
        page.goto(url, wait_until="load")
    page.wait_for_timeout(SETTLE_MS)
    return chromium_cpu_s() - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifacts", type=Path, default=Path("bench-output/loadtest/build-20k"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("bench-output/ui_browser_cost.json"))
    args = parser.parse_args()
    settings = Settings()
    plan = TrafficPlan.load(args.artifacts / PLAN_FILE)
    log_path = args.out.with_suffix(".server.log")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    pages: dict[str, dict[str, list[float]]] = {}
    with (
        open_redis(
            settings.redis_url,
            args.artifacts / REDIS_DIR,
            client_cfg=settings.redis_client,
            server_cfg=settings.redis_server,
        ) as (_, redis_url),
        serve_build(args.artifacts, redis_url, settings.key_prefix, 2, log_path) as (base, _),
        sync_playwright() as playwright,
    ):
        browser = launch(playwright)
        refresh_s = settings.ui.refresh_s
        # the overview first, in a tab of its own: no garbage of other pages to collect meanwhile
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.goto(f"{base}/ui")
        cdp = context.new_cdp_session(page)
        cdp.send("Performance.enable")
        page.wait_for_timeout(3 * refresh_s * 1000)  # the live chart is drawn from the 2nd

        def main_thread() -> dict[str, float]:
            metrics = cdp.send("Performance.getMetrics")["metrics"]
            return {m["name"]: m["value"] for m in metrics if m["name"] in MAIN_THREAD}

        before, cpu0, t0 = main_thread(), chromium_cpu_s(), time.monotonic()
        page.wait_for_timeout(2 * args.rounds * refresh_s * 1000)
        after, cpu1, t1 = main_thread(), chromium_cpu_s(), time.monotonic()
        refreshes = (t1 - t0) / refresh_s
        context.close()

        chooser = DashboardSession(base, plan)  # the load test's choice of pages
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        page.goto(f"{base}/ui/builds")
        page.wait_for_timeout(SETTLE_MS)
        can_move = page.evaluate("typeof (window.recsysUi || {}).navigate === 'function'")
        for step in range(4 * args.rounds):
            path = chooser._next_page(step)
            kind = path.split("?")[0]
            record = pages.setdefault(kind, {"new_document": [], "in_place": []})
            record["new_document"].append(_show(page, f"{base}{path}", in_place=False))
            if can_move:
                record["in_place"].append(_show(page, f"{base}{path}", in_place=True))
        page.goto("about:blank")
        page.wait_for_timeout(SETTLE_MS)
        idle0, i0 = chromium_cpu_s(), time.monotonic()
        page.wait_for_timeout(5000)
        idle_cores = (chromium_cpu_s() - idle0) / (time.monotonic() - i0)
        browser.close()

    result = {
        "machine": f"{platform.node()} {os.cpu_count()} cores",
        "code": os.popen("git rev-parse --short HEAD").read().strip(),
        "rounds": args.rounds,
        "per_page_cpu_s": {
            kind: {way: round(median(v), 3) if v else None for way, v in ways.items()}
            for kind, ways in pages.items()
        },
        "overview_refresh_cpu_s": round((cpu1 - cpu0) / refreshes, 3),
        "overview_refresh_main_thread_ms": {
            k: round((after[k] - before[k]) / refreshes * 1000, 1) for k in MAIN_THREAD
        },
        "idle_cores": round(idle_cores, 4),
        "runs": pages,
    }
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=1))


if __name__ == "__main__":
    main()
