"""recsys tune: a tiny search end to end, its validation split, and --config on build/eval."""

import json
from pathlib import Path

import polars as pl
import pytest

from cli.main import main
from recsys.config import Settings, read_overrides, with_overrides
from recsys.data.dataset import write_dataset
from recsys.data.synth import generate_synthetic
from recsys.evaluation.protocol import split_for_protocol
from recsys.tuning import validation_split


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data")
    write_dataset(generate_synthetic(n_users=250, n_items=100, seed=3, events_per_user=15), path)
    return path


def test_validation_split_never_reads_the_evaluation_split(data_dir: Path) -> None:
    from recsys.data.load import load_dataset

    dataset = load_dataset(data_dir)
    for protocol in ("leave-last-out", "temporal"):
        evaluation = split_for_protocol(dataset.interactions, protocol)
        valid = validation_split(dataset, protocol)
        seen = pl.concat([valid.train, valid.test])
        # every event a trial reads is a training event of the evaluation split
        assert seen.join(evaluation.test, on=list(seen.columns), how="semi").is_empty()
        assert seen.height <= evaluation.train.height
        assert valid.test.height > 0


def test_tune_writes_a_config_that_build_and_eval_accept(
    data_dir: Path, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECSYS_ALS__FACTORS", "8")
    monkeypatch.setenv("RECSYS_CANDIDATES__PER_USER", "40")
    monkeypatch.setenv("RECSYS_RANKER__NUM_THREADS", "1")
    monkeypatch.setenv("RECSYS_RANKER__MIN_DATA_IN_LEAF", "5")
    out = tmp_path / "tune"
    argv = ["tune", str(data_dir), "--trials", "2", "--out", str(out), "--redis-url", redis_url]
    assert main(argv) == 0
    trials = json.loads((out / "trials.json").read_text())
    assert [t["number"] for t in trials["trials"]] == [0, 1]
    assert all(0.0 <= t["ndcg_at_10"] <= 1.0 for t in trials["trials"])
    # trial 0 is the starting settings (env included), so the gain over them is reported
    assert trials["trials"][0]["overrides"]["als"]["factors"] == 8
    assert trials["start_ndcg@10"] == trials["trials"][0]["ndcg_at_10"]
    assert trials["best_ndcg@10"] == max(t["ndcg_at_10"] for t in trials["trials"])
    assert (out / "trials.md").read_text().count("\n| ") >= 3  # header + 2 trials

    best = read_overrides(out / "best.json")
    tuned = with_overrides(Settings(), best, out / "best.json")
    assert tuned.als.factors == best["als"]["factors"]

    artifacts = tmp_path / "artifacts"
    argv = ["build", str(data_dir), "--artifacts", str(artifacts), "--redis-url", redis_url]
    assert main([*argv, "--config", str(out / "best.json")]) == 0
    [manifest] = artifacts.glob("*/manifest.json")
    config = json.loads(manifest.read_text())["config"]
    assert config["als"] == tuned.model_dump(mode="json")["als"]
    assert config["ranker"]["num_leaves"] == best["ranker"]["num_leaves"]
    assert config["candidates"]["sequence"]["window"] == best["candidates"]["sequence"]["window"]


def test_config_file_errors_are_one_line(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"als": {"factorz": 3}}')
    argv = ["eval", str(data_dir), "--out", str(tmp_path / "r"), "--config", str(bad)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "als.factorz" in err and str(bad) in err
    assert main(["tune", str(data_dir), "--trials", "0"]) == 2
    assert "--trials" in capsys.readouterr().err
    missing = tmp_path / "absent.json"
    assert (
        main(["build", str(data_dir), "--artifacts", str(tmp_path), "--config", str(missing)]) == 2
    )
    assert "cannot read" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
