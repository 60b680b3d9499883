"""``recsys eval DATA --out DIR``: hold out, build on the rest, score what is served, write the
report (``report.json``, ``report.md`` with its PNG plots, a self-contained ``report.html``).

Every build gets a Redis key prefix of its own, deleted afterwards, so evaluating never touches
the builds that serving reads; a walk-forward fold or a compared configuration is one more build.
"""

import json
import logging
import secrets
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis

from recsys.config import Settings, with_overrides
from recsys.data.dataset import Dataset
from recsys.data.load import load_dataset
from recsys.data.split import Split
from recsys.errors import RecsysError
from recsys.evaluation import (
    DEFAULT_OPTIONS,
    EvalOptions,
    Evaluation,
    Protocol,
    compare_report,
    evaluate,
    protocol_report,
    protocol_splits,
    train_dataset,
)
from recsys.pipeline import run_build
from recsys.plots import render_plots
from recsys.report import render_html, render_markdown
from recsys.serving import ServingModel
from recsys.store.connect import open_redis
from recsys.store.keys import Keys
from recsys.store.user_store import delete_build

log = logging.getLogger(__name__)


def run_eval(
    data_dir: Path,
    out_dir: Path,
    protocol: Protocol,
    settings: Settings,
    options: EvalOptions = DEFAULT_OPTIONS,
    label: str | None = None,
) -> dict[str, Any]:
    """Evaluate one configuration under ``protocol``; returns the report it wrote."""
    dataset = load_dataset(data_dir)
    splits = protocol_splits(dataset.interactions, protocol, options)
    [evaluations] = evaluate_configs(dataset, splits, [settings], options, drift=True)
    report = protocol_report(evaluations, options) | {"dataset": label or str(data_dir)}
    write_report(report, out_dir)
    res = report["results"]
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
) -> dict[str, Any]:
    """Champion and challenger configurations (JSON files of ``Settings`` overrides; no champion
    file: the settings as they are) built on the same splits and scored on the same users."""
    overrides = {
        "champion": read_overrides(champion) if champion else {},
        "challenger": read_overrides(challenger),
    }
    configs = [
        with_overrides(settings, overrides["champion"], champion),
        with_overrides(settings, overrides["challenger"], challenger),
    ]
    dataset = load_dataset(data_dir)
    splits = protocol_splits(dataset.interactions, protocol, options)
    champ, chall = evaluate_configs(dataset, splits, configs, options, drift=False)
    report = compare_report(champ, chall, overrides, options) | {"dataset": label or str(data_dir)}
    write_report(report, out_dir)
    diff = report["paired"]["two_stage"]["ndcg@10"]
    log.info(
        "two-stage NDCG@10: champion %.4f, challenger %.4f (diff %+.4f, p=%.4f) -> %s",
        diff["champion"],
        diff["challenger"],
        diff["difference"],
        diff["p_value"],
        out_dir / "report.md",
    )
    return report


def read_overrides(path: Path) -> dict[str, Any]:
    """A JSON object of ``Settings`` fields (nested sections as objects), e.g.
    ``{"als": {"factors": 128}, "ranker": {"num_leaves": 63}}``."""
    try:
        value = json.loads(path.read_text())
    except OSError as e:
        raise RecsysError(f"{path}: cannot read settings overrides: {e.strerror}") from e
    except json.JSONDecodeError as e:
        raise RecsysError(f"{path}: not valid JSON: {e.msg} (line {e.lineno})") from e
    if not isinstance(value, dict):
        raise RecsysError(f"{path}: settings overrides must be a JSON object of Settings fields")
    return value


def _isolated(settings: Settings) -> Settings:
    """A key prefix of its own: evaluating never touches the builds that serving reads."""
    return settings.model_copy(
        update={
            "key_prefix": f"{settings.key_prefix}-eval-{secrets.token_hex(4)}",
            "keep_builds": 1,
        }
    )


def evaluate_configs(
    dataset: Dataset,
    splits: Sequence[Split],
    configs: Sequence[Settings],
    options: EvalOptions,
    drift: bool,
) -> list[list[Evaluation]]:
    """``[config][split]``: one build and evaluation per configuration and split."""
    isolated = [_isolated(s) for s in configs]
    out: list[list[Evaluation]] = [[] for _ in configs]
    with (
        tempfile.TemporaryDirectory(prefix="recsys-eval-") as work,
        open_redis(configs[0].redis_url, Path(work) / "redis") as (client, _),
    ):
        for split in splits:
            if split.fold is not None:
                log.info("walk-forward fold %d/%d", split.fold + 1, len(splits))
            train = train_dataset(dataset, split)
            for j, settings in enumerate(isolated):
                out[j].append(
                    _build_and_evaluate(train, split, client, settings, Path(work), options, drift)
                )
    return out


def _build_and_evaluate(
    train: Dataset,
    split: Split,
    client: redis.Redis,
    settings: Settings,
    work: Path,
    options: EvalOptions,
    drift: bool,
) -> Evaluation:
    build = run_build(train, work / "artifacts", client, settings, keep_training_window=drift)
    try:
        model = ServingModel.load(build.path.parent, build.version)
        return evaluate(
            split, build, model, client, settings, options, train=train if drift else None
        )
    finally:
        keys = Keys(settings.key_prefix)
        delete_build(client, keys, build.version)
        client.delete(keys.current, keys.builds)
        shutil.rmtree(build.path, ignore_errors=True)


def write_report(report: dict[str, Any], out_dir: Path) -> None:
    """``report.json``, ``report.md`` beside its PNG plots, and ``report.html`` with the same
    plots embedded, so the HTML file can be mailed or attached on its own."""
    plots = render_plots(report)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    for name, png in plots.items():
        (out_dir / f"{name}.png").write_bytes(png)
    (out_dir / "report.md").write_text(render_markdown(report, list(plots)))
    (out_dir / "report.html").write_text(render_html(report, plots))
