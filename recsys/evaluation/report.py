"""The evaluation report, for people: the same sections rendered as markdown and as HTML.

:func:`sections` turns a report into a list of titled blocks (paragraphs, tables, bullet lists,
figures); :func:`render_markdown` and :func:`render_html` only lay them out, so the two files can
never disagree. The HTML embeds its figures (base64 PNG) and its style, so it is one
self-contained file. :func:`write_report` writes all of them, with ``report.json``.
"""

import base64
import html
import json
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from recsys.artifacts import RankerSummary
from recsys.evaluation.metric_table import (
    INTERVAL_METRICS,
    METRICS,
    SUMMARY_K,
    model_name,
    model_title,
)
from recsys.evaluation.plots import render_plots
from recsys.evaluation.records import (
    CandidateRecall,
    CompareReport,
    Drift,
    EvalReport,
    Paired,
    Shift,
)

_TEST_USERS: Final = (
    "**Test users**: one request per held-out user who has training history, at the time and "
    "on the device of their first held-out event; their relevant items are all their held-out "
    "items (binary relevance, each item once). Every model answers the same requests with 100 "
    "items, training items removed; the two-stage answer is what the API would return."
)
_BEYOND_METRICS: Final = (
    "**Candidate recall@d**: held-out items among a user's first d stage-1 candidates (in "
    "stored order) / held-out items, averaged over users; at d = all candidates it is the "
    "ceiling of stage 2. *Alone*: a source's own top list with every slot to itself.",
    "**95% interval**: percentile bootstrap of the mean over test users (users resampled with "
    "replacement; walk-forward: each fold resampled separately and the fold means averaged).",
    "**Paired comparison**: per-user differences on the same users (challenger minus champion). "
    "Interval: paired bootstrap. p: two-sided sign-flip randomisation test (each user's "
    "difference flipped at random), with the Wilcoxon signed-rank p-value alongside.",
    "**PSI** (population stability index) of a feature between the ranker's training window "
    "(every candidate of its training requests, as of its label cut) and the test window (every "
    "candidate of the test requests, as served): sum over 10 reference-decile bins (+1 for "
    "missing values) of (current share - reference share) x ln(current share / reference "
    "share), shares floored at 1e-4. Above 0.1: moderate shift; above 0.2: major shift.",
    "**Walk-forward**: fold i trains on every event before its window and tests on the window's "
    "events (users with history, items new to them); the reported value is the mean over folds.",
)
DEFINITIONS: Final = (_TEST_USERS, *(m.definition for m in METRICS), *_BEYOND_METRICS)


@dataclass(frozen=True)
class Table:
    header: Sequence[str]
    rows: Sequence[Sequence[str]]


@dataclass(frozen=True)
class Figure:
    name: str  # file stem of the PNG
    caption: str


@dataclass(frozen=True)
class Bullets:
    items: Sequence[str]


@dataclass(frozen=True)
class Code:
    text: str


Block = str | Table | Figure | Bullets | Code


@dataclass(frozen=True)
class Section:
    title: str
    blocks: Sequence[Block] = field(default_factory=list)
    level: int = 2


# --------------------------------------------------------------------------- number formatting


def _f(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _p(value: float) -> str:
    return f"{value:.4f}" if value >= 1e-4 else "< 0.0001"


def _ci(interval: Sequence[float] | None) -> str:
    return "" if interval is None else f" [{interval[0]:.4f}, {interval[1]:.4f}]"


def _ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}x" if base > 0 else "n/a"


# --------------------------------------------------------------------------- sections

_NDCG_AT = f"ndcg@{SUMMARY_K}"


def _summary_table(report: EvalReport) -> Table:
    """Every metric of the table that has summary digits, at ``SUMMARY_K``, with intervals
    where the report has them, and NDCG against ALS."""
    intervals = report.confidence.intervals if report.confidence else {}
    shown = [m for m in METRICS if m.digits]
    base = report.results.get("als", {}).get(_NDCG_AT, 0.0)
    header = ["model"]
    for m in shown:
        has_ci = m.at(SUMMARY_K) in INTERVAL_METRICS
        header.append(m.label_at(SUMMARY_K) + (" [95% CI]" if has_ci else ""))
    rows = []
    for name, row in report.results.items():
        ci = intervals.get(name, {})
        cells = [model_title(name)]
        for m in shown:
            key = m.at(SUMMARY_K)
            cells.append(f"{_f(row.get(key), m.digits)}{_ci(ci.get(key))}")
        rows.append([*cells, _ratio(row[_NDCG_AT], base)])
    return Table([*header, f"NDCG@{SUMMARY_K} vs ALS"], rows)


def _metric_tables(report: EvalReport) -> list[Block]:
    blocks: list[Block] = []
    for m in METRICS:
        present = [k for k in report.ks if all(m.at(k) in row for row in report.results.values())]
        if not present:
            continue
        blocks.append(f"**{m.label}**")
        blocks.append(
            Table(
                ["model", *[f"@{k}" for k in present]],
                [
                    [model_name(n), *[f"{row[m.at(k)]:.4f}" for k in present]]
                    for n, row in report.results.items()
                ],
            )
        )
    return blocks


def _paired_table(paired: Paired, first: str, champion: str, challenger: str) -> Table:
    rows = []
    for name, metrics in paired.items():
        for metric, d in metrics.items():
            rows.append(
                [
                    model_name(name),
                    metric,
                    _f(d.champion),
                    _f(d.challenger),
                    f"{d.difference:+.4f}",
                    f"[{d.ci95[0]:+.4f}, {d.ci95[1]:+.4f}]",
                    _p(d.p_value),
                    _p(d.p_wilcoxon),
                ]
            )
    return Table(
        [first, "metric", champion, challenger, "difference", "95% CI", "p", "p (Wilcoxon)"], rows
    )


def _fold_table(report: EvalReport) -> Table:
    folds = report.folds or []
    models = list(folds[0].results)
    rows = [
        [
            str(f.fold),
            str(f.train_until)[:10],
            str(f.test_until)[:10],
            f"{f.train_events}",
            f"{f.users}",
            *[f"{f.results[m][_NDCG_AT]:.4f}" for m in models],
        ]
        for f in folds
    ]
    mean = report.results
    rows.append(
        ["mean", "", "", "", f"{report.users}", *[f"{mean[m][_NDCG_AT]:.4f}" for m in models]]
    )
    return Table(
        [
            "fold",
            "test from",
            "test until",
            "train events",
            "test users",
            *[f"{model_name(m)} NDCG@{SUMMARY_K}" for m in models],
        ],
        rows,
    )


def _candidate_blocks(cand: CandidateRecall) -> list[Block]:
    depths = sorted(cand.recall_at)
    blocks: list[Block] = [
        f"{cand.per_user:.0f} candidates per user; recall of held-out items among them: "
        f"**{cand.recall:.4f}**, the ceiling of stage 2.",
        Table(
            [
                "source",
                "recall, source alone (top per_user)",
                "recall of its part of the merge",
                "slots per user in the merge",
            ],
            [
                [
                    name,
                    f"{row.recall_alone:.4f}",
                    f"{row.recall_in_merged:.4f}",
                    f"{row.slots_per_user:.1f}",
                ]
                for name, row in cand.sources.items()
            ],
        ),
    ]
    if depths:
        rows = [["merged (stage-1 order)", *[f"{cand.recall_at[d]:.4f}" for d in depths]]]
        for name, row in cand.sources.items():
            rows.append([f"{name} alone", *[_f(row.recall_alone_at.get(d)) for d in depths]])
        blocks += ["**Recall at depth d**", Table(["candidates", *[f"@{d}" for d in depths]], rows)]
    return blocks


def _segment_blocks(report: EvalReport) -> list[Block]:
    blocks: list[Block] = []
    for kind, rows in report.segments.items():
        if not rows:
            continue
        models = [m for m in next(iter(rows.values())) if m != "users"]
        ratio = "als" in models and "two_stage" in models
        header = [kind, "users", *[model_name(m) for m in models]]
        if ratio:
            header.append("two-stage / ALS")
        table_rows = []
        for name, row in rows.items():
            cells = [name, f"{row['users']:.0f}", *[f"{row[m]:.4f}" for m in models]]
            if ratio:
                cells.append(_ratio(row["two_stage"], row["als"]))
            table_rows.append(cells)
        blocks += [f"**NDCG@{SUMMARY_K} by {kind}**", Table(header, table_rows)]
    return blocks


def _ranker_blocks(ranker: RankerSummary) -> list[Block]:
    gains = ranker.feature_importance_gain
    total = sum(gains.values()) or 1.0
    return [
        f"Labels: {ranker.label_split}; {ranker.train_groups} training requests, "
        f"{ranker.valid_groups} validation requests; {ranker.best_iteration} trees; "
        f"validation NDCG@10 {ranker.valid_ndcg_at_10:.4f}.",
        Table(
            ["feature", "gain share"],
            [
                [feat, f"{gain / total:.3f}"]
                for feat, gain in sorted(gains.items(), key=lambda kv: -kv[1])
            ],
        ),
    ]


def _drift_blocks(drift: Drift) -> list[Block]:
    flagged = {
        flag: [n for n, d in drift.features.items() if d.flag == flag]
        for flag in ("major", "moderate")
    }
    score = drift.score
    summary = (
        f"Reference: {drift.reference} ({drift.reference_requests} requests, "
        f"{drift.reference_rows} rows). Current: {drift.current} "
        f"({drift.current_requests} requests, {drift.current_rows} rows). "
        f"**{len(flagged['major'])} major** (PSI > 0.2): {', '.join(flagged['major']) or 'none'}; "
        f"**{len(flagged['moderate'])} moderate** (0.1 to 0.2): "
        f"{', '.join(flagged['moderate']) or 'none'}. Ranker score: PSI {score.psi:.3f} "
        f"({score.flag}), mean {_f(score.reference_mean)} -> {_f(score.current_mean)}, "
        f"std {_f(score.reference_std)} -> {_f(score.current_std)}."
    )

    def row(name: str, d: Shift) -> list[str]:
        return [
            name,
            f"{d.psi:.3f}",
            d.flag,
            _f(d.reference_mean),
            _f(d.current_mean),
            f"{d.reference_missing:.3f}",
            f"{d.current_missing:.3f}",
        ]

    ordered = sorted(drift.features.items(), key=lambda kv: -kv[1].psi)
    return [
        summary,
        Table(
            [
                "feature",
                "PSI",
                "flag",
                "mean (train)",
                "mean (test)",
                "missing (train)",
                "missing (test)",
            ],
            [row("ranker score", score), *[row(n, d) for n, d in ordered]],
        ),
    ]


def _timing_blocks(report: EvalReport) -> list[Block]:
    blocks: list[Block] = []
    for timings, title in ((report.timings_s, "build"), (report.eval_timings_s, "evaluation")):
        if timings:
            blocks += [
                f"**{title}**",
                Table(["stage", "seconds"], [[k, f"{v:.2f}"] for k, v in timings.items()]),
            ]
    return blocks


def _figure(name: str, caption: str, images: Collection[str]) -> list[Block]:
    return [Figure(name, caption)] if name in images else []


def _header(report: EvalReport) -> str:
    window = report.window
    parts = [f"Protocol: **{report.protocol}**"]
    if report.walk_forward:
        parts[0] += f", {report.users} test requests (each fold's test users, summed)"
    else:
        parts[0] += f", {report.users} test users"
    parts.append(f"dataset {report.dataset or ''}")
    if not report.walk_forward:
        parts.append(f"build {report.build_version}")
        parts.append(f"{window.train_events} training events, {window.test_events} held out")
        if window.train_until:
            parts.append(f"training until {window.train_until}")
    else:
        wf = report.walk_forward
        parts.append(
            f"{wf.folds} folds of {wf.fold_days} days; the numbers are the mean over folds"
            " and the candidate, segment, ranker and drift sections describe the latest fold"
        )
    return "; ".join(parts) + "."


def sections(report: EvalReport | CompareReport, images: Collection[str] = ()) -> list[Section]:
    """The report as titled blocks; figures only for the names in ``images``."""
    if isinstance(report, CompareReport):
        return _compare_sections(report, images)
    out = [Section("Evaluation report", [_header(report)], level=1)]
    pop_ref = report.popularity_reference.held_out_pop_pct
    summary: list[Block] = [
        _summary_table(report),
        f"The held-out items' own pop pct is {pop_ref:.3f}: a model above it recommends "
        "more popular items than users went on to watch (pop bias@k in the table below).",
    ]
    out.append(Section(f"Summary at k = {SUMMARY_K}", summary))
    out.append(
        Section(
            "Every metric at k = " + ", ".join(str(k) for k in report.ks),
            [*_figure("metrics_at_k", "Metrics against k", images), *_metric_tables(report)],
        )
    )
    if report.paired:
        out.append(
            Section(
                "Is two-stage really better? Paired comparisons",
                [
                    "Two-stage (challenger) against each other model (champion), on the same "
                    "users: mean per-user difference, its 95% bootstrap interval, p-values.",
                    _paired_table(report.paired, "champion model", "champion", "two-stage"),
                    *_figure("paired_differences", "Paired differences", images),
                ],
            )
        )
    if report.folds:
        out.append(
            Section(
                "Walk-forward folds",
                [_fold_table(report), *_figure("folds", "NDCG@10 per fold", images)],
            )
        )
    out.append(
        Section(
            "Candidates (stage 1)",
            [
                *_candidate_blocks(report.candidates),
                *_figure("candidate_recall", "Candidate recall at depth", images),
            ],
        )
    )
    if report.segments:
        out.append(
            Section(
                f"NDCG@{SUMMARY_K} by segment",
                [*_segment_blocks(report), *_figure("segments", "NDCG@10 by segment", images)],
            )
        )
    out.append(
        Section(
            "Ranker",
            [
                *_ranker_blocks(report.ranker),
                *_figure("feature_importance", "Feature importance", images),
            ],
        )
    )
    if report.drift:
        out.append(
            Section(
                "Drift: training window vs test window",
                [*_drift_blocks(report.drift), *_figure("drift", "PSI per feature", images)],
            )
        )
    timings = _timing_blocks(report)
    if timings:
        out.append(Section("Timings (s)", timings))
    out.append(Section("Definitions", [Bullets(DEFINITIONS)]))
    return out


def _compare_sections(report: CompareReport, images: Collection[str]) -> list[Section]:
    champ, chall = report.champion, report.challenger
    d = report.paired["two_stage"][_NDCG_AT]
    if d.p_value < 0.05:
        verdict = "better" if d.difference > 0 else "worse"
        verdict = f"The challenger's two-stage NDCG@10 is **{verdict}** (p = {_p(d.p_value)})."
    else:
        verdict = (
            "The two configurations' two-stage NDCG@10 differ by no more than chance would "
            f"explain (p = {_p(d.p_value)} >= 0.05)."
        )
    return [
        Section(
            "Champion vs challenger",
            [
                f"Protocol: **{report.protocol}**, {report.users} test users, dataset "
                f"{report.dataset or ''}. Both configurations were built on the same training "
                "events and answered the same requests.",
                verdict,
            ],
            level=1,
        ),
        Section(
            "Settings overrides",
            [
                "**champion**",
                Code(json.dumps(report.settings.get("champion", {}), indent=2)),
                "**challenger**",
                Code(json.dumps(report.settings.get("challenger", {}), indent=2)),
            ],
        ),
        Section(
            "Paired comparison (challenger minus champion)",
            [
                _paired_table(report.paired, "model", "champion", "challenger"),
                *_figure("paired_differences", "Paired differences", images),
            ],
        ),
        Section("Champion", [_summary_table(champ)]),
        Section("Challenger", [_summary_table(chall)]),
        Section(
            "Ranker",
            [
                Table(
                    ["", "trees", "validation NDCG@10", "candidate recall"],
                    [
                        [
                            side,
                            str(r.ranker.best_iteration),
                            f"{r.ranker.valid_ndcg_at_10:.4f}",
                            f"{r.candidates.recall:.4f}",
                        ]
                        for side, r in (("champion", champ), ("challenger", chall))
                    ],
                ),
                *_figure("metrics_at_k", "Two-stage metrics against k", images),
            ],
        ),
        Section("Definitions", [Bullets(DEFINITIONS)]),
    ]


# --------------------------------------------------------------------------- markdown


def _md_table(table: Table) -> list[str]:
    lines = [
        "| " + " | ".join(table.header) + " |",
        "|" + "---|" + "---:|" * (len(table.header) - 1),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in table.rows]
    return lines


def _md_block(block: Block) -> list[str]:
    if isinstance(block, Table):
        return _md_table(block)
    if isinstance(block, Figure):
        return [f"![{block.caption}]({block.name}.png)"]
    if isinstance(block, Bullets):
        return [f"- {item}" for item in block.items]
    if isinstance(block, Code):
        return ["```json", block.text, "```"]
    return [block]


def render_markdown(report: EvalReport | CompareReport, images: Collection[str] = ()) -> str:
    """Markdown; figures link ``<name>.png`` beside the file, for the names in ``images``."""
    return markdown_of(sections(report, images))


def markdown_of(blocks: Sequence[Section]) -> str:
    """Sections as markdown (any report's: the offline and the online one share the layout)."""
    lines: list[str] = []
    for section in blocks:
        lines += ["#" * section.level + " " + section.title, ""]
        for block in section.blocks:
            lines += [*_md_block(block), ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- html

_STYLE: Final = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1100px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .3em; }
h2 { margin-top: 2em; border-bottom: 1px solid #eee; padding-bottom: .2em; }
table { border-collapse: collapse; margin: .8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: .3em .6em; }
th { background: #f5f5f5; }
td:not(:first-child), th:not(:first-child) { text-align: right;
       font-variant-numeric: tabular-nums; }
tr:nth-child(even) td { background: #fafafa; }
img { max-width: 100%; display: block; margin: .8em 0; }
code, pre { background: #f5f5f5; border-radius: 3px; }
pre { padding: .6em; }
li { margin: .3em 0; }
"""


def _inline(text: str) -> str:
    """Escape, then the two markdown marks the sections use: **bold** and *italic*."""
    out = html.escape(text)
    out = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"\*(.+?)\*", r"<em>\1</em>", out)


def _html_block(block: Block, plots: Mapping[str, bytes]) -> str:
    if isinstance(block, Table):
        head = "".join(f"<th>{_inline(h)}</th>" for h in block.header)
        body = "".join(
            "<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in block.rows
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    if isinstance(block, Figure):
        data = base64.b64encode(plots[block.name]).decode("ascii")
        return f'<img alt="{html.escape(block.caption)}" src="data:image/png;base64,{data}">'
    if isinstance(block, Bullets):
        return "<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in block.items) + "</ul>"
    if isinstance(block, Code):
        return f"<pre><code>{html.escape(block.text)}</code></pre>"
    return f"<p>{_inline(block)}</p>"


def render_html(report: EvalReport | CompareReport, plots: Mapping[str, bytes]) -> str:
    """One self-contained HTML page: style inline, figures embedded as base64 PNG."""
    title = f"Evaluation report: {report.dataset or ''}"
    return html_of(title, sections(report, plots.keys()), plots)


def html_of(title: str, blocks: Sequence[Section], plots: Mapping[str, bytes]) -> str:
    """Sections as one self-contained HTML page (style inline, figures embedded)."""
    parts = []
    for section in blocks:
        parts.append(f"<h{section.level}>{_inline(section.title)}</h{section.level}>")
        parts += [_html_block(block, plots) for block in section.blocks]
    title = html.escape(title)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{title}</title><style>{_STYLE}</style></head>\n<body>\n"
        + "\n".join(parts)
        + "\n</body></html>\n"
    )


def write_report(report: EvalReport | CompareReport, out_dir: Path) -> None:
    """``report.json``, ``report.md`` beside its PNG plots, and ``report.html`` with the same
    plots embedded, so the HTML file can be mailed or attached on its own."""
    plots = render_plots(report)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(report.to_json_dict(), indent=2) + "\n")
    for name, png in plots.items():
        (out_dir / f"{name}.png").write_bytes(png)
    (out_dir / "report.md").write_text(render_markdown(report, list(plots)))
    (out_dir / "report.html").write_text(render_html(report, plots))
