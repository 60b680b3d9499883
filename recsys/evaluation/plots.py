"""The report's figures, drawn from the report alone, as PNG bytes.

Matplotlib's object API on the Agg canvas (``Figure`` + ``savefig``), never ``pyplot``: no global
figure state, no GUI backend to pick, safe to call from any thread, and nothing to close.
"""

import io
from collections.abc import Callable
from typing import Final

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from recsys.evaluation.drift import MAJOR, MODERATE
from recsys.evaluation.metric_table import METRICS, SUMMARY_K, model_colour, model_name
from recsys.evaluation.records import (
    CandidateRecall,
    CompareReport,
    Drift,
    EvalReport,
    Fold,
    MetricRow,
    Paired,
    Segments,
)

DPI: Final = 100
FLAG_COLOURS: Final = {"stable": "#4c9f50", "moderate": "#f0a030", "major": "#d62728"}


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return buf.getvalue()


def _ks(row: MetricRow, metric: str) -> list[int]:
    return sorted(int(key.split("@")[1]) for key in row if key.startswith(f"{metric}@"))


def _curve(ax: Axes, rows: dict[str, MetricRow], metric: str, title: str) -> None:
    for name, row in rows.items():
        ks = _ks(row, metric)
        ax.plot(
            ks,
            [row[f"{metric}@{k}"] for k in ks],
            marker="o",
            markersize=3,
            label=model_name(name),
            color=model_colour(name),
        )
    ax.set_xscale("log")
    ks = sorted({k for row in rows.values() for k in _ks(row, metric)})
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_xticks([], minor=True)
    ax.set_title(title)
    ax.set_xlabel("k")
    ax.grid(alpha=0.3)


def metric_curves(rows: dict[str, MetricRow]) -> bytes:
    """Every ``plotted`` metric of the table against k, one panel each, one line per model."""
    panels = [m for m in METRICS if m.plotted]
    n_cols = 2
    fig = Figure(figsize=(10, 3.5 * -(-len(panels) // n_cols)))
    axes = np.atleast_1d(fig.subplots(-(-len(panels) // n_cols), n_cols)).ravel()
    for ax, m in zip(axes, panels, strict=False):
        _curve(ax, rows, m.key, m.label)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


def candidate_recall(candidates: CandidateRecall) -> bytes:
    """Recall of held-out items within the first d candidates: the merged list (what stage 2
    ranks) and each source alone."""
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    depths = sorted(candidates.recall_at)
    ax.plot(
        depths,
        [candidates.recall_at[d] for d in depths],
        marker="o",
        linewidth=2.5,
        color="black",
        label="merged candidates",
    )
    for name, row in candidates.sources.items():
        ds = sorted(row.recall_alone_at)
        ax.plot(ds, [row.recall_alone_at[d] for d in ds], marker=".", label=f"{name} alone")
    ax.set_xscale("log")
    ax.set_xticks(depths, [str(d) for d in depths])
    ax.set_xticks([], minor=True)
    ax.set_xlabel("candidates per user (depth)")
    ax.set_ylabel("recall of held-out items")
    ax.set_title("Candidate recall@depth")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def feature_importance(gains: dict[str, float]) -> bytes:
    """Share of the ranker's total split gain taken by each feature."""
    total = sum(gains.values()) or 1.0
    items = sorted(gains.items(), key=lambda kv: kv[1])
    fig = Figure(figsize=(7, 0.22 * len(items) + 1.2))
    ax = fig.subplots()
    ax.barh([k for k, _ in items], [v / total for _, v in items], color="#1f77b4")
    ax.set_xlabel("share of total gain")
    ax.set_title("Ranker feature importance (gain)")
    ax.tick_params(axis="y", labelsize=8)
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def segment_bars(segments: Segments) -> bytes:
    """NDCG@10 per segment, one bar per model; one legend above both panels."""
    kinds = [k for k, rows in segments.items() if rows]
    fig = Figure(figsize=(11, 4))
    axes = np.atleast_1d(fig.subplots(1, len(kinds)))
    models: list[str] = []
    for ax, kind in zip(axes, kinds, strict=True):
        rows = segments[kind]
        names = list(rows)
        models = [m for m in next(iter(rows.values())) if m != "users"]
        width = 0.8 / len(models)
        x = np.arange(len(names))
        for j, model in enumerate(models):
            ax.bar(
                x + (j - (len(models) - 1) / 2) * width,
                [rows[n][model] for n in names],
                width,
                label=model_name(model),
                color=model_colour(model),
            )
        ax.set_xticks(x, [f"{n}\n({rows[n]['users']:.0f})" for n in names], fontsize=8)
        ax.set_title(f"NDCG@{SUMMARY_K} by {kind} (users)")
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=len(models), bbox_to_anchor=(0.5, 1.0))
    fig.tight_layout(rect=(0.0, 0.0, 1.0, 0.92))
    return _png(fig)


def drift_bars(drift: Drift) -> bytes:
    """PSI of each feature and of the ranker score, with the 0.1 and 0.2 thresholds."""
    rows = dict(drift.features) | {"ranker score": drift.score}
    items = sorted(rows.items(), key=lambda kv: kv[1].psi)
    fig = Figure(figsize=(7, 0.22 * len(items) + 1.2))
    ax = fig.subplots()
    ax.barh(
        [k for k, _ in items],
        [v.psi for _, v in items],
        color=[FLAG_COLOURS[v.flag] for _, v in items],
    )
    ax.axvline(MODERATE, color=FLAG_COLOURS["moderate"], linestyle="--", linewidth=1)
    ax.axvline(MAJOR, color=FLAG_COLOURS["major"], linestyle="--", linewidth=1)
    ax.set_xlabel("PSI, training window -> test window")
    ax.set_title("Drift of ranker features (PSI)")
    ax.tick_params(axis="y", labelsize=8)
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def fold_lines(folds: list[Fold], metric: str = f"ndcg@{SUMMARY_K}") -> bytes:
    """A metric per walk-forward fold, one line per model: is quality stable over time?"""
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    labels = [f"{f.fold}: {str(f.train_until)[:10]}" for f in folds]
    for name in folds[0].results:
        ax.plot(
            labels,
            [f.results[name][metric] for f in folds],
            marker="o",
            label=model_name(name),
            color=model_colour(name),
        )
    ax.set_xlabel("fold: test window start")
    ax.set_ylabel(metric)
    ax.set_title(f"Walk-forward {metric} per fold")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def paired_differences(paired: Paired, title: str, label: str = "{model}: {metric}") -> bytes:
    """Each comparison's mean per-user difference with its 95% bootstrap interval, first on top;
    green when the interval is above 0, red below, grey when it holds 0."""
    labels, diffs, lows, highs, colours = [], [], [], [], []
    for name, metrics in paired.items():
        for metric, d in metrics.items():
            labels.append(label.format(model=model_name(name), metric=metric))
            diffs.append(d.difference)
            lows.append(d.difference - d.ci95[0])
            highs.append(d.ci95[1] - d.difference)
            above, below = d.ci95[0] > 0, d.ci95[1] < 0
            colours.append("#4c9f50" if above else "#d62728" if below else "#9e9e9e")
    fig = Figure(figsize=(7, 0.35 * len(labels) + 1.2))
    ax = fig.subplots()
    y = np.arange(len(labels))
    ax.errorbar(diffs, y, xerr=[lows, highs], fmt="none", ecolor="black", capsize=3)
    ax.scatter(diffs, y, color=colours, zorder=3)
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("mean per-user difference, 95% bootstrap interval")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def render_plots(report: EvalReport | CompareReport) -> dict[str, bytes]:
    """Every figure the report has data for, by file stem (the markdown links ``<stem>.png``)."""
    if isinstance(report, CompareReport):
        rows = {
            f"{side} two-stage": r.results["two_stage"]
            for side, r in (("champion", report.champion), ("challenger", report.challenger))
        }
        return {
            "paired_differences": paired_differences(
                report.paired, "Challenger minus champion, same users"
            ),
            "metrics_at_k": metric_curves(rows),
        }
    makers: dict[str, Callable[[], bytes]] = {
        "metrics_at_k": lambda: metric_curves(report.results),
        "candidate_recall": lambda: candidate_recall(report.candidates),
    }
    if report.paired:
        paired = report.paired
        makers["paired_differences"] = lambda: paired_differences(
            paired, "Two-stage minus each other model, same users", "vs {model}: {metric}"
        )
    if report.folds:
        folds = report.folds
        makers["folds"] = lambda: fold_lines(folds)
    if report.segments:
        makers["segments"] = lambda: segment_bars(report.segments)
    gains = report.ranker.feature_importance_gain
    if gains:
        makers["feature_importance"] = lambda: feature_importance(gains)
    if report.drift:
        drift = report.drift
        makers["drift"] = lambda: drift_bars(drift)
    return {name: make() for name, make in makers.items()}
