"""One way to get a Redis client for a command: the given URL, or our own local server."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from recsys.errors import StoreError
from recsys.store.server import redis_url_or_local


def client_for(url: str) -> redis.Redis:
    client = redis.Redis.from_url(url, socket_connect_timeout=5, health_check_interval=30)
    try:
        client.ping()
    except redis.RedisError as e:
        raise StoreError(f"cannot reach Redis at {url}: {e}") from e
    return client


@contextmanager
def open_redis(url: str | None, local_data_dir: Path) -> Iterator[tuple[redis.Redis, str]]:
    """(client, url) for the block; without a URL, a local redis-server on ``local_data_dir``
    that saves its data there when the block ends."""
    with redis_url_or_local(url, local_data_dir) as resolved:
        client = client_for(resolved)
        try:
            yield client, resolved
        finally:
            client.close()
