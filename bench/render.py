"""Write docs/BENCHMARKS.md from the JSON the benchmarks left in bench-output/.

python bench/render.py [--results bench-output] [--out docs/BENCHMARKS.md]
"""

import argparse
import json
import platform
from pathlib import Path
from typing import Any

from provenance import library_code

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


SHARDED_SIZES = ("small", "m50", "medium", "m500", "large", "xlarge")
SCALE_RESULTS = Path("bench/results/scale")  # the sharded-build runs the docs quote (committed)
BEFORE_14 = "before-14"  # the same benches on the code before issue 14's sequential source


def sharded_runs(results: Path) -> list[dict[str, Any]]:
    """The runs in ``results`` (today's code), then those in its other folders (earlier runs,
    each folder named after what sets it apart), then those in ``results/before-14``."""
    others = sorted(p for p in results.iterdir() if p.is_dir() and p.name != BEFORE_14)
    return [
        r
        for folder in (results, *others, results / BEFORE_14)
        for size in SHARDED_SIZES
        for w in (0, 1, 2)
        if (r := load(folder, f"sharded_{size}_w{w}_cluster.json"))
    ]


def run_name(r: dict[str, Any]) -> str:
    return f"{r['users'] // 1000}k, w{r['workers']}, {str(r.get('commit', '?')).split()[0]}"


def sharded(results: Path) -> list[str]:
    """The build with its per-user stage on 0 (one process), 1 and 2 Ray workers."""
    runs = sharded_runs(results)
    if not runs:
        return []
    out = [
        "## Sharded build",
        "",
        "```bash",
        "OMP_WAIT_POLICY=PASSIVE python bench/sharded_build.py --size small|m50|medium|large \\",
        "    --workers 0|1|2 --out bench/results/scale/sharded_SIZE_wN_cluster.json",
        "python bench/render.py --only sharded   # this section",
        "```",
        "",
        "The whole `recsys build` on synthetic data (`recsys data synth`, seed 1, ~40 events per",
        "user, 10 users per item) with HNSW at every size, writing to a local Redis Cluster",
        "of 3 masters; `--workers 0` is the single-process build, N > 0 runs the per-user stage",
        "(candidates, merge, encoding, Redis writes) as Ray tasks on a local Ray cluster of N",
        "nodes of 1 CPU each (`--ray-address`). The code column is the commit measured; the",
        "rows of `bench/results/scale/` itself come first (today's code, be259c9, whose library",
        "code 9d840af shares), then those of its subfolders: `busy-657757f/` ran beside other",
        "engineers' work, `before-14/` (cf01090, c384f99) before issue 14's sequential source",
        'was merged in. "vs 1 process" compares the per-user stage with the single-process',
        "build of the same size and library code. One run per row, each under the bench lock,",
        "on the 2-core machine shared with other work: each row gives the 1-minute load average",
        "before and after it. Waiting for a core does not add to the workers' CPU seconds per",
        "user, but a busy machine still raised them (shared caches): 852 against 690 us per",
        "user for the 200k single-process build (docs/SCALE.md).",
        "",
        "| users x items | code | workers | whole build (s) | per-user stage (s) | stage users/s "
        "| vs 1 process | users/s per worker (busy) | worker CPU us/user | overhead (s) "
        "| worker peak RSS (MB) | driver peak RSS (MB) | load avg before, after |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    # "vs 1 process": against the single-process build of the same size and library code
    # (commits that differ only in bench/ or docs/ measure the same code)
    code = {c: library_code(c) for c in {str(r.get("commit", "?")) for r in runs}}
    base = {
        (r["size"], code[str(r.get("commit", "?"))]): r["per_user_stage"]["wall_s"]
        for r in runs
        if r["workers"] == 0
    }
    for r in runs:
        st = r["per_user_stage"]
        ws = st["workers"]
        per_worker = " / ".join(f"{w['users_per_busy_s']:,.0f}" for w in ws)
        rss = " / ".join(f"{w['peak_rss_mb']:,.0f}" for w in ws)
        key = (r["size"], code[str(r.get("commit", "?"))])
        vs = f"{base[key] / st['wall_s']:.2f}x" if key in base and st["wall_s"] else "-"
        out.append(
            f"| {r['users']:,} x {r['items']:,} | {str(r.get('commit', '?')).split()[0]} "
            f"| {r['workers'] or '1 process'} "
            f"| {r['build_s']:,.0f} | {st['wall_s']:,.1f} | {st['users_per_s']:,.0f} "
            f"| {vs} | {per_worker} | {st['cpu_us_per_user']:,.0f} "
            f"| {st['overhead_s']:.1f} | {rss} | {r['driver_process_peak_rss_mb']:,} "
            f"| {r['load_average_before'][0]:.1f}, {r['load_average_after'][0]:.1f} |"
        )
    stages = list(dict.fromkeys(st for r in runs for st in r["timings_s"]))
    out += [
        "",
        "Time (s) of every stage of the build, per run (the per-user stage is"
        " `candidates -> redis`; 0.0: the stage did not exist in that code):",
        "",
        "| stage | " + " | ".join(run_name(r) for r in runs) + " |",
        "|---|" + "---:|" * len(runs),
    ]
    for st in stages:
        out.append(
            f"| {st} | " + " | ".join(f"{r['timings_s'].get(st, 0):.1f}" for r in runs) + " |"
        )
    out += [
        "",
        "Inside the per-user stage, seconds of work summed over workers:",
        "",
        "| run | search | merge | encode | write to Redis |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in runs:
        w = r["per_user_stage"]["work_s"]
        out.append(
            f"| {run_name(r)} | {w['search']:.1f} | {w['merge']:.1f} "
            f"| {w['encode']:.1f} | {w['write']:.1f} |"
        )
    out += [
        "",
        "Redis after the build (3 masters; used memory includes the keys' overhead, the value"
        " alone is the encoded state):",
        "",
        "| run | value bytes/user | used bytes/user | per master: keys, used MB "
        "| master CPU us/user written |",
        "|---|---:|---:|---|---:|",
    ]
    for r in runs:
        nodes = "; ".join(f"{n['keys']:,}, {n['used_memory_mb']:,.0f}" for n in r["redis_nodes"])
        out.append(
            f"| {run_name(r)} | {r['redis_value_bytes_per_user']:,.0f} "
            f"| {r['redis_used_bytes_per_user']:,.0f} | {nodes} "
            f"| {r['redis_cpu_us_per_user']:.1f} |"
        )
    out += scale_extras(results)
    return [*out, ""]


def quiet_summary(results: Path, when: str) -> list[str]:
    """The quiet-machine series' summary, written by hand from ``loadtest-quiet/`` (kept in
    ``loadtest-quiet/summary.md``), above the latest series' tables."""
    note = results / "loadtest-quiet" / "summary.md"
    return [note.read_text().rstrip("\n"), ""] if not when and note.exists() else []


def scale_extras(results: Path) -> list[str]:
    """The cluster load test and the ranker's sampling, when their results are there."""
    out: list[str] = []
    for folder, when in ((results, ""), (results / "loadtest-busy", ", busy machine")):
        if not (md := folder / "cluster_loadtest.md").exists():
            continue
        lt = load(folder, "cluster_loadtest.json")
        out += [
            "",
            f"### Load test: 2 API replicas on the Redis Cluster, and on one Redis{when}",
            "",
            *quiet_summary(results, when),
            "```bash",
            " ".join(
                [
                    "OMP_WAIT_POLICY=PASSIVE python bench/cluster_loadtest.py --rounds 3",
                    *lt.get("bench_args", []),
                    "-- \\",
                ]
            ),
            "    " + " ".join(lt["loadtest_args"]),
            "```",
            "",
            f"Code {lt.get('commit', '?')}. The 20k-user log of `make loadtest`; 2 `recsys serve`"
            " replicas of one worker each on a Redis Cluster of 3 masters + 3 replicas"
            " (`cluster`), and 2 more on one redis-server (`single`, AOF everysec as"
            " `recsys build` starts it). Rounds rotate which target goes first. CPU per request"
            " is over the whole `recsys loadtest` command (ramp included) divided by the"
            " measured requests; other cores: processes outside the benchmark. Degraded:"
            " answers that fell back to popular items or stage-1 order because Redis or the"
            " ranker missed its budget.",
            "",
            md.read_text().split("\n", 2)[2].strip(),
        ]
    if (rs := load(results, "ranker_sampling.json")) is not None:
        out += [
            "",
            "### Ranker training: what sampling users costs",
            "",
            "```bash",
            f"OMP_WAIT_POLICY=PASSIVE python bench/ranker_sampling.py {rs['data']} \\",
            f"    --test-users {rs['test_users']} --fractions "
            + ",".join(f"{x['fraction_of_users']:g}" for x in rs["rows"]),
            "```",
            "",
            f"Code {rs.get('commit', '?')}; {rs['users']:,} users, {rs['label_split']} labels"
            f" ({rs['labels_per_user']} per user): {rs['labelled_requests']:,} labelled requests."
            f" {rs['test_users']:,} users held out ({rs['test_requests']:,} requests, scored on"
            f" all their candidates); stage 1's own order scores NDCG@10 {rs['stage1_ndcg@10']:.4f}"
            f" [{rs['stage1_ndcg@10_ci95'][0]:.4f}, {rs['stage1_ndcg@10_ci95'][1]:.4f}] on them."
            " Nested samples of the other users; intervals: 95% bootstrap over the held-out"
            " requests (the difference is paired: the same requests).",
            "",
            "| share of users | users | requests | trainable requests | rows | trees | train (s) "
            "| NDCG@10 [95% CI] | vs the largest [95% CI] |",
            "|---:|---:|---:|---:|---:|---:|---:|---|---|",
        ]
        for x in rs["rows"]:
            lo, hi = x["ndcg@10_ci95"]
            dlo, dhi = x["diff_vs_largest_ci95"]
            out.append(
                f"| {x['fraction_of_users']:.0%} | {x['users']:,} | {x['requests']:,} "
                f"| {x['train_groups']:,} | {x['rows']:,} | {x['trees']} | {x['train_s']:.1f} "
                f"| {x['ndcg@10']:.4f} [{lo:.4f}, {hi:.4f}] "
                f"| {x['diff_vs_largest']:+.4f} [{dlo:+.4f}, {dhi:+.4f}] |"
            )
    return out


def replace_section(doc: str, section: list[str], before: str) -> str:
    """``doc`` with the section whose heading is ``section[0]`` replaced by ``section`` (up to
    the next ``## `` heading), or inserted before the heading ``before`` if it is not there."""
    lines = doc.split("\n")
    heading = section[0]
    if heading in lines:
        start = lines.index(heading)
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines)
        )
    else:
        start = end = lines.index(before) if before in lines else len(lines)
    return "\n".join(lines[:start] + section + lines[end:])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--results", type=Path, default=Path("bench-output"))
    p.add_argument("--out", type=Path, default=Path("docs/BENCHMARKS.md"))
    p.add_argument(
        "--scale-results",
        type=Path,
        default=SCALE_RESULTS,
        help=f"the sharded-build section's results (default {SCALE_RESULTS})",
    )
    p.add_argument("--notes", type=Path, default=Path("bench/NOTES.md"))
    p.add_argument("--loadtest", type=Path, default=Path("bench/LOADTEST.md"))
    p.add_argument("--quality", type=Path, default=Path("bench/QUALITY.md"))
    p.add_argument("--closed-loop", type=Path, default=Path("bench/CLOSED_LOOP.md"))
    p.add_argument(
        "--only",
        choices=("sharded",),
        help="re-render this one section inside the existing document, keeping the others "
        "(whose results may have been measured on another checkout)",
    )
    args = p.parse_args()
    if args.only == "sharded":
        section = sharded(args.scale_results)
        if not section:
            raise SystemExit(f"no sharded_*.json in {args.scale_results}")
        doc = args.out.read_text()
        args.out.write_text(
            replace_section(doc, section, "## HNSW vs exact top-500 (20,000 items)")
        )
        print(f"rewrote the sharded build section of {args.out}")
        return
    machine = f"{platform.machine()} Linux, Python {platform.python_version()}"
    parts = [HEADER.format(machine=machine)]
    parts += offline(args.results) + sharded(args.scale_results) + hnsw(args.results)
    parts += ranking(args.results)
    # hand-written sections, measured elsewhere
    for fragment in (args.loadtest, args.closed_loop, args.quality, args.notes):
        if fragment.exists():
            parts.append(fragment.read_text())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(parts))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
