"""Commands that cannot destroy data or leak a secret, and that do not hang (issue 12)."""

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

import cli.demo
from cli.main import TOOL_KEY_PREFIXES, main
from offline.build import build
from recsys.config import RedisClientConfig, Settings
from recsys.data.dataset import write_dataset
from recsys.errors import StoreError
from recsys.net import free_port
from recsys.store.connect import client_for, redact_url
from recsys.store.server import LocalRedis
from tests.test_api_support import small_dataset

SECRET = "s3cr3t-pa55"


def test_demo_refuses_a_folder_it_did_not_create(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`recsys demo --out DIR` deleted DIR, whatever it was."""
    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "chapter1.tex").write_text("years of work")
    assert main(["demo", "--out", str(precious)]) == 2
    err = capsys.readouterr().err.strip()
    assert "not created by recsys demo" in err and len(err.splitlines()) == 1
    assert (precious / "chapter1.tex").read_text() == "years of work"


def test_demo_replaces_only_its_own_folder(tmp_path: Path) -> None:
    out = tmp_path / "demo-output"
    cli.demo.prepare_out(out)  # new
    (out / "old-report.md").write_text("from the last run")
    cli.demo.prepare_out(out)  # its own (marker): replaced
    assert [p.name for p in out.iterdir()] == [cli.demo.DEMO_MARKER]
    empty = tmp_path / "empty"
    empty.mkdir()
    cli.demo.prepare_out(empty)  # empty: fine
    assert (empty / cli.demo.DEMO_MARKER).is_file()


@pytest.fixture
def demo_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Settings]]:
    """The settings `recsys demo` runs with (its body replaced: the choice is made before)."""
    seen: list[Settings] = []
    monkeypatch.setattr(cli.demo, "demo", lambda out, users, items, s: seen.append(s))
    yield seen


def test_demo_never_uses_the_configured_redis_unless_named(
    demo_settings: list[Settings], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 12: with RECSYS_REDIS_URL set (production, say), the demo published a synthetic
    build over the real one, under the production key prefix."""
    monkeypatch.setenv("RECSYS_REDIS_URL", "redis://production.example:6379/0")
    monkeypatch.setenv("RECSYS_KEY_PREFIX", "recsys")
    assert main(["demo", "--out", str(tmp_path / "a")]) == 0
    given = "redis://staging.example:6379/0"
    assert main(["demo", "--out", str(tmp_path / "b"), "--redis-url", given]) == 0
    own, named = demo_settings
    assert own.redis_url is None  # a server of its own
    assert (named.redis_url, named.key_prefix) == (given, TOOL_KEY_PREFIXES["demo"])


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"redis://:{SECRET}@db.example:6379/0", "redis://:***@db.example:6379/0"),
        (f"redis://app:{SECRET}@db.example/1", "redis://app:***@db.example/1"),
        (f"rediss://{SECRET}@db.example", "rediss://***@db.example"),
        (
            f"unix:///run/redis.sock?db=0&password={SECRET}",
            "unix:///run/redis.sock?db=0&password=***",
        ),
        ("redis://db.example:6379/0", "redis://db.example:6379/0"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.fixture
def locked_server(tmp_path: Path) -> Iterator[tuple[LocalRedis, str]]:
    """A Redis on TCP with a password; its URL with a wrong password."""
    server = LocalRedis(tmp_path / "redis", port=free_port())
    server.start()
    with redis.Redis.from_url(server.url) as admin:
        admin.config_set("requirepass", SECRET)
    try:
        yield server, server.url.replace("redis://", f"redis://:{SECRET}-typo@")
    finally:
        with redis.Redis.from_url(server.url.replace("redis://", f"redis://:{SECRET}@")) as admin:
            admin.config_set("requirepass", "")
        server.stop()


def test_a_redis_password_never_reaches_the_error_message(
    locked_server: tuple[LocalRedis, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, wrong = locked_server
    write_dataset(small_dataset(), tmp_path / "data")
    argv = ["build", str(tmp_path / "data"), "--artifacts", str(tmp_path / "art")]
    assert main([*argv, "--redis-url", wrong]) == 2
    err = capsys.readouterr().err
    assert "Redis at redis://:***@127.0.0.1" in err and "invalid username-password" in err
    assert SECRET not in err


def _build_in_thread(
    data: Path, artifacts: Path, settings: Settings
) -> tuple[threading.Thread, list[BaseException | None]]:
    """`recsys build`'s body in a thread (the CLI's own signal handling needs the main
    thread): what it raised, once it ends."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            build(data, artifacts, settings)
        except BaseException as e:
            outcome.append(e)
        else:
            outcome.append(None)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def test_a_stalled_redis_fails_the_build_instead_of_hanging_it(tmp_path: Path) -> None:
    """Issue 12: the build's client had no socket timeout, so a Redis that accepts connections
    but never answers (here: SIGSTOPped, a real stall) hung the nightly job for ever."""
    write_dataset(small_dataset(), tmp_path / "data")
    client_cfg = RedisClientConfig(socket_timeout_s=0.3, retries=2, backoff_base_s=0.05)
    with LocalRedis(tmp_path / "redis", port=free_port()) as server:
        assert server.pid is not None
        settings = Settings(redis_url=server.url, redis_client=client_cfg)
        os.kill(server.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            thread, outcome = _build_in_thread(tmp_path / "data", tmp_path / "art", settings)
            thread.join(timeout=30)
            took_s = time.monotonic() - started
        finally:
            os.kill(server.pid, signal.SIGCONT)
        thread.join(timeout=120)
    assert took_s < 10, "the build hung on the stalled Redis"
    assert len(outcome) == 1 and isinstance(outcome[0], StoreError)
    message = str(outcome[0])
    assert "cannot reach Redis" in message and "2 retries" in message and "Timeout" in message


def test_the_builds_client_rides_out_a_short_stall(tmp_path: Path) -> None:
    """A Redis that stalls for a second (a failover, a slow fork) costs retries, not the job."""
    cfg = RedisClientConfig(socket_timeout_s=0.2, retries=6, backoff_base_s=0.05)
    with LocalRedis(tmp_path / "redis", port=free_port()) as server:
        assert server.pid is not None
        client = client_for(server.url, cfg)
        os.kill(server.pid, signal.SIGSTOP)
        resume = threading.Timer(1.0, os.kill, args=(server.pid, signal.SIGCONT))
        resume.start()
        started = time.monotonic()
        try:
            client.set("written", "after the stall")
        finally:
            resume.join()
        assert time.monotonic() - started >= 0.9
        assert client.get("written") == b"after the stall"
        client.close()
        with pytest.raises(StoreError, match="cannot reach"):
            client_for("redis://127.0.0.1:9/0", cfg.model_copy(update={"retries": 0}))
