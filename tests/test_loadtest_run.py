"""`recsys loadtest` end to end on a tiny build: a real Redis, `recsys serve` in a subprocess,
locust headless for a few seconds; the summary, the reports and the exit code."""

import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from cli.main import TOOL_KEY_PREFIXES, main
from recsys.data.dataset import write_dataset
from recsys.data.synth import generate_synthetic
from recsys.net import free_port
from recsys.store.server import LocalRedis
from tests.conftest import small_settings

LOW_RATE = 20
SECRET = "pa55-word-that-must-not-leak"


@pytest.fixture
def locked_redis(tmp_path: Path) -> Iterator[str]:
    """A Redis with a password: the URL the load test is told to use."""
    server = LocalRedis(tmp_path / "locked-redis", port=free_port())
    server.start()
    with redis.Redis.from_url(server.url) as admin:
        admin.config_set("requirepass", SECRET)
    url = server.url.replace("redis://", f"redis://:{SECRET}@")
    try:
        yield url
    finally:
        with redis.Redis.from_url(url) as admin:
            admin.config_set("requirepass", "")
        server.stop()


def _watch_command_lines(needle: str, seen: list[str], stop: threading.Event) -> None:
    """Every process's command line (readable by any user, `ps`), every 20 ms."""
    while not stop.wait(0.02):
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if "cli.main serve" in text or needle in text:
                seen.append(text)


@pytest.fixture
def small_env(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Small build settings under a key prefix of this test's own, through the environment,
    so that both `recsys loadtest` and the server it starts read them."""
    settings = small_settings(redis_url)
    monkeypatch.setenv("RECSYS_KEY_PREFIX", settings.key_prefix)
    monkeypatch.setenv("RECSYS_ALS__FACTORS", "16")
    monkeypatch.setenv("RECSYS_ALS__ITERATIONS", "5")
    monkeypatch.setenv("RECSYS_ANN__KIND", "exact")
    monkeypatch.setenv("RECSYS_CANDIDATES__PER_USER", "60")
    for source, quota in settings.candidates.quotas.model_dump().items():
        monkeypatch.setenv(f"RECSYS_CANDIDATES__QUOTAS__{source.upper()}", str(quota))
    for key, value in settings.ranker.model_dump().items():
        if key in ("num_trees", "min_data_in_leaf", "min_label_users", "num_threads"):
            monkeypatch.setenv(f"RECSYS_RANKER__{key.upper()}", str(value))
    return redis_url


def test_a_short_run_passes_and_reports_everything(
    small_env: str,
    locked_redis: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Told to use a Redis (with a password), the run writes there only under its own key
    prefix, and the password shows on no command line and in no log (issue 12)."""
    monkeypatch.setenv("RECSYS_REDIS_URL", small_env)  # configured, but not named: not used
    data, out = tmp_path / "data", tmp_path / "out"
    write_dataset(generate_synthetic(n_users=300, n_items=120, seed=5, events_per_user=20), data)
    argv = ["loadtest", "--data", str(data), "--artifacts", str(tmp_path / "art")]
    argv += ["--users-rate", str(LOW_RATE), "--duration", "4s", "--ramp", "1s"]
    argv += ["--out", str(out), "--redis-url", locked_redis, "--dashboard"]
    # what is measured here is the run's mechanics, not the machine: on a shared 2-core machine
    # (other tests, a browser) a 4-second p99 can pass 100 ms; the threshold's verdict has its
    # own tests (test_loadtest_results.py), the dashboard's errors still fail the run
    argv += ["--max-p99-ms", "2000"]
    command_lines: list[str] = []
    stop = threading.Event()
    watcher = threading.Thread(target=_watch_command_lines, args=(SECRET, command_lines, stop))
    watcher.start()
    try:
        with caplog.at_level(logging.INFO):
            code = main(argv)
    finally:
        stop.set()
        watcher.join()
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert any("cli.main serve" in c for c in command_lines), "the server was never seen"
    assert not [c for c in command_lines if SECRET in c]
    assert SECRET not in caplog.text + printed + (out / "server.log").read_text()
    with redis.Redis.from_url(locked_redis) as given:
        prefixes = {k.decode().split(":")[0] for k in given.scan_iter(count=10_000)}
    assert prefixes == {TOOL_KEY_PREFIXES["loadtest"]}
    with redis.Redis.from_url(small_env) as configured:
        assert not list(configured.scan_iter(match=f"{TOOL_KEY_PREFIXES['loadtest']}:*"))

    step = out / f"rate-{LOW_RATE}"
    for report in ("locust_stats.csv", "report.html", "outcomes.json", "summary.json"):
        assert (step / report).exists(), report
    summary = json.loads((step / "summary.json").read_text())
    total = summary["total"]
    assert total["failures"] == 0
    assert 0.4 * LOW_RATE < total["rps"] < 1.6 * LOW_RATE
    # locust keeps response times rounded to whole ms (p99 9 with a max of 8.8 is fine)
    assert 0 < total["p50_ms"] <= total["p95_ms"] <= total["p99_ms"] <= total["max_ms"] + 1
    names = {row["name"] for row in summary["by_name"]}
    assert names == {
        "GET /recommendations [known]",
        "GET /recommendations [unknown]",
        "POST /events",
    }
    # unknown users answer from popular items, and they are ~10% of the recommendations
    assert summary["fallbacks"].get("cold-start", 0) > 0
    assert 0 < summary["fallback_share"] < 0.5
    assert {"redis", "rank", "features", "model", "serialise", "request"} <= set(
        summary["stages_ms"]
    )
    cpu = summary["cpu"]
    assert cpu["server_ms_per_request"] > 0 and cpu["locust_cores"] > 0
    assert "achieved" in printed and "p99" in printed and "fallbacks:" in printed
    # issue 16: the dashboard stayed open in a browser (overview, then another page) all along
    dashboard = summary["dashboard"]
    assert dashboard["errors"] == 0, dashboard["problems"]
    assert dashboard["data_loads"] >= 2 and dashboard["p50_ms"] > 0
    assert "dashboard open:" in printed

    assert main(["loadtest", "--render", str(out)]) == 0  # the table again, from what was saved
    row = f"| {LOW_RATE} | {total['rps']:.1f} | {total['p50_ms']:g} |"
    assert row in capsys.readouterr().out
    assert row in (out / "series.md").read_text()


def test_a_configured_redis_is_not_used_unless_named(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 12: RECSYS_REDIS_URL (production, say) got a synthetic build and its events. Without
    --redis-url the load test starts a Redis of its own and never connects to that one."""
    monkeypatch.setenv("RECSYS_REDIS_URL", redis_url)
    art = tmp_path / "art"
    with redis.Redis.from_url(redis_url) as configured:
        before = configured.info("stats")["total_connections_received"]
        argv = ["loadtest", "--data", str(tmp_path / "no-such-data"), "--artifacts", str(art)]
        assert main(argv) == 2  # stops at the missing data, after choosing its Redis
        after = configured.info("stats")["total_connections_received"]
    assert after == before
    assert (art / "redis").is_dir()  # where its own server kept its data


def test_host_without_data_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["loadtest", "--host", "http://127.0.0.1:9"]) == 2
    assert "--host needs --data" in capsys.readouterr().err


def test_render_of_a_directory_without_steps_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["loadtest", "--render", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no rate-*/summary.json" in err and len(err.strip().splitlines()) == 1
