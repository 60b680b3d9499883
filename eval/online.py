"""``recsys online-report`` and ``recsys ab report``: the online metrics of what was served, read
from the feedback log in Redis (``recsys.evaluation.online``)."""

import logging
from dataclasses import dataclass
from pathlib import Path

from recsys.artifacts import REDIS_DIR
from recsys.config import Settings
from recsys.errors import ArtifactError, RecsysError
from recsys.evaluation.online import OnlineOptions, load_catalogues, online_report
from recsys.evaluation.online_report import (
    comparison_summary,
    comparison_table,
    write_online_report,
)
from recsys.evaluation.records import OnlineReport
from recsys.evaluation.report import Block, Section, markdown_of
from recsys.store.connect import open_shared_redis
from recsys.store.feedback_log import read_impressions, read_logged_events
from recsys.store.keys import Keys

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Period:
    since_ms: int | None
    until_ms: int | None


def build_report(
    settings: Settings, artifacts: Path, period: Period, options: OnlineOptions
) -> OnlineReport:
    if not artifacts.is_dir():
        raise ArtifactError(f"{artifacts}: no such artifacts directory")
    keys, shards = Keys(settings.key_prefix), settings.log.shards
    with open_shared_redis(
        settings.redis_url,
        artifacts / REDIS_DIR,
        client_cfg=settings.redis_client,
        server_cfg=settings.redis_server,
    ) as client:
        impressions = read_impressions(client, keys, shards, period.since_ms, period.until_ms)
        # events may follow the last answer of the period by up to the attribution window
        until = None if period.until_ms is None else period.until_ms + int(options.window_s * 1000)
        events = read_logged_events(client, keys, shards, period.since_ms, until)
    log.info("%d impressions and %d events read", len(impressions), len(events))
    if not impressions:
        raise RecsysError("the impression log holds no answer for this period: nothing to report")
    cats = load_catalogues(artifacts, {i.build for i in impressions})
    return online_report(impressions, events, cats, options, period.since_ms, period.until_ms)


def run_online_report(
    settings: Settings, artifacts: Path, out: Path, period: Period, options: OnlineOptions
) -> OnlineReport:
    report = build_report(settings, artifacts, period, options)
    write_online_report(report, out)
    log.info("online report written to %s", out)
    return report


def run_ab_report(
    settings: Settings,
    artifacts: Path,
    out: Path | None,
    period: Period,
    options: OnlineOptions,
) -> OnlineReport:
    """The arms compared, printed; with ``out``, the whole online report written there too."""
    report = build_report(settings, artifacts, period, options)
    if not report.comparisons:
        arms = ", ".join(report.breakdowns.get("arm", {})) or "none"
        raise RecsysError(f"the log holds answers of one arm only ({arms}): nothing to compare")
    blocks: list[Block] = []
    for comparison in report.comparisons:
        blocks += [comparison_summary(comparison), comparison_table(comparison)]
    print(markdown_of([Section("A/B: arms compared", blocks)]))
    if out is not None:
        write_online_report(report, out)
    return report
