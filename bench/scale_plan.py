"""The 50M users x 1M items plan, computed from the per-unit costs the scale benchmarks measured,
and the checks of its models on builds they were not fitted on.

    python bench/scale_plan.py [--results bench/results/scale] [--out bench-output/scale_plan.json]

Reads, in ``--results`` (bench/sharded_build.py's JSON, each with the commit it measured):
- ``sharded_{small,m50,medium}_w0_cluster.json``: 20k, 50k and 200k users on the code measured;
- ``sharded_medium_w{1,2}_cluster.json``: 200k users on 1 and 2 Ray workers;
- ``sharded_large_w{0,1,2}_cluster.json``: 1M users on the code measured, where run: the plan's
  model is checked on them (5x the users, items and events it was anchored on);
- ``before-14/sharded_{small,large}_w{0,2}_cluster.json``: the builds before issue 14's
  sequential source (20k and 1M users), from which docs/SCALE.md's first plan was made;
- ``cluster_loadtest.json`` (bench/cluster_loadtest.py), for the serving fleet.

Prints markdown, three parts:
1. the first plan's model (fitted on the 1M-user build before issue 14) against the 200k-user
   build it was not fitted on, on today's code and, where measured, on the code it was fitted on;
2. today's model fitted on 20k and 50k users and checked on 200k; the plan's model (anchored on
   200k users) checked on today's 1M-user builds;
3. the plan from today's model refitted on all three sizes.

Models (every figure the plan prints is one of these, or read from a result):
- per-user stage, worker CPU-seconds per user = a + b ln(items): HNSW search grows with the log
  of the catalogue at a fixed beam (Malkov and Yashunin, TPAMI 2020); the merge, the sources'
  lookups and the encoding do not depend on it;
- the first plan's version of it: the 1M-user build's CPU per user, its search share scaled by
  ln(items) / ln(100k);
- driver stages but ALS, CPU-seconds = a + b x events (the label split, the training set, the
  id index and the sequence tables read every event once; the ranker's training is the
  constant: it samples a fixed number of requests);
- ALS stages (``stage 1 on ...``), CPU-seconds = c x events^k, k fitted (users, items and events
  grow together in these logs, and ALS' cost per event grows with the factors' Gram solves);
- driver peak RSS, MB = a + b x events;
- Redis used bytes per user and master CPU per user written: constants (a user's value is 500
  candidates and 20 events whatever the catalogue).
"""

import argparse
import json
import math
from pathlib import Path
from typing import Any

from provenance import library_code

TARGET_USERS = 50_000_000
TARGET_ITEMS = 1_000_000
EVENTS_PER_USER = 40  # the synthetic logs' density, and the plan's assumption
TARGET_EVENTS = TARGET_USERS * EVENTS_PER_USER
PER_USER = "candidates -> redis"
ALS_STAGES = ("stage 1 on history", "stage 1 on all events")
WINDOW_H = 4.0  # the nightly window the plan must fit
REDIS_NODE_GB = 24.0  # a master's memory, like this machine
REDIS_DATA_SHARE = 0.75  # maxmemory: room for fragmentation, replication buffers, AOF rewrite
SEED_RPS = 150.0  # the load test's rate (issue 11: "150 req/s at p99 <= 30 ms")
FIRST_PLAN_ALS_EXPONENT = 1.27  # docs/SCALE.md: make bench's ALS fits, 0.8M and 8M events


def load(path: Path) -> Any:
    return json.loads(path.read_text()) if path.exists() else None


def fit_line(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least squares y = a + b x (exact through two points)."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs
    )
    return my - b * mx, b


def fit_power(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """y = c x^k, least squares in logs: (c, k)."""
    a, k = fit_line([math.log(x) for x in xs], [math.log(max(y, 1e-9)) for y in ys])
    return math.exp(a), k


def per_user_cpu_s(run: dict[str, Any]) -> float:
    """Worker CPU seconds per user (search, merge, encode, write). CPU, not wall: on this shared
    machine a worker's wall time includes waiting for a core other processes held."""
    return float(run["per_user_stage"]["cpu_us_per_user"]) / 1e6


def search_share(run: dict[str, Any]) -> float:
    work = run["per_user_stage"]["work_s"]
    return float(work["search"]) / sum(float(v) for v in work.values())


def driver_cpu(run: dict[str, Any], als: bool) -> float:
    return sum(
        float(v)
        for st, v in run["cpu_s"].items()
        if st != PER_USER and (st in ALS_STAGES) == als and not st.startswith("inspection")
    )


def err(predicted: float, measured: float) -> str:
    return f"{(predicted - measured) / measured:+.0%}"


def label(run: dict[str, Any]) -> str:
    return f"{run['users'] // 1000}k x {run['items'] // 1000}k ({run.get('commit', '?')})"


class Model:
    """Per-unit cost models fitted on some builds."""

    def __init__(self, runs: list[dict[str, Any]]) -> None:
        self.fitted_on = [r["users"] for r in runs]
        self.per_user = fit_line(
            [math.log(r["items"]) for r in runs], [per_user_cpu_s(r) for r in runs]
        )
        ev = [float(r["events"]) for r in runs]
        self.driver = fit_line(ev, [driver_cpu(r, als=False) for r in runs])
        self.als = fit_power(ev, [driver_cpu(r, als=True) for r in runs])
        self.rss = fit_line(ev, [float(r["driver_process_peak_rss_mb"]) for r in runs])
        self.bytes_per_user = max(float(r["redis_used_bytes_per_user"]) for r in runs)
        self.redis_cpu_us = max(float(r["redis_cpu_us_per_user"]) for r in runs)

    def predict(self, items: float, events: float) -> dict[str, float]:
        a, b = self.per_user
        c, k = self.als
        return {
            "per_user_cpu_ms": (a + b * math.log(items)) * 1e3,
            "driver_cpu_s": self.driver[0] + self.driver[1] * events,
            "als_cpu_s": c * events**k,
            "driver_rss_mb": self.rss[0] + self.rss[1] * events,
            "bytes_per_user": self.bytes_per_user,
            "redis_cpu_us": self.redis_cpu_us,
        }

    def describe(self) -> list[str]:
        a, b = self.per_user
        c, k = self.als
        return [
            f"per-user CPU ms = {a * 1e3:.3f} + {b * 1e3:.4f} ln(items)",
            f"driver CPU-s but ALS = {self.driver[0]:.1f} + {self.driver[1] * 1e6:.2f} "
            "per million events",
            f"ALS CPU-s (2 fits) = {c:.3g} x events^{k:.2f}",
            f"driver peak RSS MB = {self.rss[0]:.0f} + {self.rss[1] * 1e6:.1f} per million events",
        ]


def measured(run: dict[str, Any]) -> dict[str, float]:
    return {
        "per_user_cpu_ms": per_user_cpu_s(run) * 1e3,
        "driver_cpu_s": driver_cpu(run, als=False),
        "als_cpu_s": driver_cpu(run, als=True),
        "driver_rss_mb": float(run["driver_process_peak_rss_mb"]),
        "bytes_per_user": float(run["redis_used_bytes_per_user"]),
        "redis_cpu_us": float(run["redis_cpu_us_per_user"]),
    }


def anchored_predict(big: dict[str, Any], items: float, events: float) -> dict[str, float]:
    """The first plan's model (docs/SCALE.md, from the 1M-user build before issue 14), anchored
    on one measured build: per-user CPU with its search share scaled by ln(items); driver
    stages but ALS proportional to events; ALS as events^1.27; driver RSS plus 187 bytes per
    event (make bench's builds, medium to large); Redis per user constant."""
    share = search_share(big)
    scale = share * math.log(items) / math.log(big["items"]) + (1 - share)
    ratio = events / big["events"]
    return {
        "per_user_cpu_ms": per_user_cpu_s(big) * 1e3 * scale,
        "driver_cpu_s": driver_cpu(big, als=False) * ratio,
        "als_cpu_s": driver_cpu(big, als=True) * ratio**FIRST_PLAN_ALS_EXPONENT,
        "driver_rss_mb": big["driver_process_peak_rss_mb"] + 187e-6 * (events - big["events"]),
        "bytes_per_user": float(big["redis_used_bytes_per_user"]),
        "redis_cpu_us": float(big["redis_cpu_us_per_user"]),
    }


ROWS = (
    ("per_user_cpu_ms", "per-user stage, worker CPU ms per user", "{:.3f}"),
    ("driver_cpu_s", "driver stages but stage 1 and inspection, CPU-s", "{:,.0f}"),
    ("als_cpu_s", "stage 1 (ALS, index, sequence tables), 2 fits, CPU-s", "{:,.0f}"),
    ("driver_rss_mb", "driver peak RSS, MB", "{:,.0f}"),
    ("bytes_per_user", "Redis used bytes per user", "{:,.0f}"),
    ("redis_cpu_us", "Redis master CPU per user written, us", "{:.1f}"),
)


def check_table(title: str, pred: dict[str, float], meas: dict[str, float]) -> list[str]:
    out = [f"| {title} | predicted (x) | measured (m) | error |", "|---|---:|---:|---:|"]
    for key, name, fmt in ROWS:
        out.append(
            f"| {name} | {fmt.format(pred[key])} | {fmt.format(meas[key])} "
            f"| {err(pred[key], meas[key])} |"
        )
    return [*out, ""]


def plan_pair(results: Path) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The 200k- and 1M-user builds on one library code and one worker count, both with the
    per-user stage on Ray, as the plan runs it; None if no such pair. One worker first: alone
    on this 2-core machine, its costs are its own, where two workers share the cores (and
    their caches) with each other and the driver."""
    for w in (1, 2):
        mid = load(results / f"sharded_medium_w{w}_cluster.json")
        big = load(results / f"sharded_large_w{w}_cluster.json")
        if mid and big and library_code(mid["commit"]) == library_code(big["commit"]):
            return mid, big
    return None


def worker_rss_at(mid: dict[str, Any], big: dict[str, Any], items: float) -> float:
    """A worker's peak RSS (MB) at ``items``, on a line in items through two builds' largest
    worker peaks: a worker holds the item side (factors, index, neighbour tables) and one shard
    of users at a time, and the shards are the same size at both."""
    xs = [float(mid["items"]), float(big["items"])]
    ys = [max(float(w["peak_rss_mb"]) for w in r["per_user_stage"]["workers"]) for r in (mid, big)]
    a, b = fit_line(xs, ys)
    return a + b * items


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--results", type=Path, default=Path("bench/results/scale"))
    p.add_argument("--out", type=Path, default=Path("bench-output/scale_plan.json"))
    args = p.parse_args()
    r = args.results
    now = {s: load(r / f"sharded_{s}_w0_cluster.json") for s in ("small", "m50", "medium")}
    if now["medium"] is None:
        raise SystemExit(f"missing the 200k-user single-process build in {r}")
    before = {
        s: load(r / "before-14" / f"sharded_{s}_w0_cluster.json")
        for s in ("small", "medium", "large")
    }
    md: list[str] = []
    out: dict[str, Any] = {}
    check = now["medium"]

    # 1. the first plan's model against 200k users
    big = before["large"]
    if big is not None:
        md += [
            f"**1. The first plan's model** (fitted on the 1M-user build, {big.get('commit')}) "
            f"**on 200k users**, a size it was not fitted on:",
            "",
        ]
        pred = anchored_predict(big, check["items"], check["events"])
        md += check_table(f"200k users, today's code: {label(check)}", pred, measured(check))
        out["first_plan_check"] = {"predicted": pred, "measured": measured(check)}
        if (old := before["medium"]) is not None:
            md += check_table(
                f"200k users, the code it was fitted on: {label(old)}",
                anchored_predict(big, old["items"], old["events"]),
                measured(old),
            )
    # the code change where both codes were measured at the same size
    changes = []
    for s in ("small", "medium"):
        if (old := before.get(s)) is not None and now.get(s) is not None:
            a, b = measured(old), measured(now[s])
            changes.append((s, old, now[s], a, b))
    if changes:
        md += [
            "**Issue 14's code against the code before it**, same data, same machine:",
            "",
            "| build | per-user CPU ms/user | driver CPU-s but ALS | ALS CPU-s | driver RSS MB "
            "| Redis bytes/user |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for _, old, new, a, b in changes:
            md.append(
                f"| {new['users'] // 1000}k users: {old.get('commit')} -> {new.get('commit')} "
                f"| {a['per_user_cpu_ms']:.3f} -> {b['per_user_cpu_ms']:.3f} "
                f"({err(b['per_user_cpu_ms'], a['per_user_cpu_ms'])}) "
                f"| {a['driver_cpu_s']:,.0f} -> {b['driver_cpu_s']:,.0f} "
                f"| {a['als_cpu_s']:,.0f} -> {b['als_cpu_s']:,.0f} "
                f"| {a['driver_rss_mb']:,.0f} -> {b['driver_rss_mb']:,.0f} "
                f"| {a['bytes_per_user']:,.0f} -> {b['bytes_per_user']:,.0f} |"
            )
        md.append("")

    # 2. today's code: a model fitted on 20k and 50k users, checked on 200k
    if now["small"] is not None and now["m50"] is not None:
        small_model = Model([now["small"], now["m50"]])
        pred = small_model.predict(check["items"], check["events"])
        md += ["**2. Today's code, a model fitted on 20k and 50k users, checked on 200k:**", ""]
        md += [f"- {line}" for line in small_model.describe()] + [""]
        md += check_table(f"200k users: {label(check)}", pred, measured(check))
        out["model_check"] = {"predicted": pred, "measured": measured(check)}

    # 2b. the plan's model (anchored on 200k users, below) on today's 1M-user builds, a size
    # it was not fitted on: 5x the users and items, 5x the events
    for w in (0, 1, 2):
        if (big_now := load(r / f"sharded_large_w{w}_cluster.json")) is None:
            continue
        pred = anchored_predict(check, big_now["items"], big_now["events"])
        md += [
            f"**2b. The plan's model, anchored on 200k users, on 1M users** ({label(big_now)}, "
            f"{f'{w} Ray worker(s)' if w else 'one process'}), a size it was not fitted on:",
            "",
        ]
        md += check_table(f"1M users: {label(big_now)}, w{w}", pred, measured(big_now))
        out.setdefault("plan_model_check_1m", {})[f"w{w}"] = {
            "predicted": pred,
            "measured": measured(big_now),
        }

    # 3. the plan: refitted on 200k and 1M users of one code and worker count where both were
    # measured (the 1M build is 5x the items and events the 200k-only model was anchored on,
    # and part 2b shows where that model missed); else anchored on today's 200k-user build
    pair = plan_pair(r)
    if pair is not None:
        mid, big_now = pair
        model = Model([mid, big_now])
        at = model.predict(TARGET_ITEMS, TARGET_EVENTS)
        worker_rss = worker_rss_at(mid, big_now, TARGET_ITEMS)
        basis = f"{label(mid)} and {label(big_now)}, {big_now['workers']} Ray worker(s)"
        md += [f"**3. The plan**: today's models refitted on {basis}:", ""]
        md += [f"- {line}" for line in model.describe()] + [""]
        how = {
            "per_user": "(x) a + b ln(items) through the two builds' worker CPU per user",
            "rss": "(x) line in items through the two builds' worker peaks",
            "driver": "(x) a + b x events through the two builds",
            "als": f"(x) c x events^{model.als[1]:.2f} through the two builds",
            "driver_rss": "(x) line in events through the two builds",
        }
    else:
        at = anchored_predict(check, TARGET_ITEMS, TARGET_EVENTS)
        two = load(r / "sharded_medium_w2_cluster.json")
        worker_rss = (
            max(w["peak_rss_mb"] for w in two["per_user_stage"]["workers"]) if two else float("nan")
        )
        md += [
            f"**3. The plan**: the same model anchored on today's 200k-user build "
            f"({label(check)}):",
            "",
        ]
        how = {
            "per_user": "(x) 200k users' CPU per user, its search share scaled by ln(1M) / ln(20k)",
            "rss": "(m) 200k users, 2 workers; a worker holds the item side and one shard",
            "driver": "(x) proportional to events",
            "als": f"(x) events^{FIRST_PLAN_ALS_EXPONENT}",
            "driver_rss": "(x) + 187 bytes per event",
        }
    per_user_h = at["per_user_cpu_ms"] / 1e3 * TARGET_USERS / 3600
    driver_h = at["driver_cpu_s"] / 3600
    als_h = at["als_cpu_s"] / 3600
    workers = math.ceil(per_user_h / (WINDOW_H / 2))
    redis_gb = at["bytes_per_user"] * TARGET_USERS / 2**30
    masters = math.ceil(2 * redis_gb / (REDIS_NODE_GB * REDIS_DATA_SHARE))
    master_cpu_h = at["redis_cpu_us"] * 1e-6 * TARGET_USERS / 3600
    rows = [
        ("events (40 per user)", f"{TARGET_EVENTS / 1e9:.0f} billion", "assumption"),
        ("per-user stage, worker CPU ms per user at 1M items", f"{at['per_user_cpu_ms']:.3f}",
         how["per_user"]),
        ("per-user stage, worker CPU-hours", f"{per_user_h:,.1f}", "(x) x 50M users"),
        (f"Ray workers (1 CPU each) for the per-user stage in {WINDOW_H / 2:g} h",
         f"{workers}", f"(x) CPU-hours / {WINDOW_H / 2:g} h, rounded up"),
        ("worker peak RSS, MB", f"{worker_rss:,.0f}", how["rss"]),
        ("driver stages but stage 1 and inspection, CPU-hours", f"{driver_h:,.1f}",
         how["driver"]),
        ("stage 1 (ALS, index, sequence tables; 2 fits), CPU-hours", f"{als_h:,.0f}",
         how["als"]),
        ("driver peak RSS, GB", f"{at['driver_rss_mb'] / 1024:,.0f}", how["driver_rss"]),
        ("Redis, one build, GB", f"{redis_gb:,.0f}", "(x) bytes/user constant"),
        (f"Redis masters of {REDIS_NODE_GB:.0f} GB (two builds live during a swap, maxmemory "
         f"{REDIS_DATA_SHARE:.0%}) + as many replicas", f"{masters} + {masters}", "(x)"),
        ("Redis master CPU to write one build, hours (spread over the masters)",
         f"{master_cpu_h:,.1f}", "(x) CPU/user constant"),
    ]  # fmt: skip
    md += ["| 50M users x 1M items | value | how |", "|---|---:|---|"]
    md += [f"| {k} | {v} | {h} |" for k, v, h in rows]
    out["plan"] = {
        "at_target": at,
        "per_user_worker_hours": per_user_h,
        "workers": workers,
        "driver_hours": driver_h,
        "als_hours": als_h,
        "redis_gb_one_build": redis_gb,
        "masters": masters,
        "master_cpu_hours": master_cpu_h,
        "worker_peak_rss_mb": worker_rss,
    }
    lt = load(r / "cluster_loadtest.json")
    if lt:
        runs = [x for x in lt["runs"] if x["target"] == "cluster"]
        server = sorted(x["server_cpu_ms_per_request"] for x in runs)[len(runs) // 2]
        redis = sorted(x["redis_cpu_ms_per_request"] for x in runs)[len(runs) // 2]
        md += [
            "",
            f"Serving (m, bench/cluster_loadtest.py, {SEED_RPS:g} req/s on 2 replicas over the "
            f"3 + 3 cluster): {server:.2f} ms of API CPU and {redis:.2f} ms of Redis CPU (all 6 "
            f"nodes) per request, medians of {len(runs)} runs. (x) per 1,000 req/s: "
            f"{server:.2f} API cores and {redis:.2f} Redis cores at full use; the fleet keeps "
            "them at most half busy, as the load test's replicas were.",
        ]
        out["serving"] = {"api_cpu_ms": server, "redis_cpu_ms": redis}
    print("\n".join(md))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
