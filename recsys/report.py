"""The evaluation report as markdown: numbers side by side, with the definitions behind them."""

from typing import Any

from recsys.evaluation import KS

ROW_NAMES = {
    "popularity": "popularity (most watched, seen removed)",
    "als": "ALS (exact top-k, seen removed)",
    "stage1": "stage 1 as served (candidates in score order)",
    "two_stage": "two-stage (LambdaRank over candidates)",
}

DEFINITIONS = """\
- **NDCG@k**: DCG@k / IDCG@k with binary gains, DCG = sum over hits at rank r (1-based) of
  1/log2(r+1), ideal DCG over min(|held-out items|, k) positions; averaged over users.
- **HR@k** (hit rate): share of users with at least one held-out item in their top k.
- **Recall@k**: held-out items found in the top k / held-out items, averaged over users.
- **MRR@k**: 1 / rank of the first hit in the top k (0 without a hit), averaged over users.
- **coverage@10**: share of the catalogue that appears in at least one user's top 10.
"""


def render_markdown(report: dict[str, Any]) -> str:
    res = report["results"]
    base = res["als"]["ndcg@10"]
    lines = [
        "# Evaluation report",
        "",
        f"Protocol: **{report['protocol']}**, {report['users']} test users"
        f" ({report.get('dataset', '')}). Build {report.get('build_version', '')}.",
        "",
        "| model | " + " | ".join(f"NDCG@{k} | HR@{k}" for k in KS) + " | MRR@10 | coverage@10 "
        "| NDCG@10 vs ALS |",
        "|---|" + "---:|" * (2 * len(KS) + 3),
    ]
    for name, row in res.items():
        cells = [f"{row[f'ndcg@{k}']:.4f} | {row[f'hr@{k}']:.4f}" for k in KS]
        ratio = f"{row['ndcg@10'] / base:.2f}x" if base > 0 else "n/a"
        lines.append(
            f"| {ROW_NAMES.get(name, name)} | "
            + " | ".join(cells)
            + f" | {row['mrr@10']:.4f} | {row['coverage@10']:.4f} | {ratio} |"
        )
    cand = report["candidates"]
    lines += [
        "",
        "## Candidates (stage 1)",
        "",
        f"{cand['per_user']:.0f} candidates per user; recall of held-out items among them:"
        f" **{cand['recall']:.4f}**, the ceiling of stage 2.",
        "",
        "| source | recall, source alone (top per_user) | recall of its part of the merge "
        "| slots per user in the merge |",
        "|---|---:|---:|---:|",
    ]
    for name, row in cand.get("sources", {}).items():
        lines.append(
            f"| {name} | {row['recall_alone']:.4f} | {row['recall_in_merged']:.4f} "
            f"| {row['slots_per_user']:.1f} |"
        )
    lines.append("")
    for kind, rows in report.get("segments_ndcg@10", {}).items():
        lines += [
            f"## NDCG@10 by {kind}",
            "",
            f"| {kind} | users | ALS | two-stage | ratio |",
            "|---|---:|---:|---:|---:|",
        ]
        for name, row in rows.items():
            ratio = f"{row['two_stage'] / row['als']:.2f}x" if row["als"] > 0 else "n/a"
            lines.append(
                f"| {name} | {row['users']:.0f} | {row['als']:.4f} | {row['two_stage']:.4f} "
                f"| {ratio} |"
            )
        lines.append("")
    ranker = report.get("ranker")
    if ranker:
        lines += [
            "## Ranker",
            "",
            f"Labels: {ranker['label_split']}; {ranker['train_groups']} training requests, "
            f"{ranker['valid_groups']} validation requests; {ranker['best_iteration']} trees; "
            f"validation NDCG@10 {ranker['valid_ndcg@10']:.4f}.",
            "",
            "| feature | gain share |",
            "|---|---:|",
        ]
        gains = ranker["feature_importance_gain"]
        total = sum(gains.values()) or 1.0
        for feat, gain in sorted(gains.items(), key=lambda kv: -kv[1]):
            lines.append(f"| {feat} | {gain / total:.3f} |")
        lines.append("")
    timings = report.get("timings_s")
    if timings:
        lines += ["## Build timings (s)", "", "| stage | seconds |", "|---|---:|"]
        lines += [f"| {k} | {v:.2f} |" for k, v in timings.items()]
        lines.append("")
    lines += ["## Definitions", "", DEFINITIONS]
    return "\n".join(lines)
