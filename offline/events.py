"""``recsys events export``: the API's events, as interactions the next build reads."""

import logging
from pathlib import Path

from recsys.artifacts import REDIS_DIR
from recsys.columns import Columns
from recsys.config import Settings
from recsys.data.dataset import write_dataset
from recsys.data.feedback_export import events_frame, merge_events
from recsys.data.load import INTERACTIONS, load_dataset
from recsys.errors import RecsysError
from recsys.store.connect import open_shared_redis
from recsys.store.feedback_log import read_logged_events
from recsys.store.keys import Keys

log = logging.getLogger(__name__)


def export_events(
    out_dir: Path,
    settings: Settings,
    data_dir: Path | None,
    artifacts: Path | None,
    since_ms: int | None,
    until_ms: int | None,
) -> int:
    """Write the logged events: merged into a copy of ``data_dir`` (a dataset the next build
    reads), or alone as ``OUT_DIR/interactions.parquet``. Returns the number of events written."""
    if settings.redis_url is None and artifacts is None:
        raise RecsysError("give --redis-url, or --artifacts whose local Redis holds the log")
    if data_dir is not None and out_dir.resolve() == data_dir.resolve():
        raise RecsysError(f"{out_dir}: write the export next to the dataset, not over it")
    dataset = load_dataset(data_dir) if data_dir is not None else None  # fail before reading
    local_dir = (artifacts or out_dir) / REDIS_DIR
    with open_shared_redis(
        settings.redis_url,
        local_dir,
        client_cfg=settings.redis_client,
        server_cfg=settings.redis_server,
    ) as client:
        logged = read_logged_events(
            client, Keys(settings.key_prefix), settings.log.shards, since_ms, until_ms
        )
    events = events_frame(logged)
    log.info("%d events in the log (%d after removing repeats)", len(logged), events.height)
    if dataset is None:
        out_dir.mkdir(parents=True, exist_ok=True)
        final = out_dir / f"{INTERACTIONS}.parquet"
        tmp = out_dir / f".{INTERACTIONS}.parquet.tmp"
        events.sort(Columns.timestamp, maintain_order=True).write_parquet(tmp)
        tmp.replace(final)
        log.info("wrote %d events to %s", events.height, final)
        return events.height
    merged, added = merge_events(dataset, events)
    write_dataset(merged, out_dir)
    log.info(
        "wrote %s: %d events of %s plus %d new from the API",
        out_dir,
        dataset.interactions.height,
        data_dir,
        added,
    )
    return added
