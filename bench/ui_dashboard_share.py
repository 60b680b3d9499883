"""What an open dashboard costs a load test, split: the server's side vs the browser's CPU.

    flock /work/bench.lock python bench/ui_dashboard_share.py browser|http -- LOADTEST_ARGS...

``recsys loadtest --dashboard`` keeps headless Chromium open on the machine under test
(``loadtest/dashboard.py``), so a step with the dashboard open pays for two things on the same
cores: the API computing the pages' data, and the browser drawing them. In production the
browser runs elsewhere. This runs the same ``recsys loadtest`` command with the dashboard in
one of two forms:

- ``browser``: the load test's own dashboard (Chromium), with the CPU its process tree used
  during the step measured and printed (``browser cores``);
- ``http``: no browser; a thread asks the same JSON endpoints on the same schedule (the
  overview every 5 s, and one of builds, a user, an item, drift every 5 s, drawn from the
  traffic plan as the browser's second tab does), so the server does the same work and
  nothing draws.

The step's figures are the load test's own (``--out``); this adds ``dashboard_share.json``
there.
"""

import json
import os
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx2 as httpx

import loadtest.run as run
from cli.main import main as cli_main
from loadtest.dashboard import CYCLE_S, DashboardSession, DashboardStats
from loadtest.traffic import TrafficPlan

DATA = {
    "builds": "/ui/api/builds",
    "drift": "/ui/api/drift",
}


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(int(entry.name))
    return out


def _browser_cpu_s() -> float:
    """CPU seconds of this process's children other than Redis, the server and locust: the
    Playwright driver and the Chromium it started."""
    total = 0.0
    for child in _children(os.getpid()):
        try:
            cmd = (Path("/proc") / str(child) / "cmdline").read_bytes()
        except OSError:
            continue
        if b"playwright" in cmd or b"chrom" in cmd:
            total += run._tree_cpu_s(child) or 0.0
    return total


RESULTS: list[dict[str, float | None]] = []


class MeasuredBrowser(DashboardSession):
    def __enter__(self) -> Self:
        super().__enter__()
        self._cpu0, self._t0 = _browser_cpu_s(), time.monotonic()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        cores = (_browser_cpu_s() - self._cpu0) / (time.monotonic() - self._t0)
        RESULTS.append({"browser_cores": round(cores, 3)})
        print(f"browser cores: {cores:.3f}", flush=True)
        super().__exit__(exc_type, exc, tb)


class HttpDashboard:
    """The browser's schedule of data loads, without a browser."""

    def __init__(self, base_url: str, plan: TrafficPlan, seed: int = 0) -> None:
        self.helper = DashboardSession(base_url, plan, seed=seed)  # for its page choice
        self.base_url = base_url.rstrip("/")
        self._stop = threading.Event()
        self._times: list[float] = []
        self._errors = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _path(self, step: int) -> str:
        page = self.helper._next_page(step)  # /ui/users?user=..., /ui/items?item=..., /ui/x
        kind, _, query = page.removeprefix("/ui/").partition("?")
        if kind in DATA:
            return DATA[kind]
        arg, _, rest = query.partition("&")
        key = arg.split("=", 1)[1]
        return f"/ui/api/{kind}/{key}" + (f"?{rest}" if rest else "")

    def _get(self, client: httpx.Client, path: str) -> None:
        started = time.perf_counter()
        r = client.get(path)
        self._times.append((time.perf_counter() - started) * 1000)
        if r.status_code >= 400:
            self._errors += 1

    def _run(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=30) as client:
            step, next_at = 0, time.monotonic()
            while not self._stop.is_set():
                self._get(client, "/ui/api/overview")
                self._get(client, self._path(step))
                step += 1
                next_at += CYCLE_S
                self._stop.wait(max(0.0, next_at - time.monotonic()))

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    @property
    def stats(self) -> DashboardStats:
        return DashboardStats.of(self._times, self._errors)


def main() -> None:
    mode, sep, *args = sys.argv[1:]
    if sep != "--" or mode not in ("browser", "http"):
        raise SystemExit("usage: ui_dashboard_share.py browser|http -- LOADTEST_ARGS...")
    run.DashboardSession = MeasuredBrowser if mode == "browser" else HttpDashboard  # type: ignore[misc]
    try:
        code = cli_main(["loadtest", *args, "--dashboard"])
    except SystemExit as e:
        code = int(e.code or 0)
    out = Path(args[args.index("--out") + 1]) if "--out" in args else None
    if out is not None:
        (out / "dashboard_share.json").write_text(json.dumps({"mode": mode, "steps": RESULTS}))
    sys.exit(code)


if __name__ == "__main__":
    main()
