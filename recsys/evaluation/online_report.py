"""The online report for people: the same layout as the offline report (``report.py``'s blocks,
markdown and HTML), from an ``OnlineReport``; ``write_online_report`` writes ``report.json``,
``report.md`` and ``report.html``."""

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from recsys.evaluation.online_metric_table import (
    COVERAGE_KEY,
    DEFINITIONS,
    HEADLINE,
    ONLINE_METRICS,
)
from recsys.evaluation.records import ArmComparison, MetricValue, OnlineGroup, OnlineReport
from recsys.evaluation.report import Block, Bullets, Section, Table, html_of, markdown_of

_LABELS = {m.key: m.label for m in ONLINE_METRICS} | {COVERAGE_KEY: "coverage"}
_DIGITS = {m.key: m.digits for m in ONLINE_METRICS} | {COVERAGE_KEY: 4}


def _iso(ms: int | None) -> str:
    if ms is None:
        return "the start of the log"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _value(key: str, v: MetricValue | None, interval: bool = True) -> str:
    if v is None or v.value is None:
        return "n/a"
    digits = _DIGITS[key]
    text = f"{v.value:.{digits}f}"
    if interval and v.ci95 is not None:
        text += f" [{v.ci95[0]:.{digits}f}, {v.ci95[1]:.{digits}f}]"
    return text


def _p(value: float) -> str:
    return f"{value:.4f}" if value >= 1e-4 else "< 0.0001"


def _overall_table(group: OnlineGroup) -> Table:
    return Table(
        ["metric", "value [95% CI]"],
        [[_LABELS[k], _value(k, v)] for k, v in group.metrics.items()],
    )


def _breakdown_table(dimension: str, groups: dict[str, OnlineGroup]) -> Table:
    """Every metric per value; the interval only for the headline, so the table stays readable."""
    keys = list(_LABELS)
    header = [dimension, "answers", "users", "items shown"]
    header += [_LABELS[k] + (" [95% CI]" if k == HEADLINE else "") for k in keys]
    rows = [
        [
            name,
            str(g.impressions),
            str(g.users),
            str(g.items_shown),
            *[_value(k, g.metrics.get(k), interval=k == HEADLINE) for k in keys],
        ]
        for name, g in groups.items()
    ]
    return Table(header, rows)


def comparison_table(comparison: ArmComparison) -> Table:
    """One row per metric: both arms, the difference, its interval and the p-values."""
    rows = []
    for key, d in comparison.metrics.items():
        digits = _DIGITS[key]
        rows.append(
            [
                _LABELS[key],
                f"{d['champion']:.{digits}f}",
                f"{d['challenger']:.{digits}f}",
                f"{d['difference']:+.{digits}f}",
                f"[{d['ci95'][0]:+.{digits}f}, {d['ci95'][1]:+.{digits}f}]",
                _p(d["p_value"]),
                _p(d["p_welch"]),
            ]
        )
    return Table(
        [
            "metric",
            comparison.champion,
            comparison.challenger,
            "difference",
            "95% CI",
            "p (permutation)",
            "p (Welch)",
        ],
        rows,
    )


def comparison_summary(comparison: ArmComparison) -> str:
    d: dict[str, Any] | None = comparison.metrics.get(HEADLINE)
    users = d["users"] if d else ["?", "?"]
    head = (
        f"**{comparison.challenger}** ({users[1]} users) against **{comparison.champion}** "
        f"({users[0]} users)"
    )
    if d is None:
        return head + ": no answers to compare."
    verdict = "significant at 1%" if d["p_value"] < 0.01 else "not significant at 1%"
    return (
        f"{head}: {_LABELS[HEADLINE]} {d['challenger']:.4f} vs {d['champion']:.4f}, "
        f"difference {d['difference']:+.4f} [{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}], "
        f"p = {_p(d['p_value'])} ({verdict})."
    )


def online_sections(report: OnlineReport) -> list[Section]:
    header = (
        f"Answers from {_iso(report.first_ms)} to {_iso(report.last_ms)} (asked for: from "
        f"{_iso(report.since_ms)} to {_iso(report.until_ms) if report.until_ms else 'now'}). "
        f"{report.impressions} answers, {report.overall.items_shown} items shown, "
        f"{report.overall.users} users; {report.events} events, of which "
        f"{report.attributed_events} were attributed to an answer within "
        f"{report.attribution_window_s:g} s. Intervals: {report.resamples} bootstrap resamples "
        "of the users."
    )
    out = [
        Section("Online report", [header], level=1),
        Section("All answers", [_overall_table(report.overall)]),
    ]
    if report.comparisons:
        blocks: list[Block] = [
            "Each arm against the champion, on disjoint sets of users (a user's arm is fixed "
            "by a hash of the user id): the difference of the pooled values, its bootstrap "
            "interval (each arm's users resampled), a permutation test of the arm labels over "
            "users, and Welch's t-test on per-user values.",
        ]
        for comparison in report.comparisons:
            blocks += [comparison_summary(comparison), comparison_table(comparison)]
        out.append(Section("A/B: arms compared", blocks))
    for dimension, groups in report.breakdowns.items():
        out.append(Section(f"By {dimension}", [_breakdown_table(dimension, groups)]))
    out.append(
        Section(
            "Definitions",
            [
                Bullets(
                    [
                        "**Attribution**: an event counts for the answer its request_id names, "
                        "if that answer showed the item to that user within the window before "
                        "the event; otherwise for the latest answer that did. Events matching "
                        "no answer are in no metric.",
                        *DEFINITIONS,
                    ]
                )
            ],
        )
    )
    return out


def write_online_report(report: OnlineReport, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(report.to_json_dict(), indent=2) + "\n")
    blocks = online_sections(report)
    (out_dir / "report.md").write_text(markdown_of(blocks))
    (out_dir / "report.html").write_text(html_of("Online report", blocks, {}))
