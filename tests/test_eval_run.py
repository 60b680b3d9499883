"""``recsys eval`` on a small synthetic log, against a real Redis: the report's contract, its
files, walk-forward folds, champion-vs-challenger, and the CLI arguments."""

import argparse
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from eval.cli import PROTOCOLS, add_eval_arguments, run_from_args
from eval.run import run_compare, run_eval
from recsys.columns import Columns
from recsys.data import split as split_module
from recsys.data.dataset import write_dataset
from recsys.data.synth import generate_synthetic
from recsys.errors import RecsysError
from recsys.evaluation.metric_table import KS, MODEL_NAMES
from recsys.evaluation.protocol import EvalOptions, protocol_splits
from recsys.features import FEATURE_NAMES
from tests.conftest import small_settings

FAST = EvalOptions(resamples=200, permutations=1000, drift_requests=200)
METRICS = ("ndcg", "hr", "recall", "mrr", "coverage", "pop_pct", "pop_bias")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    write_dataset(generate_synthetic(n_users=400, n_items=150, seed=3, events_per_user=20), out)
    return out


@pytest.fixture(scope="module")
def loo(
    data_dir: Path, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict[str, Any], Path]:
    out = tmp_path_factory.mktemp("report")
    report = run_eval(data_dir, out, "leave-last-out", small_settings(redis_url), FAST)
    return report.to_json_dict(), out


def independent_popularity_row(data_dir: Path, ks: tuple[int, ...]) -> dict[str, float]:
    """The popularity baseline's leave-last-out row, computed from the files with polars alone.

    Each user's last event (latest timestamp; among ties the later row once sorted by time, as
    the loader sorts) is held out; items are ranked by training events, ties in catalogue order.
    The held-out item's rank in a user's list is its global rank minus the user's training items
    ranked above it, or no rank at all if the user already watched it."""
    events = (
        pl.read_parquet(data_dir / "interactions.parquet")
        .sort([Columns.timestamp, Columns.user], maintain_order=True)
        .with_row_index("row")
    )
    items = pl.read_parquet(data_dir / "items.parquet").with_row_index("pos")
    multi = events.group_by(Columns.user).len().filter(pl.col("len") >= 2).select(Columns.user)
    held_out = (
        events.join(multi, on=Columns.user)
        .sort([Columns.timestamp, "row"])
        .group_by(Columns.user)
        .agg(pl.col(Columns.item).last(), pl.col("row").last())
    )
    train = events.join(held_out.select("row"), on="row", how="anti")
    ranked = (
        items.join(train.group_by(Columns.item).len("n"), on=Columns.item, how="left")
        .with_columns(pl.col("n").fill_null(0))
        .sort(["n", "pos"], descending=[True, False])
        .with_row_index("global_rank", offset=1)
        .select(Columns.item, "global_rank")
    )
    seen = train.select(Columns.user, Columns.item).unique().join(ranked, on=Columns.item)
    target = held_out.join(ranked, on=Columns.item)
    above = (
        target.join(seen, on=Columns.user, suffix="_seen")
        .group_by(Columns.user)
        .agg(
            (pl.col("global_rank_seen") < pl.col("global_rank")).sum().alias("above"),
            (pl.col(f"{Columns.item}_seen") == pl.col(Columns.item)).any().alias("watched"),
        )
    )
    ranks = target.join(above, on=Columns.user).select(
        pl.when(pl.col("watched"))
        .then(None)
        .otherwise(pl.col("global_rank") - pl.col("above"))
        .alias("rank")
    )["rank"]
    row = {}
    for k in ks:
        hit = ranks.fill_null(10**9) <= k
        rank = ranks.fill_null(1).cast(pl.Float64)
        row[f"ndcg@{k}"] = float((hit * (1.0 / (rank + 1.0).log(2))).mean())  # type: ignore[operator]
        row[f"hr@{k}"] = float(hit.mean())  # type: ignore[arg-type]
        row[f"recall@{k}"] = row[f"hr@{k}"]  # one held-out item per user
        row[f"mrr@{k}"] = float((hit * (1.0 / rank)).mean())  # type: ignore[operator]
    return row


# --------------------------------------------------------------------------- leave-last-out


def test_report_contract(loo: tuple[dict[str, Any], Path]) -> None:
    report, _ = loo
    assert report["protocol"] == "leave-last-out"
    assert report["users"] == 400 and report["ks"] == list(KS)
    assert set(report["results"]) == set(MODEL_NAMES)
    assert {"candidates", "segments_ndcg@10", "confidence", "paired", "drift", "ranker"} <= set(
        report
    )
    for name, row in report["results"].items():
        assert set(row) == {f"{m}@{k}" for m in METRICS for k in KS}, name
        for key, value in row.items():
            low = -1.0 if key.startswith("pop_bias") else 0.0
            assert low <= value <= 1.0, (name, key)
        # binary relevance: at k=1 NDCG, hit rate and MRR are all "is the first item relevant"
        assert row["ndcg@1"] == row["hr@1"] == row["mrr@1"]
        for metric in ("hr", "recall", "mrr", "coverage"):
            values = [row[f"{metric}@{k}"] for k in KS]
            assert values == sorted(values), (name, metric)
    # answers really are 100 deep: the catalogue-wide models keep finding items past 50
    for name in ("popularity", "item_knn", "als"):
        assert report["results"][name]["hr@100"] > report["results"][name]["hr@50"], name


def test_popularity_row_matches_an_independent_computation(
    loo: tuple[dict[str, Any], Path], data_dir: Path
) -> None:
    report, _ = loo
    expected = independent_popularity_row(data_dir, KS)
    got = report["results"]["popularity"]
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-5), key


def test_intervals_and_paired_comparisons(loo: tuple[dict[str, Any], Path]) -> None:
    report, _ = loo
    conf = report["confidence"]
    assert conf["resamples"] == FAST.resamples and conf["level"] == 0.95
    for name, row in report["results"].items():
        for metric in ("ndcg@10", "hr@10"):
            low, high = conf["intervals"][name][metric]
            assert low <= row[metric] <= high and high - low > 0, (name, metric)
    assert set(report["paired"]) == set(MODEL_NAMES) - {"two_stage"}
    for name, metrics in report["paired"].items():
        d = metrics["ndcg@10"]
        assert d["champion"] == pytest.approx(report["results"][name]["ndcg@10"], abs=1e-5)
        assert d["challenger"] == pytest.approx(report["results"]["two_stage"]["ndcg@10"], abs=1e-5)
        assert d["difference"] == pytest.approx(d["challenger"] - d["champion"], abs=1e-4)
        assert d["ci95"][0] <= d["difference"] <= d["ci95"][1]
        assert 0.0 < d["p_value"] <= 1.0 and d["users"] == 400


def test_candidates_and_segments(loo: tuple[dict[str, Any], Path]) -> None:
    report, _ = loo
    cand = report["candidates"]
    depths = [1, 5, 10, 20, 50, 60]  # small settings: 60 candidates per user
    recalls = [cand[f"recall@{d}"] for d in depths]
    assert recalls == sorted(recalls) and cand["recall@60"] == cand["recall"]
    # stage 1's top k is the candidates' first k: the two views of it agree
    assert cand["recall@10"] == report["results"]["stage1"]["recall@10"]
    for name, row in cand["sources"].items():
        alone = [row[f"recall_alone@{d}"] for d in depths]
        assert alone == sorted(alone) and row["recall_alone@60"] == row["recall_alone"], name
    for kind in ("device", "activity"):
        rows = report["segments_ndcg@10"][kind]
        assert sum(r["users"] for r in rows.values()) == report["users"]
        assert all(set(MODEL_NAMES) <= set(r) for r in rows.values())


def test_drift_section(loo: tuple[dict[str, Any], Path]) -> None:
    drift = loo[0]["drift"]
    assert list(drift["features"]) == list(FEATURE_NAMES)
    assert drift["current_requests"] == FAST.drift_requests
    assert 0 < drift["reference_requests"] <= FAST.drift_requests
    assert drift["reference_rows"] > drift["reference_requests"]  # every candidate, not one row
    for name, d in [*drift["features"].items(), ("score", drift["score"])]:
        assert d["psi"] >= 0.0 and d["flag"] in {"stable", "moderate", "major"}, name
    # the candidates' stage-1 rank is uniform on both sides (all 60 of every request)
    assert drift["features"]["stage1_rank"]["flag"] == "stable"


def test_report_files(loo: tuple[dict[str, Any], Path]) -> None:
    report, out = loo
    assert json.loads((out / "report.json").read_text()) == report
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert {"metrics_at_k.png", "candidate_recall.png", "feature_importance.png"} <= set(pngs)
    assert {"segments.png", "drift.png", "paired_differences.png"} <= set(pngs)
    for png in pngs:
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    md = (out / "report.md").read_text()
    assert sorted(re.findall(r"\]\(([^)]+\.png)\)", md)) == pngs
    assert "ALS (exact top-k, seen removed)" in md and "item-kNN" in md
    assert "## Definitions" in md and "ideal DCG" in md and "at least one" in md

    page = (out / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == len(pngs)
    assert not re.search(r'(src|href)="(?!data:)', page)  # nothing to fetch: self-contained
    assert "<table>" in page and "Definitions</h2>" in page
    # every number in the summary table is there, as in the markdown
    assert f"{report['results']['two_stage']['ndcg@10']:.4f}" in page


# --------------------------------------------------------------------------- walk-forward, compare


def test_walk_forward_through_the_cli(data_dir: Path, redis_url: str, tmp_path: Path) -> None:
    argv = ("--protocol", "walk-forward", "--folds", "2", "--fold-days", "20")
    args = _args(str(data_dir), "--out", str(tmp_path), *argv, "--bootstrap", "100", "--no-drift")
    run_from_args(args, small_settings(redis_url))
    report = json.loads((tmp_path / "report.json").read_text())
    folds = report["folds"]
    assert report["protocol"] == "walk-forward" and len(folds) == 2
    assert folds[0]["test_until"] == folds[1]["train_until"]
    assert report["users"] == folds[0]["users"] + folds[1]["users"]
    for name in MODEL_NAMES:
        mean = np.mean([f["results"][name]["ndcg@10"] for f in folds])
        assert report["results"][name]["ndcg@10"] == pytest.approx(mean, abs=1e-5)
    options = EvalOptions(folds=2, fold_days=20)
    splits = protocol_splits(
        pl.read_parquet(data_dir / "interactions.parquet"), "walk-forward", options
    )
    assert [f["train_events"] for f in folds] == [s.train.height for s in splits]
    assert "drift" not in report  # --no-drift
    assert report["confidence"]["resamples"] == 100
    assert (tmp_path / "folds.png").is_file()
    assert "Walk-forward folds" in (tmp_path / "report.md").read_text()


def test_one_walk_forward_fold_is_still_a_walk_forward_report(
    data_dir: Path, redis_url: str, tmp_path: Path
) -> None:
    argv = ("--protocol", "walk-forward", "--folds", "1", "--fold-days", "20")
    args = _args(str(data_dir), "--out", str(tmp_path), *argv, "--bootstrap", "100", "--no-drift")
    run_from_args(args, small_settings(redis_url))
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["protocol"] == "walk-forward"
    assert report["walk_forward"] == {"folds": 1, "fold_days": 20}
    assert len(report["folds"]) == 1 and report["folds"][0]["users"] == report["users"]


def test_compare_two_configs_on_the_same_users(
    data_dir: Path, redis_url: str, tmp_path: Path
) -> None:
    challenger = tmp_path / "challenger.json"
    challenger.write_text(json.dumps({"ranker": {"num_trees": 2, "early_stopping": False}}))
    options = EvalOptions(resamples=100, permutations=500, drift_requests=0)
    report = run_compare(
        data_dir,
        tmp_path / "out",
        "leave-last-out",
        small_settings(redis_url),
        None,
        challenger,
        options,
    ).to_json_dict()
    assert report["mode"] == "compare" and report["users"] == 400
    assert report["settings"] == {
        "champion": {},
        "challenger": {"ranker": {"num_trees": 2, "early_stopping": False}},
    }
    assert report["challenger"]["ranker"]["best_iteration"] == 2
    # stage 1 does not depend on the ranker: same candidates, a zero difference, p = 1
    same = report["paired"]["stage1"]["ndcg@10"]
    assert same["difference"] == 0.0 and same["p_value"] == 1.0
    d = report["paired"]["two_stage"]["ndcg@10"]
    assert d["champion"] == pytest.approx(
        report["champion"]["results"]["two_stage"]["ndcg@10"], abs=1e-5
    )
    assert d["challenger"] == pytest.approx(
        report["challenger"]["results"]["two_stage"]["ndcg@10"], abs=1e-5
    )
    assert d["ci95"][0] <= d["difference"] <= d["ci95"][1]
    md = (tmp_path / "out" / "report.md").read_text()
    assert "Champion vs challenger" in md and "num_trees" in md
    assert (tmp_path / "out" / "report.html").is_file()


# --------------------------------------------------------------------------- CLI arguments


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_eval_arguments(parser)
    return parser.parse_args(list(argv))


def test_light_modules_agree_with_the_library() -> None:
    """eval.cli stays free of heavy imports by repeating the protocol names. KS and the
    metric definitions are no longer repeated: the report reads them from the metric table."""
    from recsys.evaluation import report
    from recsys.evaluation.metric_table import METRICS

    assert PROTOCOLS == split_module.PROTOCOLS
    assert all(m.definition in report.DEFINITIONS for m in METRICS)


def test_cli_arguments() -> None:
    args = _args("data", "--out", "r", "--protocol", "walk-forward", "--folds", "2")
    assert (args.protocol, args.folds, args.fold_days, args.compare) == (
        "walk-forward",
        2,
        30,
        None,
    )
    args = _args("data", "--out", "r", "--compare", "a.json", "b.json")
    assert args.compare == [Path("a.json"), Path("b.json")]
    with pytest.raises(SystemExit):
        _args("data", "--out", "r", "--protocol", "random")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read settings overrides"),
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"als": {"factorz": 3}}', "invalid setting als.factorz"),
        ('{"als": {"factors": -1}}', "invalid setting als.factors"),
    ],
)
def test_bad_compare_files_name_the_file(
    tmp_path: Path, content: str | None, message: str, data_dir: Path
) -> None:
    path = tmp_path / "challenger.json"
    if content is not None:
        path.write_text(content)
    args = _args(str(data_dir), "--out", str(tmp_path / "out"), "--compare", str(path))
    with pytest.raises(RecsysError, match=re.escape(message)) as err:
        run_from_args(args, small_settings("redis://127.0.0.1:1"))
    assert str(path) in str(err.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "argv",
    [("--folds", "0"), ("--fold-days", "0"), ("--bootstrap", "0"), ("--compare", "a", "b", "c")],
)
def test_bad_numbers_are_errors(tmp_path: Path, argv: tuple[str, ...]) -> None:
    args = _args(str(tmp_path), "--out", str(tmp_path / "out"), *argv)
    with pytest.raises(RecsysError, match=re.escape(argv[0])):
        run_from_args(args, small_settings("redis://127.0.0.1:1"))


def test_definitions_cover_every_reported_metric() -> None:
    from recsys.evaluation.report import DEFINITIONS

    text = " ".join(DEFINITIONS)
    for name in ("NDCG@k", "HR@k", "Recall@k", "MRR@k", "coverage@k", "pop pct@k", "pop bias@k"):
        assert name in text
    metrics_md = (Path(__file__).resolve().parents[1] / "docs" / "METRICS.md").read_text()
    for key in ("ndcg@k", "hr@k", "recall@k", "mrr@k", "coverage@k", "pop_pct@k", "pop_bias@k"):
        assert f"`{key}`" in metrics_md, key


def test_the_metrics_doc_lists_the_metric_table() -> None:
    """docs/METRICS.md's metric list is generated from the table (``make report`` rewrites it)."""
    from recsys.evaluation.metric_table import METRICS, with_metrics_markdown

    doc = (Path(__file__).resolve().parents[1] / "docs" / "METRICS.md").read_text()
    assert with_metrics_markdown(doc) == doc, "docs/METRICS.md is stale: run `make report`"
    for m in METRICS:
        assert f"`{m.key}@k`: {m.definition}" in doc


def test_the_metrics_doc_lists_the_online_metric_table() -> None:
    """The same for the online metrics (``recsys online-report``, ``recsys ab report``)."""
    from recsys.evaluation.online_metric_table import (
        ONLINE_METRICS,
        with_online_metrics_markdown,
    )

    doc = (Path(__file__).resolve().parents[1] / "docs" / "METRICS.md").read_text()
    assert with_online_metrics_markdown(doc) == doc, "docs/METRICS.md is stale: run `make report`"
    for m in ONLINE_METRICS:
        assert f"`{m.key}`: {m.definition}" in doc
