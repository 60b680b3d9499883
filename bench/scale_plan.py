"""The 50M users x 1M items plan, computed from the per-unit costs the scale benchmarks measured.

    python bench/scale_plan.py [--results bench-output] [--out bench-output/scale_plan.json]

Reads ``sharded_{small,m50,large}_w0_cluster.json`` and ``sharded_large_w2_cluster.json``
(bench/sharded_build.py), ``als_scale.json`` (bench/als_scale.py) and ``ranker_sampling.json``
(bench/ranker_sampling.py). Prints markdown: each model, fitted on the two smaller builds
(20k and 50k users) and checked on the 1M-user build it was not fitted on, then the plan. Every
number is either read from a result file (measured) or computed by one of these models
(extrapolated), and the tables say which.

Models:
- per-user stage, worker CPU-seconds per user = a + b ln(items): HNSW search grows with the log of
  the catalogue at a fixed beam; the merge and encoding do not grow with it at all;
- every driver stage (everything but the per-user stage), CPU-seconds = a + b x events: the label
  split, ALS, the training set and the id index are linear in events; the ranker's training is
  the constant part (it samples a fixed number of requests);
- ALS fit seconds = a + b x events and peak bytes = a + b x events (bench/als_scale.py, fitted on
  its two smaller sizes and checked on its largest);
- Redis used bytes per user and master CPU per user written: constants (a user's value does not
  depend on the catalogue: 500 candidates and 20 events).
"""

import argparse
import json
import math
from pathlib import Path
from typing import Any

TARGET_USERS = 50_000_000
TARGET_ITEMS = 1_000_000
EVENTS_PER_USER = 40  # the synthetic logs' density, and the plan's assumption
TARGET_EVENTS = TARGET_USERS * EVENTS_PER_USER
FIT, CHECK = ("small", "m50"), "large"
PER_USER = "candidates -> redis"
WINDOW_H = 4.0  # the nightly window the plan must fit
REDIS_NODE_GB = 24.0  # a master's memory, like this machine
REDIS_DATA_SHARE = 0.75  # maxmemory: room for fragmentation, replication buffers, AOF rewrite


def load(results: Path, name: str) -> Any:
    path = results / name
    return json.loads(path.read_text()) if path.exists() else None


def fit_line(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least squares y = a + b x (exact through two points)."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs
    )
    return my - b * mx, b


def worker_s_per_user(run: dict[str, Any]) -> float:
    """CPU seconds the workers spent per user (search, merge, encode, write). CPU, not wall:
    on this shared machine a worker's wall time includes waiting for a core other processes
    held, which a dedicated worker does not; its Redis waits are a few percent of it (the
    ``write`` share of the stage)."""
    return float(run["per_user_stage"]["cpu_us_per_user"]) / 1e6


def err(predicted: float, measured: float) -> str:
    return f"{(predicted - measured) / measured:+.0%}"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--results", type=Path, default=Path("bench-output"))
    p.add_argument("--out", type=Path, default=Path("bench-output/scale_plan.json"))
    args = p.parse_args()
    runs = {s: load(args.results, f"sharded_{s}_w0_cluster.json") for s in (*FIT, CHECK)}
    missing = [s for s, r in runs.items() if r is None]
    if missing:
        raise SystemExit(f"missing single-process builds: {missing} (bench/sharded_build.py)")
    fit = [runs[s] for s in FIT]
    check = runs[CHECK]
    two = load(args.results, "sharded_large_w2_cluster.json")
    out: dict[str, Any] = {}
    md: list[str] = []

    # -- per-user stage: a + b ln(items)
    a, b = fit_line([math.log(r["items"]) for r in fit], [worker_s_per_user(r) for r in fit])
    pred = a + b * math.log(check["items"])
    meas = worker_s_per_user(check)
    per_user_1m = a + b * math.log(TARGET_ITEMS)
    out["per_user"] = {"a": a, "b": b, "check": [pred, meas], "at_target_items": per_user_1m}
    md += [
        "| model (fitted on 20k and 50k users) | 1M users: predicted (x) | measured (m) | error |",
        "|---|---:|---:|---:|",
        f"| per-user stage, worker CPU-ms per user = {a * 1e3:.3f} + {b * 1e3:.3f} ln(items) "
        f"| {pred * 1e3:.3f} | {meas * 1e3:.3f} | {err(pred, meas)} |",
    ]
    # -- driver stages: a + b events, one line per stage
    stages = [s for s in check["cpu_s"] if s != PER_USER]
    driver: dict[str, tuple[float, float]] = {}
    for st in stages:
        driver[st] = fit_line(
            [float(r["events"]) for r in fit], [float(r["cpu_s"].get(st, 0.0)) for r in fit]
        )
    d_pred = sum(max(0.0, a_ + b_ * check["events"]) for a_, b_ in driver.values())
    d_meas = sum(check["cpu_s"][s] for s in stages)
    md.append(
        f"| driver stages (all but the per-user one), CPU-s = sum over stages of a + b x events "
        f"| {d_pred:,.0f} | {d_meas:,.0f} | {err(d_pred, d_meas)} |"
    )
    for st in stages:
        a_, b_ = driver[st]
        sp = max(0.0, a_ + b_ * check["events"])
        sm = check["cpu_s"][st]
        if sm >= 5:
            md.append(
                f"| - {st}: {a_:.1f} + {b_ * 1e6:.2f} CPU-s per million events "
                f"| {sp:,.0f} | {sm:,.0f} | {err(sp, sm)} |"
            )
    rss = fit_line(
        [float(r["events"]) for r in fit], [float(r["driver_process_peak_rss_mb"]) for r in fit]
    )
    r_pred = rss[0] + rss[1] * check["events"]
    r_meas = float(check["driver_process_peak_rss_mb"])
    md.append(
        f"| driver peak RSS, MB = {rss[0]:.0f} + {rss[1] * 1e6:.1f} per million events "
        f"| {r_pred:,.0f} | {r_meas:,.0f} | {err(r_pred, r_meas)} |"
    )
    # -- redis: constants
    bpu = {s: r["redis_used_bytes_per_user"] for s, r in runs.items()}
    bpu_fit = max(bpu[s] for s in FIT)
    md.append(
        f"| Redis used bytes per user = the larger of the two fits, {bpu_fit:,.0f} "
        f"| {bpu_fit:,.0f} | {bpu[CHECK]:,.0f} | {err(bpu_fit, bpu[CHECK])} |"
    )
    cpu = {s: r["redis_cpu_us_per_user"] for s, r in runs.items()}
    cpu_fit = max(cpu[s] for s in FIT)
    md.append(
        f"| Redis master CPU per user written, us = the larger of the two fits "
        f"| {cpu_fit:,.1f} | {cpu[CHECK]:,.1f} | {err(cpu_fit, cpu[CHECK])} |"
    )
    out["driver"] = {"stages": driver, "check": [d_pred, d_meas], "rss": rss}
    out["redis"] = {"bytes_per_user": bpu, "cpu_us_per_user": cpu}

    # -- ALS
    als = load(args.results, "als_scale.json")
    als_rows = [r for r in als["rows"] if "fit_s" in r] if als else []
    if len(als_rows) >= 3:
        fa, fb = fit_line([r["events"] for r in als_rows[:2]], [r["fit_s"] for r in als_rows[:2]])
        ma, mb = fit_line(
            [r["events"] for r in als_rows[:2]], [r["peak_rss_mb"] for r in als_rows[:2]]
        )
        last = als_rows[-1]
        ev = last["events"]
        fitted_on = " and ".join(f"{r['events'] / 1e6:.0f}M" for r in als_rows[:2])
        md.append(
            f"| one ALS fit (64 factors, 15 sweeps, 2 cores), s = {fa:.1f} + "
            f"{fb * 1e6:.2f} per million events (fitted on {fitted_on}) "
            f"| {ev / 1e6:.0f}M events: {fa + fb * ev:,.0f} "
            f"| {last['fit_s']:,.0f} | {err(fa + fb * ev, last['fit_s'])} |"
        )
        md.append(
            f"| ALS peak RSS, MB = {ma:.0f} + {mb * 1e6:.1f} per million events "
            f"| {ev / 1e6:.0f}M events: {ma + mb * ev:,.0f} | {last['peak_rss_mb']:,.0f} "
            f"| {err(ma + mb * ev, last['peak_rss_mb'])} |"
        )
        out["als"] = {"fit": (fa, fb), "rss_mb": (ma, mb)}
        als_limit_events = (REDIS_NODE_GB * 1024 - ma) / mb
        out["als"]["events_on_24gb"] = als_limit_events
    md.append("")

    # -- the plan
    per_user_h = per_user_1m * TARGET_USERS / 3600
    driver_h = sum(max(0.0, a_ + b_ * TARGET_EVENTS) for a_, b_ in driver.values()) / 3600
    als_stage_h = (
        sum(
            max(0.0, driver[s][0] + driver[s][1] * TARGET_EVENTS)
            for s in ("stage 1 on history", "stage 1 on all events")
            if s in driver
        )
        / 3600
    )
    # half the window for the per-user stage, half for the driver stages before it
    workers = math.ceil(per_user_h / (WINDOW_H / 2))
    redis_gb = bpu_fit * TARGET_USERS / 2**30
    masters = math.ceil(2 * redis_gb / (REDIS_NODE_GB * REDIS_DATA_SHARE))
    master_cpu_h = cpu_fit * 1e-6 * TARGET_USERS / 3600
    out["plan"] = {
        "per_user_worker_hours": per_user_h,
        "driver_hours_2_cores": driver_h,
        "als_stages_hours_2_cores": als_stage_h,
        "workers": workers,
        "redis_gb_one_build": redis_gb,
        "masters": masters,
        "master_cpu_hours": master_cpu_h,
        "driver_rss_gb": (rss[0] + rss[1] * TARGET_EVENTS) / 1024,
    }
    rows = [
        ("events (40 per user)", f"{TARGET_EVENTS / 1e9:.0f} billion", "assumption"),
        ("per-user stage, worker CPU-hours", f"{per_user_h:,.0f}", "(x) per-user model"),
        (
            "driver stages, CPU-hours",
            f"{driver_h:,.1f} (of which stage 1, ALS x 2: {als_stage_h:,.1f})",
            "(x) driver model",
        ),
        (
            f"cores for the driver stages to take the other {WINDOW_H / 2:g} h, if they "
            "parallelised perfectly (ALS does across cores; the label split and the training "
            "set only partly)",
            f"{math.ceil(driver_h / (WINDOW_H / 2))}",
            "(x) CPU-hours / 2 h, a lower bound",
        ),
        (
            "driver peak RSS, GB",
            f"{(rss[0] + rss[1] * TARGET_EVENTS) / 1024:,.0f}",
            "(x) driver RSS model",
        ),
        (
            f"per-user workers (1 CPU each) for the per-user stage to take {WINDOW_H / 2:g} h, "
            f"half the {WINDOW_H:g} h window",
            f"{workers}",
            "(x) worker-hours / 2 h",
        ),
        ("Redis, one build, GB", f"{redis_gb:,.0f}", "(x) bytes/user constant"),
        (
            f"Redis masters of {REDIS_NODE_GB:.0f} GB (two builds live during a swap, "
            f"maxmemory {REDIS_DATA_SHARE:.0%} of the node) + as many replicas",
            f"{masters} + {masters}",
            "(x)",
        ),
        ("Redis master CPU to write one build, hours (spread over the masters)",
         f"{master_cpu_h:,.1f}", "(x) CPU/user constant"),
    ]  # fmt: skip
    md += ["| 50M users x 1M items | value | how |", "|---|---:|---|"]
    md += [f"| {k} | {v} | {h} |" for k, v, h in rows]
    if two:
        st0 = check["per_user_stage"]["wall_s"]
        st2 = two["per_user_stage"]["wall_s"]
        md += [
            "",
            f"1M users (m): per-user stage {st0:,.0f} s in one process, {st2:,.0f} s on 2 Ray "
            f"workers ({st0 / st2:.2f}x); whole build {check['build_s']:,.0f} s vs "
            f"{two['build_s']:,.0f} s.",
        ]
    print("\n".join(md))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
