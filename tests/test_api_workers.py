"""`recsys serve` with two uvicorn workers: both serve the build, and /metrics sums them."""

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from loadtest.run import stop_server
from recsys.net import free_port
from tests.test_api_support import Built

ROOT = Path(__file__).resolve().parents[1]


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@pytest.fixture(scope="module")
def two_workers(
    built: Built, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, Path]]:
    port = free_port()
    metrics_dir = tmp_path_factory.mktemp("prometheus")
    env = {
        **os.environ,
        "RECSYS_REDIS_URL": redis_url,
        "RECSYS_KEY_PREFIX": built.settings.key_prefix,
        "RECSYS_SERVE__WORKERS": "2",
        "RECSYS_SERVE__PORT": str(port),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "serve", "--artifacts", str(built.artifacts)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, server)
        yield base, metrics_dir
    finally:
        stop_server(server)
        assert server.stderr is not None
        server.stderr.close()


def _wait_ready(base: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 90
    while True:
        if server.poll() is not None:
            assert server.stderr is not None
            raise AssertionError(f"recsys serve exited: {server.stderr.read().decode()[-2000:]}")
        try:
            if _get(f"{base}/readyz")[0] == 200:
                return
        except OSError:
            pass  # not listening yet
        assert time.monotonic() < deadline, "recsys serve with 2 workers did not become ready"
        time.sleep(0.2)


def _metrics(base: str) -> dict[str, Any]:
    status, text = _get(f"{base}/metrics")
    assert status == 200
    return {f.name: f for f in text_string_to_metric_families(text.decode())}


def _wait_for_both_workers(base: str) -> None:
    """/readyz answered by one worker says nothing of the other: wait until both have loaded the
    build, which each counts as a swap in the shared metrics."""
    deadline = time.monotonic() + 90
    while _metrics(base)["recsys_model_swaps"].samples[0].value < 2:
        assert time.monotonic() < deadline, "the second worker did not load the build"
        time.sleep(0.2)


def test_two_workers_answer_and_metrics_sum_over_both(
    two_workers: tuple[str, Path], built: Built
) -> None:
    base, metrics_dir = two_workers
    _wait_for_both_workers(base)
    users = built.known_users(40)
    for user in users:  # a new connection each time, so the kernel spreads them over workers
        status, body = _get(f"{base}/recommendations/{user}?k=5")
        assert status == 200
        answer = json.loads(body)
        assert answer["model_version"] == built.version
        assert len(answer["items"]) == 5
    families = _metrics(base)
    served = sum(
        s.value
        for s in families["recsys_http_request_duration_seconds"].samples
        if s.name.endswith("_count") and s.labels["route"] == "/recommendations/{user_id}"
    )
    assert served == len(users)
    # 2 swaps in the sum: both workers' files are read, whichever worker answers /metrics
    assert families["recsys_model_swaps"].samples[0].value == 2
    gauge_pids = {p.stem.rsplit("_", 1)[-1] for p in metrics_dir.glob("gauge_livemax_*.db")}
    assert len(gauge_pids) == 2
