"""Peers side by side: published recommenders scored under exactly our protocol and metric code.

    pip install -e '.[peers]' && pip install --no-deps rectools==0.19.0   # or: make peers
    python bench/peers.py [--data NAME=DIR ...] [--out bench-output/peers] [--config FILE]

Without ``--data``: ml-latest-small with release years, the same without them (title and
genres only), both converted from ``../shared/data/ml-latest-small``, and the default synthetic
log (``recsys data synth``).

Protocol, for every row: ``recsys.data.split.leave_last_out`` (each user's last event held out;
among equal timestamps the later row of the log), the test requests of ``recsys eval`` (users
with training events; relevant = their held-out item), items the user has seen never
recommended, and ``recsys.evaluation.ranking_metrics`` for NDCG and HR. The two-stage row is
``recsys eval``'s own (built on the same training events, answers read back from Redis and
ranked by the API's code).

Tuning, for every peer: a validation split cut from the training events only (leave-last-out
again, on the training events), a fixed grid per peer (``GRIDS``: the budget, stated in the
output), the best configuration by validation NDCG@10 refitted on all training events and then
scored once on the test split. The test split is never used to choose anything.

- SASRec (RecTools 0.19, CPU): cross-entropy over the whole catalogue ("SASRec+",
  Klenitskiy & Vasilev, RecSys 2023), 2 blocks, 2 heads, 64 factors, dropout 0.2, each user's
  last 50 events, ids only; the number of epochs (10, 20 or 30) chosen on validation. A small
  budget, set by what 2 shared cores train in minutes: a larger one may score higher.
- EASE (Steck, WWW 2019; RecTools' implementation).
- implicit ALS (recsys.mf.fit_als: the same weighting as our stage 1).
- Markov: first-order next-item chain, P(next | last item) from consecutive pairs of the
  training events, popularity after the chain's items. No hyperparameter.
"""

import argparse
import itertools
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import polars as pl
import scipy.sparse as sp

from recsys.columns import Columns
from recsys.config import ALSConfig, Settings
from recsys.data.dataset import Dataset, write_dataset
from recsys.data.load import load_dataset
from recsys.data.split import leave_last_out
from recsys.evaluation.baselines import als_top_k, pad_rows
from recsys.evaluation.ranking_metrics import ranking_metrics_at_k, summarize
from recsys.evaluation.stats import bootstrap_ci
from recsys.ids import IdIndex
from recsys.mf import interaction_matrix

REPO = Path(__file__).resolve().parents[1]
MOVIELENS = REPO.parent / "shared" / "data" / "ml-latest-small"
K = 50
EPOCH_STEP = 10
SASREC_MAX_LEN = 50
METRICS = (("ndcg", 10), ("hr", 10), ("ndcg", 50), ("hr", 50))
log = logging.getLogger("peers")

# The tuning budget of each peer: every combination is fitted on the validation split.
GRIDS: dict[str, dict[str, Sequence[Any]]] = {
    # each configuration trains once to max_epochs and is scored every EPOCH_STEP epochs
    "sasrec": {"n_factors": (64,), "dropout_rate": (0.2,), "max_epochs": (30,)},
    "ease": {"regularization": (50.0, 150.0, 500.0, 1500.0)},
    "als": {
        "factors": (32, 64, 128),
        "regularization": (0.01, 0.1),
        "alpha": (1.0, 10.0),
    },
    "markov": {},
}


@dataclass(frozen=True)
class Task:
    """One split as a peer sees it: dense ids, time-ordered training events, test requests."""

    train: pl.DataFrame  # user, item as dense indices; timestamp; the log's row order
    n_users: int
    n_items: int
    users: np.ndarray  # int32 [U] users to recommend for
    relevant: list[np.ndarray]  # item indices per user

    @property
    def seen(self) -> sp.csr_matrix:
        t = self.train
        return interaction_matrix(
            t[Columns.user].to_numpy(),
            t[Columns.item].to_numpy(),
            np.ones(t.height, dtype=np.float32),
            self.n_users,
            self.n_items,
        )

    def score(self, recommended: np.ndarray) -> dict[str, Any]:
        """Means over the test users, and NDCG@10's 95% percentile-bootstrap interval over
        them (``recsys.evaluation.stats.bootstrap_ci``, as ``recsys eval`` reports it)."""
        out: dict[str, Any] = {}
        for name, k in METRICS:
            m = ranking_metrics_at_k(recommended, self.relevant, k)
            values = m["ndcg" if name == "ndcg" else "hit_rate"]
            out[f"{name}@{k}"] = round(summarize(values), 5)
            if (name, k) == ("ndcg", 10):
                out["ndcg@10_ci95"] = bootstrap_ci([values]).as_list()
        return out


def make_task(interactions: pl.DataFrame, n_items: int, item_ids: IdIndex) -> Task:
    """Leave-last-out of ``interactions``; test requests as ``recsys eval`` makes them."""
    split = leave_last_out(interactions)
    users = IdIndex.from_values(split.train[Columns.user])
    train = split.train.select(
        pl.Series(Columns.user, users.lookup(split.train[Columns.user])),
        pl.Series(Columns.item, item_ids.lookup(split.train[Columns.item])),
        pl.col(Columns.timestamp),
        pl.col(Columns.weight),
    )
    test = split.test.with_columns(pl.Series("_u", users.lookup(split.test[Columns.user])))
    test = test.filter(pl.col("_u") >= 0)
    grouped = test.group_by("_u", maintain_order=True).agg(pl.col(Columns.item))
    return Task(
        train=train,
        n_users=len(users),
        n_items=n_items,
        users=grouped["_u"].to_numpy().astype(np.int32),
        relevant=[item_ids.lookup(pl.Series(v)).astype(np.int32) for v in grouped[Columns.item]],
    )


# --- peers: each takes (task, params) and returns [len(task.users), K] item indices ----------


def popular_fill(task: Task, rows: list[np.ndarray]) -> np.ndarray:
    """Complete each row with the most watched items it lacks (seen items excluded)."""
    counts = np.bincount(task.train[Columns.item].to_numpy(), minlength=task.n_items)
    popular = np.argsort(-counts, kind="stable")
    seen = task.seen
    out = []
    for u, row in zip(task.users, rows, strict=True):
        had = seen.indices[seen.indptr[u] : seen.indptr[u + 1]]
        pool = popular[: K + len(had) + len(row)]
        extra = pool[~np.isin(pool, had) & ~np.isin(pool, row)]
        out.append(np.concatenate([row, extra])[:K])
    return pad_rows(out, K)


def markov(task: Task, params: dict[str, Any]) -> np.ndarray:
    t = task.train.with_row_index("_row").sort([Columns.user, Columns.timestamp, "_row"])
    pairs = (
        t.select(
            pl.col(Columns.item).alias("a"),
            pl.col(Columns.item).shift(-1).alias("b"),
            (pl.col(Columns.user) == pl.col(Columns.user).shift(-1)).alias("same"),
        )
        .filter(pl.col("same") & (pl.col("a") != pl.col("b")))
        .group_by("a", "b")
        .len()
        .sort(["a", "len", "b"], descending=[False, True, False])
    )
    nxt = {a: g["b"].to_numpy() for (a,), g in pairs.group_by("a", maintain_order=True)}
    last = t.group_by(Columns.user, maintain_order=True).agg(pl.col(Columns.item).last())
    last_of = dict(zip(last[Columns.user].to_list(), last[Columns.item].to_list(), strict=True))
    seen = task.seen
    rows = []
    for u in task.users:
        row = nxt.get(last_of[int(u)], np.empty(0, np.int64))
        rows.append(row[~np.isin(row, seen.indices[seen.indptr[u] : seen.indptr[u + 1]])])
    return popular_fill(task, rows)


def als(task: Task, params: dict[str, Any]) -> np.ndarray:
    cfg = ALSConfig(**params)
    weighted = interaction_matrix(
        task.train[Columns.user].to_numpy(),
        task.train[Columns.item].to_numpy(),
        task.train[Columns.weight].to_numpy(),
        task.n_users,
        task.n_items,
    )
    return als_top_k(weighted, task.users, K, cfg)


def _rectools_dataset(task: Task) -> Any:
    import pandas as pd
    from rectools.dataset import Dataset as RtDataset

    t = task.train
    frame = pd.DataFrame(
        {
            "user_id": t[Columns.user].to_numpy(),
            "item_id": t[Columns.item].to_numpy(),
            "weight": 1.0,
            "datetime": pd.to_datetime(t[Columns.timestamp].to_numpy(), unit="s"),
        }
    )
    return RtDataset.construct(frame)


def _rectools_rows(task: Task, model: Any, dataset: Any) -> np.ndarray:
    reco = model.recommend(
        users=task.users, dataset=dataset, k=K, filter_viewed=True, on_unsupported_targets="warn"
    )
    by_user = {u: g.sort_values("rank")["item_id"].to_numpy() for u, g in reco.groupby("user_id")}
    rows = [by_user.get(int(u), np.empty(0, np.int64)) for u in task.users]
    return popular_fill(task, rows)


def ease(task: Task, params: dict[str, Any]) -> np.ndarray:
    from rectools.models import EASEModel

    dataset = _rectools_dataset(task)
    model = EASEModel(regularization=params["regularization"], num_threads=os.cpu_count() or 1)
    model.fit(dataset)
    return _rectools_rows(task, model, dataset)


def sasrec_model(task: Task, params: dict[str, Any]) -> Any:
    import torch
    from lightning_fabric import seed_everything
    from rectools.models import SASRecModel
    from rectools.models.nn.item_net import IdEmbeddingsItemNet

    seed_everything(0, workers=True, verbose=False)
    torch.set_num_threads(os.cpu_count() or 1)
    lengths = task.train.group_by(Columns.user).len()["len"]
    return SASRecModel(
        n_blocks=2,
        n_heads=2,
        n_factors=params["n_factors"],
        dropout_rate=params["dropout_rate"],
        # each user's last 50 events (SASRec's ML-1M setting is 200; 50 is 4x cheaper on
        # these 2 cores, and what comes next depends most on the last few)
        session_max_len=int(min(SASREC_MAX_LEN, lengths.max() or 1)),
        loss="softmax",
        lr=1e-3,
        batch_size=128,
        deterministic=True,
        item_net_block_types=(IdEmbeddingsItemNet,),
        recommend_torch_device="cpu",
        get_trainer_func=_cpu_trainer,
    )


def sasrec_epochs(task: Task, params: dict[str, Any]) -> Iterator[tuple[int, np.ndarray]]:
    """Train in steps of ``EPOCH_STEP``, answering after each: (epochs so far, answers). One
    training run gives every epoch count of the budget its validation score."""
    model = sasrec_model(task, params)
    dataset = _rectools_dataset(task)
    for done in range(EPOCH_STEP, params["max_epochs"] + 1, EPOCH_STEP):
        model.fit_partial(dataset, min_epochs=EPOCH_STEP, max_epochs=EPOCH_STEP)
        yield done, _rectools_rows(task, model, dataset)


def sasrec(task: Task, params: dict[str, Any]) -> np.ndarray:
    model = sasrec_model(task, params)
    dataset = _rectools_dataset(task)
    model.fit_partial(dataset, min_epochs=params["epochs"], max_epochs=params["epochs"])
    return _rectools_rows(task, model, dataset)


def _cpu_trainer() -> Any:
    from pytorch_lightning import Trainer

    return Trainer(
        max_epochs=EPOCH_STEP,
        accelerator="cpu",
        devices=1,
        deterministic=True,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
    )


PEERS: dict[str, Callable[[Task, dict[str, Any]], np.ndarray]] = {
    "sasrec": sasrec,
    "ease": ease,
    "als": als,
    "markov": markov,
}


# --- running -----------------------------------------------------------------------------------


@dataclass
class PeerResult:
    name: str
    best: dict[str, Any]
    trials: list[dict[str, Any]] = field(default_factory=list)
    test: dict[str, float] = field(default_factory=dict)
    fit_s: float = 0.0


def grid(name: str, quick: bool = False) -> Iterator[dict[str, Any]]:
    space = GRIDS[name]
    for values in itertools.product(*space.values()):
        params = dict(zip(space, values, strict=True))
        if quick:
            yield params | ({"max_epochs": EPOCH_STEP} if "max_epochs" in params else {})
            return
        yield params


@contextmanager
def timed() -> Iterator[list[float]]:
    out = [0.0]
    start = time.perf_counter()
    yield out
    out[0] = time.perf_counter() - start


def _answers(
    name: str, task: Task, params: dict[str, Any]
) -> Iterator[tuple[dict[str, Any], np.ndarray, float]]:
    """(the configuration, its answers, seconds so far) for one grid point: one for most peers,
    one per epoch step for SASRec."""
    start = time.perf_counter()
    if name == "sasrec":
        base = {k: v for k, v in params.items() if k != "max_epochs"}
        for epochs, answers in sasrec_epochs(task, params):
            yield base | {"epochs": epochs}, answers, time.perf_counter() - start
    else:
        yield params, PEERS[name](task, params), time.perf_counter() - start


def run_peer(name: str, dataset: Dataset, item_ids: IdIndex, quick: bool = False) -> PeerResult:
    """Tune on the validation split cut from the training events, then score on the test."""
    n_items = dataset.items.height
    test_task = make_task(dataset.interactions, n_items, item_ids)
    train_events = leave_last_out(dataset.interactions).train
    valid_task = make_task(train_events, n_items, item_ids)
    fit = PEERS[name]
    result = PeerResult(name=name, best={})
    best = -1.0
    points = list(grid(name, quick))
    single = len(points) == 1 and points[0].get("max_epochs", EPOCH_STEP) == EPOCH_STEP
    if single:  # nothing to choose: no validation fit
        only = {k: v for k, v in points[0].items() if k != "max_epochs"}
        result.best = only | ({"epochs": EPOCH_STEP} if "max_epochs" in points[0] else {})
        points = []
    for params in points:
        for point, answers, seconds in _answers(name, valid_task, params):
            scored = valid_task.score(answers)
            result.trials.append({"params": point, "valid": scored, "fit_s": round(seconds, 1)})
            log.info("%s %s: valid NDCG@10 %.4f (%.0f s)", name, point, scored["ndcg@10"], seconds)
            if scored["ndcg@10"] > best:
                best, result.best = scored["ndcg@10"], point
    with timed() as t:
        result.test = test_task.score(fit(test_task, result.best))
    result.fit_s = round(t[0], 1)
    log.info("%s best %s: test NDCG@10 %.4f", name, result.best, result.test["ndcg@10"])
    return result


def two_stage(data_dir: Path, settings: Settings, work: Path) -> dict[str, Any]:
    """``recsys eval``'s report on the same data: the two-stage row and our default ALS row."""
    from eval.run import run_eval
    from recsys.evaluation.protocol import EvalOptions

    report = run_eval(data_dir, work, "leave-last-out", settings, EvalOptions(drift_requests=0))
    res = report.results
    keys = [f"{n}@{k}" for n, k in METRICS]
    ci = report.confidence.intervals if report.confidence else {}
    paired = report.paired["als"]["ndcg@10"] if report.paired else None

    def row(model: str) -> dict[str, Any]:
        interval = ci.get(model, {}).get("ndcg@10")
        return {k: res[model][k] for k in keys} | ({"ndcg@10_ci95": interval} if interval else {})

    return {
        "two_stage": row("two_stage"),
        "als_default": row("als"),
        "two_stage_vs_als": paired.model_dump(mode="json") if paired else None,
        "users": report.users,
    }


def datasets(specs: list[str], work: Path) -> list[tuple[str, Path]]:
    if specs:
        return [(s.split("=", 1)[0], Path(s.split("=", 1)[1])) for s in specs]
    from recsys.data.movielens import convert_movielens
    from recsys.data.synth import generate_synthetic

    out = []
    for name, years in (("ml-latest-small", True), ("ml-latest-small, no release years", False)):
        path = work / ("ml" if years else "ml-noyear")
        write_dataset(convert_movielens(MOVIELENS, release_years=years), path)
        out.append((name, path))
    write_dataset(generate_synthetic(), work / "synth")
    out.append(("synthetic (recsys data synth)", work / "synth"))
    return out


def render(results: dict[str, dict[str, Any]]) -> str:
    """One markdown table: a row per model, NDCG@10 [95% CI] and HR@10 per dataset."""
    names = list(results)
    head = "| model | " + " | ".join(f"{n} NDCG@10 [95% CI] | HR@10" for n in names) + " |"
    sep = "|---|" + "---:|---:|" * len(names)
    rows = ["two_stage", "sasrec", "ease", "als", "markov", "als_default"]
    label = {
        "two_stage": "**two-stage (ours, as served)**",
        "sasrec": "SASRec (RecTools, softmax loss)",
        "ease": "EASE (RecTools)",
        "als": "implicit ALS (tuned)",
        "markov": "Markov (first-order next item)",
        "als_default": "ALS in `recsys eval` (our defaults)",
    }
    lines = [head, sep]
    for r in rows:
        cells = []
        for n in names:
            m = results[n].get(r)
            if not m:
                cells += ["", ""]
                continue
            ci = m.get("ndcg@10_ci95")
            interval = f" [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else ""
            cells += [f"{m['ndcg@10']:.4f}{interval}", f"{m['hr@10']:.4f}"]
        lines.append(f"| {label[r]} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--data", action="append", default=[], metavar="NAME=DIR")
    p.add_argument("--out", type=Path, default=Path("bench-output/peers"))
    p.add_argument("--peers", default=",".join(PEERS), help="comma-separated subset")
    p.add_argument("--config", type=Path, help="settings file for the two-stage row")
    p.add_argument("--no-two-stage", action="store_true")
    p.add_argument("--quick", action="store_true", help="one configuration per peer (smoke run)")
    p.add_argument(
        "--sasrec-max-epochs",
        type=int,
        help="a smaller SASRec epoch budget than GRIDS' (when the machine has no time for it)",
    )
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("pytorch_lightning", "lightning", "lightning.pytorch", "faiss.loader"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.sasrec_max_epochs:
        GRIDS["sasrec"] = dict(GRIDS["sasrec"]) | {"max_epochs": (args.sasrec_max_epochs,)}
    settings = Settings()
    if args.config:
        from recsys.config import read_overrides, with_overrides

        settings = with_overrides(settings, read_overrides(args.config), args.config)
    args.out.mkdir(parents=True, exist_ok=True)
    # rows already measured (an earlier run of other peers or datasets) are kept and updated
    previous = args.out / "peers.json"
    old = json.loads(previous.read_text()) if previous.exists() else {}
    results: dict[str, dict[str, Any]] = old.get("results", {})
    details: dict[str, Any] = {
        "grids": {k: dict(v) for k, v in GRIDS.items()},
        "epoch_step": EPOCH_STEP,
        "datasets": old.get("datasets", {}),
    }
    # Peers read the events only: a dataset whose events and item ids equal an earlier one's
    # (ml-latest-small with and without release years) gets the same peer rows without refitting.
    fitted: dict[tuple[int, int, int], dict[str, PeerResult]] = {}
    with tempfile.TemporaryDirectory(prefix="recsys-peers-") as tmp:
        for name, path in datasets(args.data, Path(tmp)):
            dataset = load_dataset(path)
            item_ids = IdIndex(dataset.items[Columns.item])
            results.setdefault(name, {})
            entry: dict[str, Any] = details["datasets"].get(name, {"peers": {}})
            entry["path"] = str(path)
            events = (
                dataset.interactions.height,
                int(dataset.interactions.hash_rows(seed=0).sum()),
                int(dataset.items.select(Columns.item).hash_rows(seed=0).sum()),
            )
            same = fitted.setdefault(events, {})
            for peer in filter(None, args.peers.split(",")):
                r = same.get(peer) or run_peer(peer, dataset, item_ids, args.quick)
                same[peer] = r
                results[name][peer] = r.test
                entry["peers"][peer] = r.__dict__
            if not args.no_two_stage:
                # recsys eval's full report (CIs, paired tests, candidate recall) kept next to
                # the table
                slug = "".join(c if c.isalnum() else "-" for c in name).strip("-")
                ours = two_stage(path, settings, args.out / f"eval-{slug}")
                results[name] |= {
                    "two_stage": ours["two_stage"],
                    "als_default": ours["als_default"],
                }
                entry["users"] = ours["users"]
                entry["two_stage_vs_als"] = ours["two_stage_vs_als"]
            details["datasets"][name] = entry
            (args.out / "peers.json").write_text(
                json.dumps(details | {"results": results}, indent=2)
            )
    table = render(results)
    (args.out / "peers.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
