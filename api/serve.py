"""``recsys serve --artifacts ART``: the API on uvicorn, with our own Redis when none is given."""

from pathlib import Path

import uvicorn

from api.app import create_app
from recsys.artifacts import REDIS_DIR
from recsys.config import Settings
from recsys.errors import ArtifactError
from recsys.store.server import redis_url_or_local


def serve(artifacts: Path, settings: Settings) -> None:
    if not artifacts.is_dir():
        raise ArtifactError(f"{artifacts}: no such artifacts directory; run `recsys build` first")
    with redis_url_or_local(settings.redis_url, artifacts / REDIS_DIR) as url:
        app = create_app(settings.model_copy(update={"redis_url": url}), artifacts)
        uvicorn.run(
            app,
            host=settings.serve.host,
            port=settings.serve.port,
            log_level="warning",
            access_log=False,
        )
