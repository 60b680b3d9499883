"""``recsys gc --artifacts ART``: remove what killed builds left and builds nobody needs.

The same collection every build runs at its start and after it publishes (``recsys.gc``), for
a cron job or after an incident, without waiting for the next build.
"""

from pathlib import Path

from recsys.artifacts import REDIS_DIR
from recsys.config import Settings
from recsys.errors import ArtifactError
from recsys.gc import GcReport, collect_for
from recsys.store.connect import open_redis


def gc(artifacts: Path, settings: Settings) -> GcReport:
    if not artifacts.is_dir():
        raise ArtifactError(f"{artifacts}: no such artifacts directory")
    with open_redis(
        settings.redis_url,
        artifacts / REDIS_DIR,
        client_cfg=settings.redis_client,
        server_cfg=settings.redis_server,
    ) as (client, _):
        return collect_for(client, artifacts, settings)
