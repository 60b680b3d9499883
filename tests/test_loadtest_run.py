"""`recsys loadtest` end to end on a tiny build: a real Redis, `recsys serve` in a subprocess,
locust headless for a few seconds; the summary, the reports and the exit code."""

import json
from pathlib import Path

import pytest

from cli.main import main
from recsys.data.dataset import write_dataset
from recsys.data.synth import generate_synthetic
from tests.conftest import small_settings

LOW_RATE = 20


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
    small_env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, out = tmp_path / "data", tmp_path / "out"
    write_dataset(generate_synthetic(n_users=300, n_items=120, seed=5, events_per_user=20), data)
    argv = ["loadtest", "--data", str(data), "--artifacts", str(tmp_path / "art")]
    argv += ["--users-rate", str(LOW_RATE), "--duration", "4s", "--ramp", "1s"]
    argv += ["--out", str(out), "--redis-url", small_env]
    code = main(argv)
    printed = capsys.readouterr().out
    assert code == 0, printed

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

    assert main(["loadtest", "--render", str(out)]) == 0  # the table again, from what was saved
    row = f"| {LOW_RATE} | {total['rps']:.1f} | {total['p50_ms']:g} |"
    assert row in capsys.readouterr().out
    assert row in (out / "series.md").read_text()


def test_host_without_data_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["loadtest", "--host", "http://127.0.0.1:9"]) == 2
    assert "--host needs --data" in capsys.readouterr().err


def test_render_of_a_directory_without_steps_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["loadtest", "--render", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no rate-*/summary.json" in err and len(err.strip().splitlines()) == 1
