"""One way to get a Redis client for a command: the given URL, or our own local server.

The offline commands' client has a socket timeout and retries with exponential backoff
(``redis_client`` settings): without a timeout a stalled Redis hung the nightly build for ever
(issue 12). URLs may carry a password: every message and log line shows them through
``redact_url``.
"""

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import AuthenticationError, AuthorizationError
from redis.retry import Retry

from recsys.config import RedisClientConfig, RedisServerConfig
from recsys.errors import StoreError
from recsys.store.server import redis_url_or_local, running_server_url

# scheme://[user][:password]@host...: the password is what lies between the first ":" after
# "//" and the last "@" before the host
_USERINFO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/?#]*)@")
_QUERY_PASSWORD = re.compile(r"(?i)([?&]password=)[^&#]*")


def redact_url(url: str) -> str:
    """``url`` with its password (in the user info or a ``password=`` query parameter)
    replaced by ``***``: safe for logs, error messages and command lines."""
    match = _USERINFO.match(url)
    if match is not None:
        user, sep, _ = match["userinfo"].partition(":")
        userinfo = f"{user}:***" if sep else ("***" if user else "")
        url = f"{match['scheme']}{userinfo}@{url[match.end() :]}"
    return _QUERY_PASSWORD.sub(r"\1***", url)


# Errors another try cannot fix; redis-py files a wrong password under ConnectionError, which
# its retries would otherwise repeat for the whole backoff.
_PERMANENT_ERRORS = (AuthenticationError, AuthorizationError)


def client_for(url: str, cfg: RedisClientConfig | None = None) -> redis.Redis:
    """A client for offline work, checked with a PING (retried like every other command).

    A first PING without retries catches a wrong password at once."""
    cfg = cfg or RedisClientConfig()
    with redis.Redis.from_url(
        url,
        socket_timeout=cfg.socket_timeout_s,
        socket_connect_timeout=cfg.connect_timeout_s,
        retry=Retry(NoBackoff(), 0),
    ) as probe:
        try:
            probe.ping()
        except _PERMANENT_ERRORS as e:
            raise StoreError(f"cannot use Redis at {redact_url(url)}: {e}") from e
        except redis.RedisError:
            pass  # maybe passing: the retrying client below tries again
    client = redis.Redis.from_url(
        url,
        socket_timeout=cfg.socket_timeout_s,
        socket_connect_timeout=cfg.connect_timeout_s,
        retry=Retry(
            ExponentialBackoff(cap=cfg.backoff_cap_s, base=cfg.backoff_base_s), cfg.retries
        ),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError],
    )
    try:
        client.ping()
    except redis.RedisError as e:
        client.close()
        raise StoreError(
            f"cannot reach Redis at {redact_url(url)} ({cfg.retries} retries, socket timeout "
            f"{cfg.socket_timeout_s:g}s): {e}"
        ) from e
    return client


@contextmanager
def open_redis(
    url: str | None,
    local_data_dir: Path,
    *,
    client_cfg: RedisClientConfig | None = None,
    server_cfg: RedisServerConfig | None = None,
    bulk: bool = False,
) -> Iterator[tuple[redis.Redis, str]]:
    """(client, url) for the block; without a URL, a local redis-server on ``local_data_dir``
    that keeps its data there when the block ends. ``bulk``: the block writes a build."""
    with redis_url_or_local(url, local_data_dir, server_cfg, bulk=bulk) as resolved:
        client = client_for(resolved, client_cfg)
        try:
            yield client, resolved
        finally:
            client.close()


@contextmanager
def open_shared_redis(
    url: str | None,
    local_data_dir: Path,
    *,
    client_cfg: RedisClientConfig | None = None,
    server_cfg: RedisServerConfig | None = None,
) -> Iterator[redis.Redis]:
    """``open_redis`` for commands that read or flip what serving uses (``recsys ab promote``,
    the online report, the event export): without a URL, the local server that a running
    ``recsys serve`` holds on ``local_data_dir``, when there is one, rather than a refusal."""
    with open_redis(
        url or running_server_url(local_data_dir),
        local_data_dir,
        client_cfg=client_cfg,
        server_cfg=server_cfg,
    ) as (client, _):
        yield client
