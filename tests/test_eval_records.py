"""Typed records keep the JSON on disk: committed reports and manifests in the format builds have
always written read back, and write out again byte for byte."""

import json
from pathlib import Path
from typing import Any

import pytest

from recsys.artifacts import BuildManifest, read_manifest, write_manifest
from recsys.errors import ArtifactError
from recsys.evaluation.records import CompareReport, EvalReport, read_report

REPO = Path(__file__).resolve().parents[1]
REPORTS = sorted((REPO / "docs" / "reports").glob("*/report.json"))


@pytest.mark.parametrize("path", REPORTS, ids=[p.parent.name for p in REPORTS])
def test_committed_reports_read_back_unchanged(path: Path) -> None:
    text = path.read_text()
    report = read_report(json.loads(text))
    assert isinstance(report, EvalReport)
    assert json.dumps(report.to_json_dict(), indent=2) + "\n" == text
    # typed access to what the files hold under keys that are not Python names
    assert report.segments and report.ranker.valid_ndcg_at_10 > 0
    assert report.candidates.recall_at[max(report.candidates.recall_at)] == report.candidates.recall


def test_a_compare_report_reads_back() -> None:
    single = json.loads(REPORTS[0].read_text())
    paired = {"two_stage": single["paired"]["als"]}
    data = {
        "protocol": single["protocol"],
        "mode": "compare",
        "users": single["users"],
        "ks": single["ks"],
        "settings": {"champion": {}, "challenger": {"als": {"factors": 8}}},
        "paired": paired,
        "champion": single,
        "challenger": single,
        "dataset": "d",
    }
    report = read_report(data)
    assert isinstance(report, CompareReport)
    assert report.to_json_dict() == data


MANIFEST: dict[str, Any] = {
    "build_version": "20261125T102937Z-f14210",
    "created_at": "2026-11-25T10:29:40Z",
    "data": {"users": 610, "items": 9742, "events": 100226, "first_ts": 1, "last_ts": 2},
    "candidates": {
        "users_written": 610,
        "bytes_per_user": 3671.0,
        "candidates_per_user": 500.0,
        "users_per_s": 2000.5,
        "index": "exact",
    },
    "ranker": {
        "label_split": "last-event",
        "cut_ts": None,
        "label_users": 609,
        "groups_with_label": 372,
        "rows": 37000,
        "train_groups": 298,
        "valid_groups": 74,
        "best_iteration": 26,
        "valid_ndcg@10": 0.2376,
        "features": ["stage1_score"],
        "feature_importance_gain": {"stage1_score": 1.0},
    },
    "config": {"key_prefix": "recsys", "candidates": {"history_len": 20}},
    "timings_s": {"index ids": 0.01},
    "peak_rss_mb": {"index ids": 300.0},
}


def test_manifests_of_earlier_builds_load(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps(MANIFEST, indent=2))
    manifest = read_manifest(tmp_path)
    assert manifest.ranker.valid_ndcg_at_10 == 0.2376 and manifest.history_len == 20
    assert manifest.to_json_dict() == MANIFEST
    # a key this version does not know survives a read and a write
    newer = MANIFEST | {"shards": 4}
    write_manifest(tmp_path, BuildManifest.model_validate(newer))
    assert json.loads((tmp_path / "manifest.json").read_text()) == newer
    # the first write of a build has no timings yet
    first = {k: v for k, v in MANIFEST.items() if k not in ("timings_s", "peak_rss_mb")}
    assert BuildManifest.model_validate(first).timings_s == {}


def test_a_broken_manifest_is_an_artifact_error(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps({"build_version": "x"}))
    with pytest.raises(ArtifactError, match="not a readable build manifest"):
        read_manifest(tmp_path)
