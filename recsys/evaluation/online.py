"""Online evaluation: what users did with what they were shown.

Impressions (every answer, ``recsys.store.feedback_log``) are joined with the events that
followed them within an attribution window. An event is attributed to one shown item:

1. the item of the answer its ``request_id`` names, when that answer showed it to that user no
   more than the window before the event;
2. otherwise, the latest answer that showed that item to that user within the window before the
   event (a client that does not send request ids still gets its events counted).

Events that match no answer (organic watches) are not part of any online metric. Clocks are the
server's (``at_ms``), not the clients' ``ts``/``timestamp``, which may be simulated or skewed.

The metrics are the table in ``online_metric_table``; each is a ratio of sums over shown items,
reported for all answers and broken down by build, arm, device and fallback, with user-resampled
bootstrap intervals; arms are compared two by two (``compare_arms``, ``recsys ab report``).
"""

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import polars as pl

from recsys.errors import ArtifactError
from recsys.evaluation.online_metric_table import (
    CLICKED,
    COMPLETION,
    COVERAGE_KEY,
    DISLIKED,
    HIT,
    ONLINE_METRICS,
    POP_PCT,
    POSITION,
    SKIPPED,
    WATCHED,
    OnlineMetric,
)
from recsys.evaluation.records import (
    ArmComparison,
    MetricValue,
    OnlineGroup,
    OnlineReport,
)
from recsys.evaluation.stats import bootstrap_ratio_ci, two_sample_ratio
from recsys.experiment import DEFAULT_BUILD_NAME
from recsys.feedback import POSITIVE_TYPES
from recsys.items import ItemTable
from recsys.store.feedback_log import Impression, LoggedEvent

log = logging.getLogger(__name__)

USER: Final = "user_id"
ITEM: Final = "item"  # item ids as text: the API takes 318 and "318" for the same item
REQUEST: Final = "request_id"
AT_MS: Final = "at_ms"
EVENT_TYPE: Final = "type"
DIMENSIONS: Final = ("build", "arm", "device", "fallback")
"""What the report breaks its metrics down by (columns of the shown-item rows)."""
NO_FALLBACK: Final = "none"
UNKNOWN: Final = "unknown"
DEFAULT_WINDOW_S: Final = 1800.0


@dataclass(frozen=True)
class Catalogue:
    """What a build knows of its items, for popularity and coverage (from its artifacts)."""

    n_items: int
    pop_pct: dict[str, float]  # item id as text -> popularity percentile in the build

    @classmethod
    def of(cls, items: ItemTable) -> "Catalogue":
        ids = [str(i) for i in items.ids_list]
        return cls(items.n_items, dict(zip(ids, items.pop_percentile.tolist(), strict=True)))


def load_catalogues(artifacts: Path, builds: Iterable[str]) -> dict[str, Catalogue]:
    """The catalogue of each build whose artifacts are still there; a build removed since
    (``keep_builds``) has no popularity or coverage in the report (logged)."""
    out = {}
    for build in sorted(set(builds)):
        path = artifacts / build
        if not path.is_dir():
            log.warning("build %s is not in %s: no popularity or coverage for it", build, path)
            continue
        try:
            out[build] = Catalogue.of(ItemTable.load(path))
        except (OSError, ValueError, KeyError) as e:
            raise ArtifactError(f"{path}: cannot read the item table: {e}") from e
    return out


@dataclass(frozen=True)
class OnlineOptions:
    window_s: float = DEFAULT_WINDOW_S
    resamples: int = 1000
    permutations: int = 10_000
    seed: int = 0


def impression_rows(impressions: Sequence[Impression]) -> pl.DataFrame:
    """One row per shown item: the answer's fields, the item (as text) and its position."""
    frame = pl.DataFrame(
        {
            REQUEST: [i.request_id for i in impressions],
            USER: [i.user_id for i in impressions],
            "build": [i.build for i in impressions],
            "arm": [i.arm for i in impressions],
            "device": [i.device or UNKNOWN for i in impressions],
            "fallback": [i.fallback or NO_FALLBACK for i in impressions],
            AT_MS: [i.at_ms for i in impressions],
            ITEM: [[str(x) for x in i.items] for i in impressions],
        },
        schema_overrides={AT_MS: pl.Int64, ITEM: pl.List(pl.String)},
    )
    return (
        frame.with_columns(pl.int_ranges(pl.col(ITEM).list.len()).alias(POSITION))
        .explode([ITEM, POSITION])
        .drop_nulls(ITEM)
        .with_columns(pl.col(POSITION).cast(pl.Int64))
    )


def event_rows(events: Sequence[LoggedEvent]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "event": np.arange(len(events), dtype=np.int64),
            USER: [e.user_id for e in events],
            ITEM: [str(e.event.item_id) for e in events],
            EVENT_TYPE: [e.event.type for e in events],
            COMPLETION: [e.event.completion for e in events],
            "event_request": [e.event.request_id for e in events],
            AT_MS: [e.at_ms for e in events],
        },
        schema_overrides={
            AT_MS: pl.Int64,
            COMPLETION: pl.Float64,
            "event_request": pl.String,
            ITEM: pl.String,
            USER: pl.String,
            EVENT_TYPE: pl.String,
        },
    )


def attribute(rows: pl.DataFrame, events: pl.DataFrame, window_ms: int) -> pl.DataFrame:
    """Each attributable event with the (request_id, item) it is attributed to."""
    shown = rows.select(REQUEST, USER, ITEM, pl.col(AT_MS).alias("shown_ms"))
    direct = (
        events.filter(pl.col("event_request").is_not_null())
        .join(
            shown,
            left_on=["event_request", USER, ITEM],
            right_on=[REQUEST, USER, ITEM],
            how="inner",
        )
        .filter(
            (pl.col(AT_MS) >= pl.col("shown_ms"))
            & (pl.col(AT_MS) - pl.col("shown_ms") <= window_ms)
        )
        .with_columns(pl.col("event_request").alias(REQUEST))
    )
    rest = events.join(direct.select("event"), on="event", how="anti").sort(AT_MS)
    by_time = rest.join_asof(
        shown.sort("shown_ms"),
        left_on=AT_MS,
        right_on="shown_ms",
        by=[USER, ITEM],
        strategy="backward",
        tolerance=window_ms,
        check_sortedness=False,  # sorted by time overall, hence within every group
    ).filter(pl.col(REQUEST).is_not_null())
    columns = ["event", REQUEST, ITEM, EVENT_TYPE, COMPLETION]
    return pl.concat([direct.select(columns), by_time.select(columns)])


def shown_items(
    impressions: Sequence[Impression],
    events: Sequence[LoggedEvent],
    window_s: float,
    catalogues: dict[str, Catalogue] | None = None,
) -> tuple[pl.DataFrame, int]:
    """The shown-item rows with what the users did about them, and how many events were
    attributed. Columns: the answer's (request_id, user_id, build, arm, device, fallback,
    at_ms), the item's (item, position, pop_pct) and the outcomes (clicked, watched, completion,
    skipped, disliked, hit)."""
    rows = impression_rows(impressions)
    window_ms = round(window_s * 1000)
    attributed = attribute(rows, event_rows(events), window_ms)
    ev = pl.col(EVENT_TYPE)
    outcomes = attributed.group_by([REQUEST, ITEM]).agg(
        ev.is_in(sorted(POSITIVE_TYPES)).any().alias(CLICKED),
        (ev == "watch").any().alias(WATCHED),
        pl.col(COMPLETION).filter(ev == "watch").max().alias(COMPLETION),
        (ev == "skip").any().alias(SKIPPED),
        (ev == "dislike").any().alias(DISLIKED),
    )
    flags = [CLICKED, WATCHED, SKIPPED, DISLIKED]
    rows = (
        rows.join(outcomes, on=[REQUEST, ITEM], how="left")
        .with_columns(pl.col(f).fill_null(False) for f in flags)
        .with_columns(pl.col(CLICKED).any().over(REQUEST).alias(HIT))
    )
    return rows.with_columns(_popularity(rows, catalogues or {})), attributed.height


def _popularity(rows: pl.DataFrame, catalogues: dict[str, Catalogue]) -> pl.Series:
    pct = [
        catalogues[b].pop_pct.get(i) if b in catalogues else None
        for b, i in zip(rows["build"].to_list(), rows[ITEM].to_list(), strict=True)
    ]
    return pl.Series(POP_PCT, pct, dtype=pl.Float64)


def per_user_sums(rows: pl.DataFrame, by: Sequence[str] = ()) -> pl.DataFrame:
    """Numerator and denominator of every metric, summed per user (and per ``by`` group)."""
    return rows.group_by([*by, USER]).agg(
        expr
        for m in ONLINE_METRICS
        for expr in (
            m.numerator().sum().alias(f"{m.key}/num"),
            m.denominator().sum().alias(f"{m.key}/den"),
        )
    )


def _value(sums: pl.DataFrame, m: OnlineMetric, options: OnlineOptions) -> MetricValue:
    num, den = sums[f"{m.key}/num"].to_numpy(), sums[f"{m.key}/den"].to_numpy()
    if den.sum() <= 0:
        return MetricValue(value=None, ci95=None)
    ci = bootstrap_ratio_ci(num, den, options.resamples, options.seed)
    return MetricValue(value=round(ci.mean, 6), ci95=[round(ci.low, 6), round(ci.high, 6)])


def _coverage(rows: pl.DataFrame, catalogues: dict[str, Catalogue]) -> MetricValue:
    sizes = [catalogues[b].n_items for b in rows["build"].unique().to_list() if b in catalogues]
    if not sizes:
        return MetricValue(value=None, ci95=None)
    return MetricValue(value=round(rows[ITEM].n_unique() / max(sizes), 6), ci95=None)


def group_summary(
    rows: pl.DataFrame, catalogues: dict[str, Catalogue], options: OnlineOptions
) -> OnlineGroup:
    sums = per_user_sums(rows)
    metrics = {m.key: _value(sums, m, options) for m in ONLINE_METRICS}
    metrics[COVERAGE_KEY] = _coverage(rows, catalogues)
    return OnlineGroup(
        impressions=rows[REQUEST].n_unique(),
        users=sums.height,
        items_shown=rows.height,
        metrics=metrics,
    )


def compare_arms(
    rows: pl.DataFrame, options: OnlineOptions, champion: str = DEFAULT_BUILD_NAME
) -> list[ArmComparison]:
    """Each arm against ``champion`` (or, without one, against the first arm by name), per
    metric: the two-sample test of ``stats.two_sample_ratio`` on per-user sums."""
    arms = sorted(rows["arm"].unique().to_list())
    if len(arms) < 2:
        return []
    base = champion if champion in arms else arms[0]
    sums = per_user_sums(rows, by=["arm"])
    base_sums = sums.filter(pl.col("arm") == base)
    out = []
    for arm in arms:
        if arm == base:
            continue
        other = sums.filter(pl.col("arm") == arm)
        results: dict[str, dict[str, Any]] = {}
        for m in ONLINE_METRICS:
            a = (base_sums[f"{m.key}/num"].to_numpy(), base_sums[f"{m.key}/den"].to_numpy())
            b = (other[f"{m.key}/num"].to_numpy(), other[f"{m.key}/den"].to_numpy())
            if a[1].sum() <= 0 or b[1].sum() <= 0:
                continue
            result = two_sample_ratio(a, b, options.resamples, options.permutations, options.seed)
            results[m.key] = result.as_dict()
        out.append(ArmComparison(champion=base, challenger=arm, metrics=results))
    return out


def online_report(
    impressions: Sequence[Impression],
    events: Sequence[LoggedEvent],
    catalogues: dict[str, Catalogue],
    options: OnlineOptions,
    since_ms: int | None = None,
    until_ms: int | None = None,
    dimensions: Iterable[str] = DIMENSIONS,
) -> OnlineReport:
    """The whole report: overall, per dimension value, and the arms compared."""
    if not impressions:
        raise ValueError("no impression in the log for this period: nothing to report")
    rows, n_attributed = shown_items(impressions, events, options.window_s, catalogues)
    breakdowns = {
        dim: {
            str(value): group_summary(rows.filter(pl.col(dim) == value), catalogues, options)
            for value in sorted(rows[dim].unique().to_list())
        }
        for dim in dimensions
    }
    return OnlineReport(
        since_ms=since_ms,
        until_ms=until_ms,
        first_ms=int(rows[AT_MS].min()),  # type: ignore[arg-type]
        last_ms=int(rows[AT_MS].max()),  # type: ignore[arg-type]
        attribution_window_s=options.window_s,
        impressions=len(impressions),
        events=len(events),
        attributed_events=n_attributed,
        overall=group_summary(rows, catalogues, options),
        breakdowns=breakdowns,
        comparisons=compare_arms(rows, options),
        resamples=options.resamples,
    )
