"""Durable events (issue 12): an event answered with 202 survives a kill -9 of the API and of
its redis-server: every event acknowledged more than a second before the crash is there, as
seen through the API after a restart."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from offline.build import build
from recsys.artifacts import REDIS_DIR
from recsys.data.dataset import write_dataset
from recsys.items import ItemTable
from recsys.net import free_port
from tests.conftest import small_settings
from tests.test_api_support import small_dataset

ROOT = Path(__file__).resolve().parents[1]
FSYNC_WINDOW_S = 1.0  # appendfsync everysec


def _call(base: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"content-type": "application/json"} if data else {}
    request = urllib.request.Request(base + path, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


@contextmanager
def _serve(art: Path, port: int, prefix: str) -> Iterator[subprocess.Popen[bytes]]:
    """`recsys serve` on its own embedded Redis (data in ART/redis), ready to answer."""
    env = {**os.environ, "RECSYS_REDIS_URL": "", "RECSYS_KEY_PREFIX": prefix}
    cmd = [sys.executable, "-m", "cli.main", "serve", "--artifacts", str(art)]
    proc = subprocess.Popen(
        [*cmd, "--port", str(port)], cwd=ROOT, env=env, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, "recsys serve exited"
            with suppress(OSError):
                if _call(f"http://127.0.0.1:{port}", "/readyz")[0] == 200:
                    break
            assert time.monotonic() < deadline, "recsys serve did not become ready"
            time.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)


def test_acknowledged_events_survive_a_kill_9_of_the_api_and_redis(tmp_path: Path) -> None:
    data, art = tmp_path / "data", tmp_path / "art"
    write_dataset(small_dataset(), data)
    settings = small_settings(None)  # no URL: the embedded server, in ART/redis
    result = build(data, art, settings)
    items = ItemTable.load(art / result.version)
    top = items.ids_list[items.popular[0]]  # first in the answer to a user with no events
    base = f"http://127.0.0.1:{free_port()}"
    port = int(base.rsplit(":", 1)[1])
    acked: list[tuple[str, float]] = []  # (user, when the 202 came back)
    stop = threading.Event()

    def post_events() -> None:
        n = 0
        while not stop.is_set():
            user = f"durable-{n}"
            with suppress(OSError):
                if _call(base, "/events", {"user_id": user, "item_id": top})[0] == 202:
                    acked.append((user, time.monotonic()))
            n += 1
            time.sleep(0.01)

    with _serve(art, port, settings.key_prefix) as api:
        poster = threading.Thread(target=post_events)
        poster.start()
        while not acked or time.monotonic() - acked[0][1] < 2 * FSYNC_WINDOW_S:
            time.sleep(0.05)
        redis_pid = int((art / REDIS_DIR / "redis.lock").read_text())
        os.kill(api.pid, signal.SIGKILL)
        os.kill(redis_pid, signal.SIGKILL)
        killed_at = time.monotonic()
        stop.set()
        poster.join()
        api.wait(timeout=30)
    durable = [user for user, at in acked if at < killed_at - FSYNC_WINDOW_S]
    assert len(durable) >= 20, "too few events to prove anything"

    with _serve(art, port, settings.key_prefix):
        for user in durable:
            status, body = _call(base, f"/recommendations/{user}?k=5")
            # ranked from their event (a user without events would get popular items)
            assert status == 200 and body["fallback"] is None, f"{user}'s event was lost"
            assert top not in [i["item_id"] for i in body["items"]], f"{user}'s event was lost"
        control = _call(base, "/recommendations/never-posted?k=5")[1]
        assert top in [i["item_id"] for i in control["items"]]  # the check can fail
