"""``recsys eval DATA --out DIR``: hold out, build on the rest, score what is served."""

import json
import logging
import secrets
import tempfile
from pathlib import Path
from typing import Any

from recsys.config import Settings
from recsys.data.load import load_dataset
from recsys.evaluation import Protocol, evaluate_build, split_for_protocol, train_dataset
from recsys.pipeline import run_build
from recsys.report import render_markdown
from recsys.serving import ServingModel
from recsys.store.connect import open_redis
from recsys.store.keys import Keys
from recsys.store.user_store import delete_build

log = logging.getLogger(__name__)


def run_eval(
    data_dir: Path, out_dir: Path, protocol: Protocol, settings: Settings
) -> dict[str, Any]:
    dataset = load_dataset(data_dir)
    split = split_for_protocol(dataset.interactions, protocol)
    # a prefix of its own: evaluating never touches the builds that serving reads
    settings = settings.model_copy(
        update={
            "key_prefix": f"{settings.key_prefix}-eval-{secrets.token_hex(4)}",
            "keep_builds": 1,
        }
    )
    keys = Keys(settings.key_prefix)
    with (
        tempfile.TemporaryDirectory(prefix="recsys-eval-") as work,
        open_redis(settings.redis_url, Path(work) / "redis") as (client, _),
    ):
        build = run_build(train_dataset(dataset, split), Path(work) / "artifacts", client, settings)
        try:
            model = ServingModel.load(build.path.parent, build.version)
            report = evaluate_build(split, build, model, client, settings)
        finally:
            delete_build(client, keys, build.version)
            client.delete(keys.current, keys.builds)
    report.update(
        dataset=str(data_dir),
        build_version=build.version,
        ranker=build.manifest["ranker"],
        timings_s=build.manifest["timings_s"],
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "report.json").write_text(json.dumps(report, indent=2))
    (out_dir / "report.md").write_text(render_markdown(report))
    res = report["results"]
    log.info(
        "NDCG@10: popularity %.4f, ALS %.4f, two-stage %.4f -> %s",
        res["popularity"]["ndcg@10"],
        res["als"]["ndcg@10"],
        res["two_stage"]["ndcg@10"],
        out_dir / "report.md",
    )
    return report
