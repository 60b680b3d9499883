"""Cold start, measured through the API: users the build never saw, after their first events.

    python -m eval.cold_start DATA_DIR [--holdout 0.2] [--events 1,3,5] [--seed 0[,1,...]]
        [--out FILE]

A seeded share of users is held out entirely; the build trains on everybody else. Each held-out
user then arrives at the API (``create_app`` on that build, a real Redis) as a new id, posts
their first ``n`` events through ``POST /events`` (with their own timestamps, devices and
completions), and asks ``GET /recommendations?k=10`` at the time and on the device of their
next event, which is the one scored. Two references: what a cold user got before ranked cold
start, the API's "popular now" list minus the ``n`` watched (``recsys.serving.popular``, read
through the API as a user with no events), and the most watched items of all time in the
training events minus the ``n`` watched (the popularity baseline of ``recsys eval``). Users
need ``max(n) + 1`` events. Ties in time keep the log's row order, as in every protocol here.

A draw holds out about a hundred users on ml-latest-small, too few for one draw to settle a
ratio: ``--seed 0,1,2,3,4`` measures five draws (a build each) and pools their answers, with
95% bootstrap intervals over the users (draws may share users).
"""

import argparse
import json
import logging
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import polars as pl

from recsys.columns import Columns
from recsys.config import Settings
from recsys.data.dataset import Dataset
from recsys.evaluation.ranking_metrics import ranking_metrics_at_k, summarize
from recsys.evaluation.stats import bootstrap_ci, ratio_ci
from recsys.feedback import positives

log = logging.getLogger(__name__)
K = 10


@dataclass(frozen=True)
class ColdUser:
    user_id: str
    events: list[dict[str, Any]]  # time-ordered, as POST /events bodies (user_id left out)


def hold_out_users(
    interactions: pl.DataFrame, fraction: float, min_events: int, seed: int
) -> tuple[pl.DataFrame, list[ColdUser]]:
    """(training events of everyone else, the held-out users with their time-ordered events).

    A held-out user's events are their positive ones (issue 15): what they watched is what they
    post and what the next answer is scored on; everyone else's skips stay in training."""
    liked = positives(interactions)
    counts = liked.group_by(Columns.user).len()
    eligible = counts.filter(pl.col("len") >= min_events)[Columns.user].sort()
    rng = np.random.default_rng(seed)
    n = max(1, round(fraction * counts.height))
    chosen = eligible.gather(np.sort(rng.permutation(len(eligible))[: min(n, len(eligible))]))
    held = pl.col(Columns.user).is_in(chosen.implode())
    train = interactions.filter(~held)
    cold = (
        liked.with_row_index("_row")
        .filter(held)
        .sort([Columns.timestamp, "_row"])
        .group_by(Columns.user, maintain_order=True)
        .agg(Columns.item, Columns.timestamp, Columns.device, Columns.completion)
    )
    users = [
        ColdUser(
            user_id=str(row[Columns.user]),
            events=[
                {"item_id": i, "timestamp": t, "device": d, "completion": c}
                for i, t, d, c in zip(
                    row[Columns.item],
                    row[Columns.timestamp],
                    row[Columns.device],
                    row[Columns.completion],
                    strict=True,
                )
            ],
        )
        for row in cold.iter_rows(named=True)
    ]
    return train, users


def measure(
    dataset: Dataset,
    settings: Settings,
    work: Path,
    fraction: float,
    ns: list[int],
    seed: int,
    answers: dict[int, "ScoredAnswers"] | None = None,
) -> dict[str, Any]:
    """Build without the held-out users, then ask the API for each of them after n events
    (``answers``, when given, receives each n's per-user scores, for pooling draws)."""
    answers = {} if answers is None else answers
    from fastapi.testclient import TestClient

    from api.app import create_app
    from recsys.evaluation.runs import isolated, published_build
    from recsys.store.connect import open_redis
    from recsys.store.keys import Keys

    train, users = hold_out_users(dataset.interactions, fraction, max(ns) + 1, seed)
    counts = train.group_by(Columns.item, maintain_order=True).len()
    all_time = counts.sort("len", descending=True, maintain_order=True)[Columns.item].to_list()
    out: dict[str, Any] = {"held_out_users": len(users), "k": K, "by_events": {}}
    # quality, not speed: deadlines a busy machine cannot miss, so that every answer is the
    # one the API gives when it has the time (a fallback here would measure the machine)
    serve = settings.serve.model_copy(
        update={"deadline_ms": 10_000.0, "redis_timeout_ms": 5_000.0, "event_timeout_ms": 5_000.0}
    )
    with open_redis(
        settings.redis_url,
        work / "redis",
        client_cfg=settings.redis_client,
        server_cfg=settings.redis_server,
    ) as (client, url):
        # a key prefix of its own, and everything removed afterwards, as for `recsys eval`; no
        # impression or event log (issue 15) and no live drift counts (issue 16; a late flush
        # would outlive the cleanup): these answers are a measurement, not traffic
        no_log = settings.log.model_copy(update={"enabled": False})
        no_drift = settings.ui.model_copy(update={"drift_sample_interval_ms": 0.0})
        served = isolated(settings).model_copy(
            update={"redis_url": url, "serve": serve, "log": no_log, "ui": no_drift}
        )
        train_data = Dataset(train, dataset.items)
        with (
            published_build(train_data, client, served, work) as (build, _),
            TestClient(create_app(served, work / "artifacts")) as api,
        ):
            out["build_version"] = build.version
            for n in ns:
                answers[n] = _after_n_events(api, users, n, all_time)
                row = answers[n].summary()
                out["by_events"][str(n)] = row
                log.info(
                    "after %d events: ranked NDCG@10 %.4f, popular now %.4f, popular all time "
                    "%.4f, %d users",
                    n,
                    row["ranked"]["ndcg@10"],
                    row["popular_now"]["ndcg@10"],
                    row["popular_all_time"]["ndcg@10"],
                    row["users"],
                )
            keys = Keys(served.key_prefix)
            if users:
                client.delete(*[keys.events(_cold_id(n, u)) for n in ns for u in users])
    return out


def _cold_id(n: int, user: ColdUser) -> str:
    """The id a held-out user arrives under when fed ``n`` events (a new user each time)."""
    return f"cold-start-{n}-{user.user_id}"


def _after_n_events(
    api: Any, users: list[ColdUser], n: int, all_time: list[Any]
) -> "ScoredAnswers":
    ranked, popular, top, relevant = [], [], [], []
    fallbacks: dict[str, int] = {}
    ids: dict[str, int] = {}

    def index(item_id: Any) -> int:
        return ids.setdefault(str(item_id), len(ids))

    for user in users:
        uid = _cold_id(n, user)
        first, target = user.events[:n], user.events[n]
        watched = {str(e["item_id"]) for e in first}
        # the reference: the answer to a user with no events, minus what this one watched
        plain = api.get(f"/recommendations/{uid}", params={"k": K + n}).json()["items"]
        popular.append([index(i["item_id"]) for i in plain if str(i["item_id"]) not in watched])
        top.append([index(i) for i in all_time[: K + n] if str(i) not in watched])
        for e in first:
            r = api.post("/events", json={"user_id": uid, **e})
            if r.status_code != 202:
                raise RuntimeError(f"POST /events answered {r.status_code}: {r.text}")
        params = {"k": K, "ts": target["timestamp"], "device": target["device"]}
        body = api.get(f"/recommendations/{uid}", params=params).json()
        fallbacks[str(body["fallback"])] = fallbacks.get(str(body["fallback"]), 0) + 1
        ranked.append([index(i["item_id"]) for i in body["items"]])
        relevant.append(np.array([index(target["item_id"])]))
    rows = {"ranked": ranked, "popular_now": popular, "popular_all_time": top}
    per_user = {}
    for name, lists in rows.items():
        padded = np.full((len(lists), K), -1, dtype=np.int64)
        for j, row in enumerate(lists):
            padded[j, : min(K, len(row))] = row[:K]
        m = ranking_metrics_at_k(padded, relevant, K)
        per_user[name] = (m["ndcg"], m["hit_rate"])
    return ScoredAnswers(per_user, fallbacks)


@dataclass(frozen=True)
class ScoredAnswers:
    """Per-user NDCG@10 and HR@10 of each system's answers (ranked and the two references)."""

    per_user: dict[str, tuple[np.ndarray, np.ndarray]]
    fallbacks: dict[str, int]

    @staticmethod
    def pooled(parts: list["ScoredAnswers"]) -> "ScoredAnswers":
        names = parts[0].per_user
        fallbacks: dict[str, int] = {}
        for part in parts:
            for reason, n in part.fallbacks.items():
                fallbacks[reason] = fallbacks.get(reason, 0) + n
        return ScoredAnswers(
            {
                name: tuple(  # type: ignore[misc]
                    np.concatenate([part.per_user[name][m] for part in parts]) for m in (0, 1)
                )
                for name in names
            },
            fallbacks,
        )

    def summary(self) -> dict[str, Any]:
        """Means, 95% bootstrap intervals of NDCG@10, and ranked over the better reference."""
        scored: dict[str, dict[str, Any]] = {}
        means = {name: summarize(ndcg) for name, (ndcg, _) in self.per_user.items()}
        for name, (ndcg, hit) in self.per_user.items():
            ci = bootstrap_ci([ndcg])
            scored[name] = {
                "ndcg@10": round(summarize(ndcg), 5),
                "ndcg@10_ci95": [round(ci.low, 5), round(ci.high, 5)],
                "hr@10": round(summarize(hit), 5),
            }
        best = max(("popular_now", "popular_all_time"), key=lambda n: means[n])
        ratio = None
        if means[best] > 0:
            r = ratio_ci(self.per_user["ranked"][0], self.per_user[best][0])
            ratio = {"ratio": round(r.mean, 3), "ci95": [round(r.low, 3), round(r.high, 3)]}
        return {
            "users": len(self.per_user["ranked"][0]),
            **scored,
            "ratio_to_best_popular_ndcg@10": None if ratio is None else ratio["ratio"],
            "ratio_ci95": None if ratio is None else ratio["ci95"],
            "best_popular": best,
            "fallbacks": self.fallbacks,
        }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.cold_start", description=__doc__)
    p.add_argument("data_dir", type=Path)
    p.add_argument("--holdout", type=float, default=0.2, help="share of users held out")
    p.add_argument("--events", default="1,3,5", help="events fed before asking")
    p.add_argument(
        "--seed", default="0", help="draw of held-out users; several (0,1,2): each, and pooled"
    )
    p.add_argument("--out", type=Path, help="JSON results (default: printed)")
    p.add_argument("--config", type=Path, help="settings file, as for recsys build")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    for noisy in ("httpx", "httpx2"):  # a line per request otherwise
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from recsys.config import read_overrides, with_overrides
    from recsys.data.load import load_dataset

    settings = Settings()
    if args.config:
        settings = with_overrides(settings, read_overrides(args.config), args.config)
    try:
        ns = sorted({int(x) for x in args.events.split(",")})
        seeds = [int(x) for x in args.seed.split(",")]
    except ValueError:
        print("--events and --seed take comma-separated integers", file=sys.stderr)
        return 2
    dataset = load_dataset(args.data_dir)
    draws: dict[str, Any] = {}
    answers: dict[int, list[ScoredAnswers]] = {n: [] for n in ns}
    for seed in seeds:
        scored: dict[int, ScoredAnswers] = {}
        with tempfile.TemporaryDirectory(prefix="recsys-cold-") as work:
            draws[str(seed)] = measure(
                dataset, settings, Path(work), args.holdout, ns, seed, scored
            )
        for n in ns:
            answers[n].append(scored[n])
    if len(seeds) == 1:
        result = draws[str(seeds[0])]
    else:
        pooled = {str(n): ScoredAnswers.pooled(answers[n]).summary() for n in ns}
        result = {"seeds": seeds, "draws": draws, "pooled": pooled}
    result["data"] = str(args.data_dir)
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
