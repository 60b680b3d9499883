"""Write docs/BENCHMARKS.md from the JSON the benchmarks left in bench-output/.

python bench/render.py [--results bench-output] [--out docs/BENCHMARKS.md]
"""

import argparse
import json
import platform
from pathlib import Path
from typing import Any

HEADER = """# Benchmarks

Measured on the project's development machine: {machine}, 2 cores, 24 GB RAM, shared with other
work (so figures are medians or best-of-3 where stated, and ratios are taken within one run).
Regenerate everything with `make bench` (the large size takes about half an hour); each section
names the command that produced it.
"""


def load(results: Path, name: str) -> Any:
    path = results / name
    return json.loads(path.read_text()) if path.exists() else None


def offline(results: Path) -> list[str]:
    rows = [load(results, f"offline_{s}.json") for s in ("small", "medium", "large")]
    rows = [r for r in rows if r]
    if not rows:
        return []
    stages = list(rows[-1]["timings_s"])
    out = [
        "## Offline job at scale",
        "",
        "`python bench/offline_scale.py --size small|medium|large`: synthetic data from",
        "`recsys data synth`, the whole `recsys build` against a local redis-server, and a plain",
        "implicit ALS fit (64 factors, 15 iterations) on the same events as the reference cost.",
        "",
        "| | " + " | ".join(r["size"] for r in rows) + " |",
        "|---|" + "---:|" * len(rows),
        "| users x items | " + " | ".join(f"{r['users']:,} x {r['items']:,}" for r in rows) + " |",
        "| events | " + " | ".join(f"{r['events']:,}" for r in rows) + " |",
        "| plain ALS fit (s) | " + " | ".join(f"{r['als_fit_s']:.1f}" for r in rows) + " |",
        "| **whole build (s)** | " + " | ".join(f"**{r['build_s']:.0f}**" for r in rows) + " |",
        "| build / ALS fit | " + " | ".join(f"{r['build_over_als']:.1f}x" for r in rows) + " |",
        "| peak RSS of the build (MB) | "
        + " | ".join(f"{r['process_peak_rss_mb']:,}" for r in rows)
        + " |",
        "| ALS candidate index | " + " | ".join(r["index"] for r in rows) + " |",
        "| Redis value per user (bytes) | "
        + " | ".join(f"{r['redis_bytes_per_user_value']:,.0f}" for r in rows)
        + " |",
        "| Redis used memory (MB) | "
        + " | ".join(f"{r['redis_used_memory_mb']:,}" for r in rows)
        + " |",
        "| users -> Redis per s (candidates + write) | "
        + " | ".join(f"{r['candidates_users_per_s']:,.0f}" for r in rows)
        + " |",
        "",
        "Time (s) and peak RSS (MB) per stage:",
        "",
        "| stage | " + " | ".join(r["size"] for r in rows) + " |",
        "|---|" + "---:|" * len(rows),
    ]
    for st in stages:
        cells = [
            f"{r['timings_s'].get(st, 0):.1f} s / {r['peak_rss_mb'].get(st, 0):,.0f} MB"
            for r in rows
        ]
        out.append(f"| {st} | " + " | ".join(cells) + " |")
    return [*out, ""]


def hnsw(results: Path) -> list[str]:
    out: list[str] = []
    for name in sorted(p.name for p in results.glob("hnsw_*.json")):
        data = load(results, name)
        out += [
            f"## HNSW vs exact top-500 ({data['items']:,} items)",
            "",
            f"`python bench/hnsw_recall.py {data['data']}`: recall@500 of each index against exact",
            "inner product on the build's own ALS factors (5,000 sampled users), and throughput of",
            "batched search on both cores (best of 3).",
            "",
            "| index | M | efSearch | recall@500 | users/s |",
            "|---|---:|---:|---:|---:|",
        ]
        for r in data["rows"]:
            out.append(
                f"| {r['index']} | {r.get('M', '')} | {r.get('efSearch', '')} "
                f"| {r['recall@500']:.3f} | {r['users_per_s']:,} |"
            )
        out.append("")
    return out


def ranking_curve(rows: list[dict[str, Any]], path: Path) -> None:
    """NDCG@10 against median ranking time, one point per model size."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 3.6))
    ax = fig.subplots()
    x = [r["rank_ms"]["p50"] for r in rows]
    y = [r["ndcg@10"] for r in rows]
    ax.plot(x, y, marker="o")
    for r, xi, yi in zip(rows, x, y, strict=True):
        ax.annotate(
            f"{r['trees']}x{r['leaves']}", (xi, yi), textcoords="offset points", xytext=(4, 4)
        )
    ax.axhline(rows[0]["als_ndcg@10"], linestyle=":", color="grey", label="ALS")
    ax.axvline(5.0, linestyle="--", color="red", label="5 ms budget")
    ax.set_xlabel("ranking 500 candidates, median ms (features + model)")
    ax.set_ylabel("two-stage NDCG@10")
    ax.legend(loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def ranking(results: Path) -> list[str]:
    data = load(results, "ranking_cost.json")
    if not data:
        return []
    ranking_curve(data["rows"], Path("docs/img/ranking_curve.png"))
    out = [
        "## Ranking cost vs quality",
        "",
        f"`python bench/ranking_cost.py {data['data']}`: for each LightGBM size, a full build on",
        "the leave-last-out training split with exactly that many trees, two-stage NDCG@10 on the",
        "held-out events, and the in-process time to rank one request's candidates (features +",
        "`Booster.predict` on one thread, as in the API), over 300 requests.",
        "",
        "![NDCG@10 against ranking time](img/ranking_curve.png)",
        "",
        "| trees | leaves | NDCG@10 | ALS NDCG@10 | candidates | rank p50 (ms) | rank p95 (ms) "
        "| features p50 (ms) |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in data["rows"]:
        out.append(
            f"| {r['trees']} | {r['leaves']} | {r['ndcg@10']:.4f} | {r['als_ndcg@10']:.4f} "
            f"| {r['candidates']:.0f} | {r['rank_ms']['p50']:.2f} | {r['rank_ms']['p95']:.2f} "
            f"| {r['features_ms']['p50']:.2f} |"
        )
    return [*out, ""]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--results", type=Path, default=Path("bench-output"))
    p.add_argument("--out", type=Path, default=Path("docs/BENCHMARKS.md"))
    p.add_argument("--notes", type=Path, default=Path("bench/NOTES.md"))
    p.add_argument("--loadtest", type=Path, default=Path("bench/LOADTEST.md"))
    p.add_argument("--quality", type=Path, default=Path("bench/QUALITY.md"))
    p.add_argument("--closed-loop", type=Path, default=Path("bench/CLOSED_LOOP.md"))
    args = p.parse_args()
    machine = f"{platform.machine()} Linux, Python {platform.python_version()}"
    parts = [HEADER.format(machine=machine)]
    parts += offline(args.results) + hnsw(args.results) + ranking(args.results)
    # hand-written sections, measured elsewhere
    for fragment in (args.loadtest, args.closed_loop, args.quality, args.notes):
        if fragment.exists():
            parts.append(fragment.read_text())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(parts))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
