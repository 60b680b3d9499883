"""The build-and-score loop: hold out, build on the rest, score every model as served.

Two-stage and stage-1 answers are read back from Redis and ranked by ``recsys.serving``, the code
the API runs, so the report measures what users would get. Baselines are computed on the same
training events: popularity (most watched, seen items removed), item-kNN (cosine, 100
neighbours) and plain ALS (a fresh full fit, exact top-k, seen items removed). Every answer is
computed to depth 100, so each metric is reported at every k of ``KS``.

Every build gets a Redis key prefix of its own, deleted afterwards, so evaluating never touches
the builds that serving reads; a walk-forward fold or a compared configuration is one more build.
``recsys eval`` (``eval/run.py``), ``make report`` and the benchmarks all go through here.
"""

import logging
import secrets
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from recsys.config import Settings
from recsys.data.dataset import Dataset
from recsys.data.split import Split
from recsys.evaluation.baselines import als_top_k, item_knn_top_k, popularity_top_k
from recsys.evaluation.candidate_recall import candidate_recall
from recsys.evaluation.comparison import Evaluation, compare_report, protocol_report
from recsys.evaluation.drift import drift
from recsys.evaluation.metric_table import DEPTH, KS
from recsys.evaluation.protocol import (
    DEFAULT_OPTIONS,
    EvalOptions,
    Protocol,
    held_out_requests,
    protocol_splits,
    split_window,
    train_dataset,
)
from recsys.evaluation.records import CompareReport, EvalReport
from recsys.evaluation.scoring import SEGMENT_METRIC, Reference, score, segments
from recsys.evaluation.served import served_answers
from recsys.pipeline import BuildResult, run_build
from recsys.progress import StageTimer
from recsys.serving import ServingModel
from recsys.store.connect import SyncStore, open_redis
from recsys.store.keys import Keys
from recsys.store.user_store import delete_build

log = logging.getLogger(__name__)


def evaluate(
    split: Split,
    build: BuildResult,
    model: ServingModel,
    client: SyncStore,
    settings: Settings,
    options: EvalOptions = DEFAULT_OPTIONS,
    with_drift: bool = False,
) -> Evaluation:
    """Score one published build on its split's test users: every model at every k, candidate
    recall, segments and, ``with_drift`` (the build kept its training window), feature drift."""
    timer = StageTimer("eval")
    req = held_out_requests(split.test, build.users, model.items)
    if len(req.users) == 0:
        raise RuntimeError("no test user has training history; nothing to evaluate")
    rng = np.random.default_rng(options.seed)
    n_sample = min(options.drift_requests, len(req.users)) if with_drift else 0
    sample = np.sort(rng.choice(len(req.users), n_sample, replace=False))
    with timer.stage("served answers"):
        served = served_answers(client, Keys(settings.key_prefix), model, req, DEPTH, sample)
    candidate_model = build.candidate_model
    seen, users = candidate_model.seen, req.users.astype(np.int64)
    answers: dict[str, np.ndarray] = {}
    with timer.stage("popularity"):
        answers["popularity"] = popularity_top_k(seen, candidate_model.items.pop_all, users, DEPTH)
    with timer.stage("item_knn"):
        answers["item_knn"] = item_knn_top_k(seen, users, DEPTH)
    with timer.stage("als"):
        answers["als"] = als_top_k(seen, users, DEPTH, settings.als)
    answers["stage1"] = served.stage1
    answers["two_stage"] = served.two_stage

    reference = Reference.of(req, candidate_model.items)
    with timer.stage("metrics"):
        scored = {name: score(recommended, reference) for name, recommended in answers.items()}
    with timer.stage("candidate recall"):
        candidates = candidate_recall(
            candidate_model, req, served.candidates, served.flags, settings.candidates
        )
    activity = np.diff(seen.indptr)[req.users]
    per_user_ndcg = {name: s.per_user[SEGMENT_METRIC] for name, s in scored.items()}
    shifts = None
    if n_sample:
        if build.training_window is None:
            raise ValueError("drift needs the build's training window: keep_training_window")
        with timer.stage("drift"):
            shifts = drift(build.training_window, model, served, settings, options.drift_requests)
    report = EvalReport(
        protocol=split.protocol,
        users=len(req.users),
        ks=list(KS),
        window=split_window(split),
        results={name: s.row for name, s in scored.items()},
        popularity_reference=reference.popularity(),
        candidates=candidates,
        segments=segments(req, model.items.devices, activity, per_user_ndcg),
        drift=shifts,
        build_version=build.version,
        ranker=build.manifest.ranker,
        timings_s=build.manifest.timings_s,
        eval_timings_s=timer.timings_s,
    )
    return Evaluation(
        report=report,
        user_keys=req.user_keys,
        per_user={name: s.per_user for name, s in scored.items()},
    )


def isolated(settings: Settings) -> Settings:
    """A key prefix of its own: evaluating never touches the builds that serving reads."""
    return settings.model_copy(
        update={
            "key_prefix": f"{settings.key_prefix}-eval-{secrets.token_hex(4)}",
            "keep_builds": 1,
        }
    )


@contextmanager
def published_build(
    train: Dataset,
    client: SyncStore,
    settings: Settings,
    work: Path,
    keep_training_window: bool = False,
) -> Iterator[tuple[BuildResult, ServingModel]]:
    """A build of ``train`` published under ``settings.key_prefix``, and the model the API
    would load from it; its keys and files are removed when the block ends."""
    build = run_build(
        train, work / "artifacts", client, settings, keep_training_window=keep_training_window
    )
    try:
        yield build, ServingModel.load(build.path.parent, build.version)
    finally:
        keys = Keys(settings.key_prefix)
        delete_build(client, keys, build.version)
        client.delete(keys.current, keys.builds)
        shutil.rmtree(build.path, ignore_errors=True)


def build_and_evaluate(
    train: Dataset,
    split: Split,
    client: SyncStore,
    settings: Settings,
    work: Path,
    options: EvalOptions = DEFAULT_OPTIONS,
    with_drift: bool = False,
) -> Evaluation:
    """One build of a split's training events, scored on its test users, then removed."""
    with published_build(train, client, settings, work, keep_training_window=with_drift) as (
        build,
        model,
    ):
        return evaluate(split, build, model, client, settings, options, with_drift)


def evaluate_configs(
    dataset: Dataset,
    splits: Sequence[Split],
    configs: Sequence[Settings],
    options: EvalOptions,
    with_drift: bool,
) -> list[list[Evaluation]]:
    """``[config][split]``: one build and evaluation per configuration and split, against the
    first configuration's Redis (a local one when it names none)."""
    isolated_configs = [isolated(s) for s in configs]
    out: list[list[Evaluation]] = [[] for _ in configs]
    with (
        tempfile.TemporaryDirectory(prefix="recsys-eval-") as work,
        open_redis(
            configs[0].redis_url,
            Path(work) / "redis",
            client_cfg=configs[0].redis_client,
            server_cfg=configs[0].redis_server,
        ) as (client, _),
    ):
        for split in splits:
            if split.fold is not None:
                log.info("walk-forward fold %d/%d", split.fold + 1, len(splits))
            train = train_dataset(dataset, split)
            for j, settings in enumerate(isolated_configs):
                evaluation = build_and_evaluate(
                    train, split, client, settings, Path(work), options, with_drift
                )
                out[j].append(evaluation)
    return out


def evaluate_protocol(
    dataset: Dataset,
    protocol: Protocol,
    settings: Settings,
    options: EvalOptions = DEFAULT_OPTIONS,
) -> EvalReport:
    """One configuration under ``protocol``: its report, with intervals and paired comparisons
    (and drift unless ``options.drift_requests`` is 0)."""
    splits = protocol_splits(dataset.interactions, protocol, options)
    with_drift = options.drift_requests > 0
    [evaluations] = evaluate_configs(dataset, splits, [settings], options, with_drift)
    return protocol_report(evaluations, options)


def compare_configs(
    dataset: Dataset,
    protocol: Protocol,
    champion: Settings,
    challenger: Settings,
    overrides: dict[str, dict[str, Any]],
    options: EvalOptions = DEFAULT_OPTIONS,
) -> CompareReport:
    """Champion and challenger built on the same splits and scored on the same users;
    ``overrides`` (what each changed) is recorded in the report."""
    splits = protocol_splits(dataset.interactions, protocol, options)
    champ, chall = evaluate_configs(
        dataset, splits, [champion, challenger], options, with_drift=False
    )
    return compare_report(champ, chall, overrides, options)
