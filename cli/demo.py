"""``recsys demo``: the whole lifecycle on embedded defaults, end to end in about two minutes.

The demo replaces its ``--out`` folder on each run, so it deletes only a folder it created: one
holding its marker file. Anything else that is not empty is refused (issue 12: ``--out ~`` used
to delete the home folder). It runs on a Redis of its own unless ``--redis-url`` names one
(``cli.main`` sees to that).
"""

import contextlib
import json
import logging
import shlex
import shutil
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import uvicorn

from api.app import create_app
from eval.run import run_eval
from offline.data import synth
from recsys.artifacts import REDIS_DIR
from recsys.config import Settings
from recsys.data.load import load_dataset
from recsys.errors import RecsysError
from recsys.net import free_port
from recsys.pipeline import run_build
from recsys.store.connect import open_redis, redact_url

log = logging.getLogger(__name__)


DEMO_MARKER = ".recsys-demo"


def prepare_out(out: Path) -> None:
    """An empty ``out`` with the demo's marker; an earlier demo's folder is replaced, anything
    else that is not empty is refused (``RecsysError``) before anything is touched."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise RecsysError(f"--out {out}: not a folder (a file or a symlink); choose another")
    if out.is_dir() and any(out.iterdir()):
        if not (out / DEMO_MARKER).is_file():
            raise RecsysError(
                f"--out {out} is not empty and was not created by recsys demo (no {DEMO_MARKER} "
                "in it): refusing to delete it. Choose a new or empty folder."
            )
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / DEMO_MARKER).write_text(
        "Created by `recsys demo`, which deletes and recreates this folder on its next run.\n"
    )


def demo(out: Path, users: int, items: int, settings: Settings) -> None:
    prepare_out(out)
    data, artifacts, report = out / "data", out / "artifacts", out / "report"
    log.info("1/4 synthetic data -> %s", data)
    synth(data, users=users, items=items, seed=7)
    log.info("2/4 evaluation (leave-last-out) -> %s", report)
    run_eval(data, report, "leave-last-out", settings)
    log.info("3/4 build on all data -> %s", artifacts)
    with open_redis(
        settings.redis_url,
        artifacts / REDIS_DIR,
        client_cfg=settings.redis_client,
        server_cfg=settings.redis_server,
    ) as (client, url):
        build = run_build(load_dataset(data), artifacts, client, settings)
        log.info("4/4 serve and ask")
        port = free_port()
        app = create_app(settings.model_copy(update={"redis_url": url}), artifacts)
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        try:
            _ask(f"http://127.0.0.1:{port}", build.users.keys()[:3])
        finally:
            server.should_exit = True
            thread.join(timeout=10)
    print(f"\nreport: {report / 'report.md'}\nartifacts: {artifacts} (build {build.version})")
    print(
        "\nServe the demo build with its dashboard (Ctrl-C stops it):\n"
        f"  {serve_command(artifacts, report, settings)}\n"
        f"and open {dashboard_url(settings)}"
    )


def serve_command(artifacts: Path, report: Path, settings: Settings) -> str:
    """The one command that serves the demo's build: its artifacts (and their Redis data), its
    evaluation report on the dashboard's overview, and, when the demo used a given Redis, that
    Redis and the demo's key prefix (never a password: the URL goes through the environment)."""
    program = sys.argv[0] if Path(sys.argv[0]).name == "recsys" else "recsys"
    parts = [program, "serve", "--artifacts", str(artifacts), "--eval-report", str(report)]
    env = []
    if settings.redis_url:
        env = [
            f"RECSYS_KEY_PREFIX={settings.key_prefix}",
            f"RECSYS_REDIS_URL={redact_url(settings.redis_url)}",
        ]
    return " ".join(shlex.quote(p) for p in [*env, *parts])


def dashboard_url(settings: Settings) -> str:
    host = settings.serve.host
    return f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{settings.serve.port}/ui"


def _call(base: str, path: str, body: dict[str, object] | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(
        base + path, data=data, headers={"content-type": "application/json"} if data else {}
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def _ask(base: str, known_users: list[str]) -> None:
    for _ in range(100):
        with contextlib.suppress(OSError):
            if _call(base, "/readyz")[0] == 200:
                break
        time.sleep(0.1)
    asks = [f"/recommendations/{u}?k=5&device=tv" for u in known_users]
    asks += [
        "/recommendations/someone-new?k=5",
        f"/recommendations/{known_users[0]}?k=5&device=mobile",
    ]
    for path in asks:
        start = time.perf_counter()
        status, body = _call(base, path)
        ms = (time.perf_counter() - start) * 1000
        items = ", ".join(str(i["item_id"]) for i in body["items"])
        print(f"GET {path:<44} {status} {ms:6.1f} ms  fallback={body['fallback']}  items=[{items}]")
    user = known_users[0]
    watched = _call(base, f"/recommendations/{user}?k=1")[1]["items"][0]["item_id"]
    status, _ = _call(base, "/events", {"user_id": user, "item_id": watched, "device": "tv"})
    after = [i["item_id"] for i in _call(base, f"/recommendations/{user}?k=5")[1]["items"]]
    print(
        f"POST /events user {user} watched {watched} -> {status}; "
        f"gone from the next answer: {watched not in after}"
    )
