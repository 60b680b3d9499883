"""Locust's CSV statistics and our outcome counts, read back into one typed summary.

Locust writes ``<prefix>_stats.csv`` with one row per request name and an ``Aggregated`` row;
response times there are whole milliseconds. The summary keeps the aggregate, each request
kind, and the share of recommendation answers that came from a fallback, and ``violations``
says which thresholds a run broke (the exit code of ``recsys loadtest`` follows it).
"""

import csv
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

from loadtest.dashboard import DashboardStats

AGGREGATED = "Aggregated"
# Fallbacks that are the right answer, not a sign of load: an unknown user gets popular items.
BY_DESIGN = frozenset({"cold-start"})
EXIT_OK, EXIT_THRESHOLDS = 0, 1
STATS_SUFFIX = "_stats.csv"


@dataclass(frozen=True)
class RowStats:
    name: str
    requests: int
    failures: int
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float


@dataclass(frozen=True)
class CpuUse:
    """CPU over a step (ramp included): what a request costs the server, whatever the queueing,
    and how much of the 2 cores the load generator took from it."""

    server_ms_per_request: float | None = None
    server_cores: float | None = None
    locust_cores: float | None = None
    machine_cores: float | None = None  # every process: server, Redis, locust, anything else
    other_cores: float | None = None  # processes that are not part of this test


@dataclass(frozen=True)
class Idle:
    """How quiet the machine was just before a step: measurements on a shared machine mean
    little unless nothing else was running."""

    load_average_1m: float | None = None
    busy_cores: float | None = None  # every process, over a few seconds before the step


@dataclass(frozen=True)
class Thresholds:
    max_p99_ms: float = 100.0
    max_failures: int = 0


@dataclass(frozen=True)
class RunSummary:
    offered_rps: float | None  # what the clients were sized for; None when not known
    total: RowStats
    by_name: list[RowStats]
    fallbacks: dict[str, int] = field(default_factory=dict)  # reason -> answers
    recommendations: int = 0  # answers parsed by the locustfile (fallback share denominator)
    locust_cpu_warnings: int = 0
    stages_ms: dict[str, float] = field(default_factory=dict)  # mean server time per stage
    cpu: CpuUse = field(default_factory=CpuUse)
    idle: Idle = field(default_factory=Idle)
    runs: int = 1  # > 1: medians over repeated runs (see median_by_rate)
    dashboard: DashboardStats | None = None  # --dashboard: what the open dashboard saw

    @property
    def fallback_share(self) -> float:
        return self._share(self.fallbacks)

    @property
    def degraded_share(self) -> float:
        """Answers that fell back because the server was slow or Redis did not answer in time
        (``ranker-timeout``, ``redis-unavailable``): what overload costs in quality."""
        return self._share({r: n for r, n in self.fallbacks.items() if r not in BY_DESIGN})

    def _share(self, counts: dict[str, int]) -> float:
        return sum(counts.values()) / self.recommendations if self.recommendations else 0.0

    def violations(self, thresholds: Thresholds) -> list[str]:
        """Broken thresholds, in words; empty when the run passed."""
        problems = []
        if self.total.requests == 0:
            problems.append("no request completed")
        if self.total.p99_ms > thresholds.max_p99_ms:
            problems.append(f"p99 {self.total.p99_ms:g} ms > {thresholds.max_p99_ms:g} ms")
        if self.total.failures > thresholds.max_failures:
            problems.append(f"{self.total.failures} failed requests > {thresholds.max_failures}")
        if self.dashboard is not None and self.dashboard.errors:
            problems.append(f"the open dashboard saw {self.dashboard.errors} errors")
        return problems

    def to_json(self) -> dict[str, object]:
        return asdict(self) | {
            "fallback_share": self.fallback_share,
            "degraded_share": self.degraded_share,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "RunSummary":
        """The inverse of ``to_json`` (derived shares are recomputed, not read)."""
        return cls(
            offered_rps=data["offered_rps"],
            total=RowStats(**data["total"]),
            by_name=[RowStats(**row) for row in data["by_name"]],
            fallbacks=dict(data["fallbacks"]),
            recommendations=data["recommendations"],
            locust_cpu_warnings=data["locust_cpu_warnings"],
            stages_ms=dict(data["stages_ms"]),
            cpu=CpuUse(**data["cpu"]),
            idle=Idle(**data["idle"]),
            runs=data["runs"],
            dashboard=DashboardStats(**data["dashboard"]) if data.get("dashboard") else None,
        )


def read_series(out: Path) -> list[RunSummary]:
    """Every step a finished ``recsys loadtest`` wrote under ``out`` (its ``summary.json``
    files), by offered rate: to re-tabulate a series without measuring it again."""
    paths = sorted(out.glob("rate-*/**/summary.json"))
    if not paths:
        raise FileNotFoundError(f"{out}: no rate-*/summary.json from recsys loadtest")
    summaries = [RunSummary.from_json(json.loads(p.read_text())) for p in paths]
    return sorted(summaries, key=lambda s: s.offered_rps or 0.0)


def verdict(summaries: list[RunSummary], thresholds: Thresholds) -> tuple[int, list[str]]:
    """(exit code, one line per step that broke a threshold)."""
    lines = []
    for s in summaries:
        if problems := s.violations(thresholds):
            offered = f"~{s.offered_rps:g} req/s" if s.offered_rps is not None else "a step"
            lines.append(f"FAIL at {offered}: {'; '.join(problems)}")
    return (EXIT_THRESHOLDS if lines else EXIT_OK), lines


def _number(value: str) -> float:
    return 0.0 if value in ("", "N/A") else float(value)


def _row(raw: dict[str, str]) -> RowStats:
    return RowStats(
        name=raw["Name"],
        requests=int(raw["Request Count"]),
        failures=int(raw["Failure Count"]),
        rps=_number(raw["Requests/s"]),
        p50_ms=_number(raw["50%"]),
        p95_ms=_number(raw["95%"]),
        p99_ms=_number(raw["99%"]),
        max_ms=_number(raw["Max Response Time"]),
        mean_ms=_number(raw["Average Response Time"]),
    )


def read_stats_csv(path: Path) -> tuple[RowStats, list[RowStats]]:
    """(aggregate, per request name) from locust's ``*_stats.csv``."""
    with Path(path).open(newline="") as f:
        rows = list(csv.DictReader(f))
    total = [r for r in rows if r["Name"] == AGGREGATED]
    if len(total) != 1:
        raise ValueError(f"{path}: expected one {AGGREGATED} row, found {len(total)}")
    return _row(total[0]), [_row(r) for r in rows if r["Name"] != AGGREGATED]


def read_outcomes(path: Path) -> tuple[dict[str, int], int, int]:
    """(fallbacks by reason, recommendation answers, locust CPU warnings) from the locustfile."""
    if not path.exists():
        return {}, 0, 0
    raw = json.loads(path.read_text())
    fallbacks: dict[str, int] = {}
    answers = 0
    for row in raw["outcomes"]:
        answers += row["count"]
        if row["fallback"] != "none":
            fallbacks[row["fallback"]] = fallbacks.get(row["fallback"], 0) + row["count"]
    return fallbacks, answers, int(raw.get("locust_cpu_warnings", 0))


def summarise(
    csv_prefix: Path,
    outcomes_path: Path,
    offered_rps: float | None,
    stages_ms: dict[str, float] | None = None,
    cpu: CpuUse | None = None,
    idle: Idle | None = None,
    dashboard: DashboardStats | None = None,
) -> RunSummary:
    total, by_name = read_stats_csv(Path(f"{csv_prefix}{STATS_SUFFIX}"))
    fallbacks, answers, cpu_warnings = read_outcomes(outcomes_path)
    return RunSummary(
        offered_rps=offered_rps,
        total=total,
        by_name=by_name,
        fallbacks=fallbacks,
        recommendations=answers,
        locust_cpu_warnings=cpu_warnings,
        stages_ms=stages_ms or {},
        cpu=cpu or CpuUse(),
        idle=idle or Idle(),
        dashboard=dashboard,
    )


def format_summary(summary: RunSummary) -> str:
    t = summary.total
    offered = f"{summary.offered_rps:g}" if summary.offered_rps is not None else "?"
    lines = [
        f"offered ~{offered} req/s, achieved {t.rps:.1f} req/s, {t.requests} requests, "
        f"{t.failures} failed",
        f"latency ms: p50 {t.p50_ms:g}  p95 {t.p95_ms:g}  p99 {t.p99_ms:g}  max {t.max_ms:.0f}",
        f"fallbacks: {summary.fallback_share:.1%} of {summary.recommendations} recommendations "
        f"({summary.degraded_share:.1%} degraded by load)"
        + "".join(f"  {reason} {n}" for reason, n in sorted(summary.fallbacks.items())),
    ]
    for row in summary.by_name:
        lines.append(
            f"  {row.name:<32} {row.requests:>7} req {row.rps:7.1f}/s  p50 {row.p50_ms:g}  "
            f"p99 {row.p99_ms:g}  failed {row.failures}"
        )
    if summary.stages_ms:
        stages = "  ".join(f"{s} {ms:.3f}" for s, ms in summary.stages_ms.items())
        lines.append(f"server time per recommendation, mean ms: {stages}")
    cpu = summary.cpu
    if cpu.server_ms_per_request is not None and cpu.server_cores is not None:
        lines.append(
            f"server CPU {cpu.server_ms_per_request:.2f} ms per request "
            f"({cpu.server_cores:.2f} cores); locust {cpu.locust_cores or 0:.2f} cores; "
            f"machine {cpu.machine_cores or 0:.2f} of {os.cpu_count()} cores busy, "
            f"{cpu.other_cores or 0:.2f} by other processes"
        )
    idle = summary.idle
    if idle.load_average_1m is not None:
        busy = f"{idle.busy_cores:.2f}" if idle.busy_cores is not None else "?"
        lines.append(f"before: load average {idle.load_average_1m:.2f}, {busy} cores busy")
    if summary.locust_cpu_warnings:
        lines.append("warning: locust used >90% of a core; its latencies include its own queueing")
    if (d := summary.dashboard) is not None:
        lines.append(
            f"dashboard open: {d.data_loads} data loads, p50 {d.p50_ms} ms, p95 {d.p95_ms} ms, "
            f"max {d.max_ms} ms (browser-timed), {d.errors} errors"
        )
        lines += [f"  {problem}" for problem in d.problems]
    return "\n".join(lines)


def median_by_rate(summaries: list[RunSummary]) -> list[RunSummary]:
    """One summary per offered rate, in order of first appearance: the median of each figure
    over the repeated runs, and failures and fallbacks summed over them."""
    groups: dict[float | None, list[RunSummary]] = {}
    for s in summaries:
        groups.setdefault(s.offered_rps, []).append(s)
    return [_median_summary(runs) for runs in groups.values()]


def _median_summary(runs: list[RunSummary]) -> RunSummary:
    if len(runs) == 1:
        return runs[0]
    total = RowStats(
        name=runs[0].total.name,
        requests=sum(r.total.requests for r in runs),
        failures=sum(r.total.failures for r in runs),
        rps=median(r.total.rps for r in runs),
        p50_ms=median(r.total.p50_ms for r in runs),
        p95_ms=median(r.total.p95_ms for r in runs),
        p99_ms=median(r.total.p99_ms for r in runs),
        max_ms=max(r.total.max_ms for r in runs),
        mean_ms=median(r.total.mean_ms for r in runs),
    )
    fallbacks: dict[str, int] = {}
    for r in runs:
        for reason, n in r.fallbacks.items():
            fallbacks[reason] = fallbacks.get(reason, 0) + n
    stages = {
        stage: median(r.stages_ms[stage] for r in runs if stage in r.stages_ms)
        for stage in runs[0].stages_ms
    }
    return RunSummary(
        offered_rps=runs[0].offered_rps,
        total=total,
        by_name=[],
        fallbacks=fallbacks,
        recommendations=sum(r.recommendations for r in runs),
        locust_cpu_warnings=sum(r.locust_cpu_warnings for r in runs),
        stages_ms=stages,
        cpu=CpuUse(
            server_ms_per_request=_median_known(r.cpu.server_ms_per_request for r in runs),
            server_cores=_median_known(r.cpu.server_cores for r in runs),
            locust_cores=_median_known(r.cpu.locust_cores for r in runs),
            machine_cores=_median_known(r.cpu.machine_cores for r in runs),
            other_cores=max((r.cpu.other_cores or 0.0 for r in runs), default=None),
        ),
        idle=Idle(
            load_average_1m=max(r.idle.load_average_1m or 0.0 for r in runs),
            busy_cores=max(r.idle.busy_cores or 0.0 for r in runs),
        ),
        runs=len(runs),
    )


def _median_known(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return median(known) if known else None


def format_series(summaries: list[RunSummary]) -> str:
    """Offered vs achieved load, one line per step (the saturation table). Repeated runs of a
    rate are one line: medians, with failures over all of them."""
    header = (
        "| offered req/s | achieved req/s | p50 ms | p95 ms | p99 ms | max ms | failed "
        "| cold-start | degraded | server CPU ms/req | locust cores | other cores | runs |"
    )
    lines = [header, "|" + "---:|" * 13]
    for s in median_by_rate(summaries):
        t, cpu = s.total, s.cpu
        offered = f"{s.offered_rps:g}" if s.offered_rps is not None else "?"
        server = f"{cpu.server_ms_per_request:.2f}" if cpu.server_ms_per_request else "?"
        locust = f"{cpu.locust_cores:.2f}" if cpu.locust_cores is not None else "?"
        other = f"{cpu.other_cores:.2f}" if cpu.other_cores is not None else "?"
        lines.append(
            f"| {offered} | {t.rps:.1f} | {t.p50_ms:g} | {t.p95_ms:g} | {t.p99_ms:g} | "
            f"{t.max_ms:.0f} | {t.failures} | {s.fallback_share - s.degraded_share:.1%} | "
            f"{s.degraded_share:.1%} | {server} | {locust} | "
            f"{other} | {s.runs} |"
        )
    return "\n".join(lines)
