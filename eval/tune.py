"""``recsys tune DATA --trials N``: the search (``recsys.tuning``) on a Redis of its own, then
``best.json`` (settings overrides that ``recsys build|eval --config`` read), ``trials.md`` and
``trials.json``. The files are rewritten after every trial, so an interrupted search keeps its
best so far."""

import dataclasses
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from recsys.config import Settings
from recsys.data.load import load_dataset
from recsys.evaluation.protocol import Protocol
from recsys.evaluation.runs import isolated
from recsys.store.connect import open_redis
from recsys.tuning import TrialResult, TuneResult, best_trial, improvement, trials_table, tune

log = logging.getLogger(__name__)


def run_tune(
    data_dir: Path, out: Path, settings: Settings, trials: int, protocol: Protocol, seed: int
) -> TuneResult:
    dataset = load_dataset(data_dir)
    out.mkdir(parents=True, exist_ok=True)
    done: list[TrialResult] = []

    def save(trial: TrialResult) -> None:
        done.append(trial)
        partial = TuneResult(best_trial(done), list(done), protocol, validation_users=0)
        write_results(partial, out, str(data_dir))

    with (
        tempfile.TemporaryDirectory(prefix="recsys-tune-") as work,
        open_redis(
            settings.redis_url,
            Path(work) / "redis",
            client_cfg=settings.redis_client,
            server_cfg=settings.redis_server,
        ) as (client, _),
    ):
        result = tune(dataset, isolated(settings), client, Path(work), trials, protocol, seed, save)
    write_results(result, out, str(data_dir))
    log.info(
        "best trial %d: validation NDCG@10 %.4f (%.2fx the starting settings) -> %s",
        result.best.number,
        result.best.ndcg_at_10,
        improvement(result),
        out / "best.json",
    )
    return result


def write_results(result: TuneResult, out: Path, data: str) -> None:
    (out / "best.json").write_text(json.dumps(result.best.overrides, indent=2) + "\n")
    report: dict[str, Any] = {
        "data": data,
        "protocol": result.protocol,
        "validation_users": result.validation_users,
        "best_trial": result.best.number,
        "best_ndcg@10": result.best.ndcg_at_10,
        "start_ndcg@10": result.trials[0].ndcg_at_10,
        "trials": [dataclasses.asdict(t) for t in result.trials],
    }
    (out / "trials.json").write_text(json.dumps(report, indent=2) + "\n")
    head = (
        f"# recsys tune: {data}\n\n"
        f"Validation NDCG@10 of the served two-stage answers ({result.protocol} on the training "
        f"events of the evaluation split). Trial 0 is the starting settings: "
        f"{result.trials[0].ndcg_at_10:.4f}; best: trial {result.best.number}, "
        f"{result.best.ndcg_at_10:.4f} (`best.json`).\n\n"
    )
    (out / "trials.md").write_text(head + trials_table(result))
