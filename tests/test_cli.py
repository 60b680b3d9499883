"""The CLI contract: bad input is one line on stderr and exit code 2, and nothing is written."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from cli.main import main
from recsys.data.dataset import write_dataset
from recsys.data.synth import generate_synthetic


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    err = capsys.readouterr().err.strip()
    return code, err


def test_build_with_a_missing_column_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], redis_url: str
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    pl.DataFrame({"user_id": [1, 2], "item_id": [3, 4]}).write_csv(data / "interactions.csv")
    pl.DataFrame({"item_id": [3, 4]}).write_csv(data / "items.csv")
    code, err = _run(
        capsys, "build", str(data), "--artifacts", str(tmp_path / "art"), "--redis-url", redis_url
    )
    assert code == 2
    assert err.count("\n") == 0
    assert "interactions.csv" in err and "timestamp" in err
    assert not (tmp_path / "art").exists()


def test_unreadable_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "interactions.parquet").write_bytes(b"not parquet at all")
    (tmp_path / "items.csv").write_text("item_id\n1\n")
    code, err = _run(capsys, "eval", str(tmp_path), "--out", str(tmp_path / "out"))
    assert code == 2
    assert err.startswith("recsys: error: interactions.parquet: cannot read")
    assert not (tmp_path / "out").exists()


def test_missing_data_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run(capsys, "build", str(tmp_path / "nope"), "--artifacts", str(tmp_path / "a"))
    assert code == 2
    assert "does not exist" in err


def test_bad_sizes_are_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["data", "synth", str(tmp_path / "x"), "--users", "0"])
    assert exc.value.code == 2
    assert "--users must be at least 1" in capsys.readouterr().err


def test_bad_setting_from_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECSYS_ALS__FACTORS", "-3")
    code, err = _run(capsys, "build", str(tmp_path), "--artifacts", str(tmp_path / "a"))
    assert code == 2
    assert "als.factors" in err


def test_serve_flags_are_validated(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run(capsys, "serve", "--artifacts", str(tmp_path), "--port", "70000")
    assert code == 2
    assert "invalid setting port" in err


def test_serve_without_artifacts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run(capsys, "serve", "--artifacts", str(tmp_path / "missing"))
    assert code == 2
    assert "recsys build" in err


def test_synth_then_build_keeps_a_good_build_when_the_next_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], redis_url: str
) -> None:
    data, art = tmp_path / "data", tmp_path / "art"
    write_dataset(generate_synthetic(n_users=300, n_items=100, seed=2, events_per_user=15), data)
    assert (
        _run(capsys, "build", str(data), "--artifacts", str(art), "--redis-url", redis_url)[0] == 0
    )
    good = sorted(p.name for p in art.iterdir())
    (data / "interactions.parquet").write_bytes(b"corrupt")
    code, _ = _run(capsys, "build", str(data), "--artifacts", str(art), "--redis-url", redis_url)
    assert code == 2
    assert sorted(p.name for p in art.iterdir()) == good


def test_sigterm_stops_the_embedded_redis(tmp_path: Path) -> None:
    """A scheduler's SIGTERM unwinds the command: its own redis-server is stopped, not left
    running (it used to outlive a killed build)."""
    data, art = tmp_path / "data", tmp_path / "art"
    write_dataset(generate_synthetic(n_users=8000, n_items=800, seed=4), data)
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "build", str(data), "--artifacts", str(art)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "RECSYS_REDIS_URL": ""},
    )
    lock, log = art / "redis" / "redis.lock", art / "redis" / "redis.log"

    def serving() -> bool:  # the server is up, so the build is under way
        return log.exists() and "ready to accept connections" in log.read_text()

    deadline = time.monotonic() + 60
    while not serving() and time.monotonic() < deadline:
        time.sleep(0.05)
    redis_pid = int(lock.read_text().strip())
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM
    with pytest.raises(ProcessLookupError):
        for _ in range(100):  # the server saves, then exits
            os.kill(redis_pid, 0)
            time.sleep(0.05)
