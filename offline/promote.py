"""``recsys ab promote NAME``: the newest build of a line becomes the champion's."""

import logging
from pathlib import Path

from recsys.artifacts import REDIS_DIR
from recsys.config import Settings
from recsys.errors import RecsysError
from recsys.store.connect import open_shared_redis
from recsys.store.keys import Keys
from recsys.store.user_store import promote

log = logging.getLogger(__name__)


def promote_build(name: str, settings: Settings, artifacts: Path | None) -> tuple[str | None, str]:
    """Point the champion at ``name``'s build. Serving workers swap it in on their next poll,
    as they swap any new build in: no restart, no failed request."""
    if settings.redis_url is None and artifacts is None:
        raise RecsysError("give --redis-url, or --artifacts whose local Redis serves the builds")
    local = (artifacts or Path.cwd()) / REDIS_DIR
    with open_shared_redis(
        settings.redis_url,
        local,
        client_cfg=settings.redis_client,
        server_cfg=settings.redis_server,
    ) as client:
        previous, version = promote(client, Keys(settings.key_prefix), name)
    log.info("champion: %s -> %s (the newest build of %s)", previous, version, name)
    return previous, version
