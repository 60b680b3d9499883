"""The 50M users x 1M items plan, computed from the per-unit costs the scale benchmarks measured.

    python bench/scale_plan.py [--results bench-output] [--out bench-output/scale_plan.json]

Reads ``sharded_*_cluster.json`` (bench/sharded_build.py), ``als_scale.json``
(bench/als_scale.py) and ``ranker_sampling.json`` (bench/ranker_sampling.py); prints the
models, their check on a size they were not fitted on, and the plan as markdown tables
(docs/SCALE.md quotes them). Every number it prints is either measured (read from a result
file) or extrapolated by one of the models below, and says which.

Models (each fitted on the two smaller sizes, checked on the largest):
- per-user stage, worker-seconds per user = a + b ln(items): HNSW search grows with the log of
  the catalogue at a fixed beam, the merge and encoding do not grow with it at all;
- driver stages (everything but the per-user stage) = c x events, and the driver's peak RSS =
  d + e x events: ALS, the label split, the training set and the id index are linear in events;
- Redis used bytes per user and master CPU per user written: constants (a user's value does
  not depend on the catalogue: 500 candidates of 7 bytes and 20 events of 10 bytes).
"""

import argparse
import json
import math
from pathlib import Path
from typing import Any

TARGET_USERS = 50_000_000
TARGET_ITEMS = 1_000_000
EVENTS_PER_USER = 40  # the synthetic logs' density, and the plan's assumption
SIZES = ("medium", "m500", "large", "xlarge")


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


def per_worker_s_per_user(run: dict[str, Any]) -> float:
    ws = run["per_user_stage"]["workers"]
    return sum(w["busy_s"] for w in ws) / sum(w["users"] for w in ws)


def driver_s(run: dict[str, Any]) -> float:
    return sum(v for k, v in run["timings_s"].items() if k != "candidates -> redis")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--results", type=Path, default=Path("bench-output"))
    p.add_argument("--out", type=Path, default=Path("bench-output/scale_plan.json"))
    p.add_argument("--workers-for-model", type=int, default=1)
    args = p.parse_args()
    runs = {
        size: r
        for size in SIZES
        if (r := load(args.results, f"sharded_{size}_w{args.workers_for_model}_cluster.json"))
    }
    fit_sizes, check_size = list(runs)[:2], list(runs)[-1]
    fit = [runs[s] for s in fit_sizes]
    check = runs[check_size]
    lines: list[str] = []
    out: dict[str, Any] = {}

    # per-user stage
    a, b = fit_line([math.log(r["items"]) for r in fit], [per_worker_s_per_user(r) for r in fit])
    predicted = a + b * math.log(check["items"])
    measured = per_worker_s_per_user(check)
    per_user_target = a + b * math.log(TARGET_ITEMS)
    out["per_user"] = {
        "model": f"{a:.3e} + {b:.3e} ln(items) worker-s per user",
        "check": {"size": check_size, "predicted": predicted, "measured": measured},
        "at_1M_items": per_user_target,
    }
    # driver
    c = sum(driver_s(r) for r in fit) / sum(r["events"] for r in fit)
    d, e = fit_line(
        [float(r["events"]) for r in fit], [float(r["driver_process_peak_rss_mb"]) for r in fit]
    )
    out["driver"] = {
        "time_model": f"{c * 1e6:.2f} s per million events",
        "rss_model": f"{d:.0f} MB + {e * 1e6:.1f} MB per million events",
        "check": {
            "size": check_size,
            "time_predicted": c * check["events"],
            "time_measured": driver_s(check),
            "rss_predicted": d + e * check["events"],
            "rss_measured": check["driver_process_peak_rss_mb"],
        },
    }
    # redis
    bytes_per_user = max(r["redis_used_bytes_per_user"] for r in runs.values())
    cpu = [r["redis_cpu_us_per_user"] for r in runs.values() if r.get("redis_cpu_us_per_user")]
    out["redis"] = {"used_bytes_per_user": bytes_per_user, "cpu_us_per_user": cpu}
    als = load(args.results, "als_scale.json")
    if als:
        rows = [r for r in als["rows"] if "fit_s" in r]
        out["als"] = {
            "fit_s_per_million_events": [r["fit_s_per_million_events"] for r in rows],
            "bytes_per_event": [r["bytes_per_event"] for r in rows],
            "largest_events": max(r["events"] for r in rows),
        }
    events = TARGET_USERS * EVENTS_PER_USER
    out["target"] = {
        "users": TARGET_USERS,
        "items": TARGET_ITEMS,
        "events": events,
        "per_user_stage_worker_hours": per_user_target * TARGET_USERS / 3600,
        "driver_hours_on_2_cores": c * events / 3600,
        "driver_rss_gb": (d + e * events) / 1024,
        "redis_gb_one_build": bytes_per_user * TARGET_USERS / 2**30,
    }
    lines.append(json.dumps(out, indent=2))
    print("\n".join(lines))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
