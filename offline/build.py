"""``recsys build DATA --artifacts ART``: the nightly job."""

import logging
from pathlib import Path

from recsys.artifacts import REDIS_DIR
from recsys.config import Settings
from recsys.data.load import load_dataset
from recsys.experiment import DEFAULT_BUILD_NAME
from recsys.pipeline import BuildResult, run_build
from recsys.scale.ray_build import ray_session
from recsys.store.connect import open_redis, redact_url

log = logging.getLogger(__name__)


def build(
    data_dir: Path, artifacts: Path, settings: Settings, name: str = DEFAULT_BUILD_NAME
) -> BuildResult:
    dataset = load_dataset(data_dir)
    artifacts.mkdir(parents=True, exist_ok=True)
    with (
        ray_session(settings.ray.address),
        open_redis(
            settings.redis_url,
            artifacts / REDIS_DIR,
            client_cfg=settings.redis_client,
            server_cfg=settings.redis_server,
            bulk=True,
        ) as (client, url),
    ):
        # Ray workers open their own connections: they need the URL, the local server's too
        result = run_build(
            dataset, artifacts, client, settings.model_copy(update={"redis_url": url}), name=name
        )
    m = result.manifest
    log.info(
        "build %s (%s) published to %s: %d users x %d candidates (%.0f bytes/user), "
        "ranker valid NDCG@10 %.4f",
        result.version,
        name,
        redact_url(url),
        m.candidates.users_written,
        m.candidates.candidates_per_user,
        m.candidates.bytes_per_user,
        m.ranker.valid_ndcg_at_10,
    )
    return result
