"""``recsys eval DATA --out DIR``: load the data, run the library's build-and-score loop
(``recsys.evaluation.runs``), write the report (``report.json``, ``report.md`` with its PNG plots,
a self-contained ``report.html``) and log the headline numbers."""

import logging
from pathlib import Path

from recsys.config import Settings, read_overrides, with_overrides
from recsys.data.load import load_dataset
from recsys.evaluation.protocol import DEFAULT_OPTIONS, EvalOptions, Protocol
from recsys.evaluation.records import CompareReport, EvalReport
from recsys.evaluation.report import write_report
from recsys.evaluation.runs import compare_configs, evaluate_protocol

log = logging.getLogger(__name__)


def run_eval(
    data_dir: Path,
    out_dir: Path,
    protocol: Protocol,
    settings: Settings,
    options: EvalOptions = DEFAULT_OPTIONS,
    label: str | None = None,
) -> EvalReport:
    """Evaluate one configuration under ``protocol``; returns the report it wrote."""
    dataset = load_dataset(data_dir)
    report = evaluate_protocol(dataset, protocol, settings, options)
    report = report.model_copy(update={"dataset": label or str(data_dir)})
    write_report(report, out_dir)
    res = report.results
    log.info(
        "NDCG@10: popularity %.4f, item-kNN %.4f, ALS %.4f, two-stage %.4f -> %s",
        res["popularity"]["ndcg@10"],
        res["item_knn"]["ndcg@10"],
        res["als"]["ndcg@10"],
        res["two_stage"]["ndcg@10"],
        out_dir / "report.md",
    )
    return report


def run_compare(
    data_dir: Path,
    out_dir: Path,
    protocol: Protocol,
    settings: Settings,
    champion: Path | None,
    challenger: Path,
    options: EvalOptions = DEFAULT_OPTIONS,
    label: str | None = None,
) -> CompareReport:
    """Champion and challenger configurations (JSON files of ``Settings`` overrides; no champion
    file: the settings as they are) built on the same splits and scored on the same users."""
    overrides = {
        "champion": read_overrides(champion) if champion else {},
        "challenger": read_overrides(challenger),
    }
    champion_settings = with_overrides(settings, overrides["champion"], champion)
    challenger_settings = with_overrides(settings, overrides["challenger"], challenger)
    dataset = load_dataset(data_dir)
    report = compare_configs(
        dataset, protocol, champion_settings, challenger_settings, overrides, options
    )
    report = report.model_copy(update={"dataset": label or str(data_dir)})
    write_report(report, out_dir)
    diff = report.paired["two_stage"]["ndcg@10"]
    log.info(
        "two-stage NDCG@10: champion %.4f, challenger %.4f (diff %+.4f, p=%.4f) -> %s",
        diff.champion,
        diff.challenger,
        diff.difference,
        diff.p_value,
        out_dir / "report.md",
    )
    return report
