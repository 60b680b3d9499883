"""LightGBM LambdaRank: the stage-2 model.

Serving calls ``Booster.predict`` on float32 arrays with ``num_threads=1``: the scikit-learn
wrapper's predict is much slower on recent versions (LightGBM #7229) and per-call OpenMP teams
oversubscribe a threaded server (LightGBM #6464); the API scales with processes instead.
"""

import os
from dataclasses import dataclass
from pathlib import Path

import lightgbm as lgb
import numpy as np

from recsys.config import RankerConfig
from recsys.features import CATEGORICAL_FEATURES, FEATURE_NAMES


@dataclass(frozen=True)
class TrainingSet:
    features: np.ndarray  # float32 [N, F]
    relevance: np.ndarray  # int32 [N]
    group_sizes: np.ndarray  # int64 [G]


@dataclass(frozen=True)
class TrainResult:
    booster: lgb.Booster
    best_iteration: int
    valid_ndcg_at_10: float
    n_train_groups: int
    n_valid_groups: int
    n_rows: int


def _subset(ts: TrainingSet, groups: np.ndarray) -> TrainingSet:
    offsets = np.concatenate([[0], np.cumsum(ts.group_sizes)])
    rows = np.concatenate([np.arange(offsets[g], offsets[g + 1]) for g in groups])
    return TrainingSet(ts.features[rows], ts.relevance[rows], ts.group_sizes[groups])


def train_ranker(ts: TrainingSet, cfg: RankerConfig) -> TrainResult:
    """LambdaRank, early-stopped on NDCG@10 of held-out requests."""
    rng = np.random.default_rng(cfg.seed)
    order = rng.permutation(len(ts.group_sizes))
    n_valid = max(1, int(len(order) * cfg.valid_frac))
    valid, train = _subset(ts, np.sort(order[:n_valid])), _subset(ts, np.sort(order[n_valid:]))
    params = {
        "objective": "lambdarank",
        "metric": "ndcg",
        "eval_at": [10],
        "num_leaves": cfg.num_leaves,
        "learning_rate": cfg.learning_rate,
        "min_data_in_leaf": cfg.min_data_in_leaf,
        "feature_fraction": cfg.feature_fraction,
        "seed": cfg.seed,
        "deterministic": True,
        "force_row_wise": True,
        # explicit: left at 0, LightGBM takes OpenMP's default, which another library in the
        # process can change: after importing implicit, training ran 40x slower (measured here)
        "num_threads": cfg.num_threads or os.cpu_count() or 1,
        "verbosity": -1,
    }

    def dataset(part: TrainingSet, reference: lgb.Dataset | None = None) -> lgb.Dataset:
        return lgb.Dataset(
            part.features,
            label=part.relevance,
            group=part.group_sizes,
            feature_name=list(FEATURE_NAMES),
            categorical_feature=list(CATEGORICAL_FEATURES),
            reference=reference,
            free_raw_data=True,
        )

    history: dict[str, dict[str, list[float]]] = {}
    train_ds = dataset(train)
    valid_ds = dataset(valid, reference=train_ds)
    booster = lgb.train(
        params,
        train_ds,
        num_boost_round=cfg.num_trees,
        valid_sets=[valid_ds],
        valid_names=["valid"],
        callbacks=(
            [lgb.early_stopping(cfg.early_stopping_rounds, verbose=False)]
            if cfg.early_stopping
            else [lgb.record_evaluation(history)]
        ),
    )
    best = (booster.best_iteration if cfg.early_stopping else 0) or cfg.num_trees
    return TrainResult(
        booster=booster,
        best_iteration=best,
        valid_ndcg_at_10=float(
            booster.best_score["valid"]["ndcg@10"]
            if cfg.early_stopping
            else history["valid"]["ndcg@10"][-1]
        ),
        n_train_groups=len(train.group_sizes),
        n_valid_groups=len(valid.group_sizes),
        n_rows=len(ts.relevance),
    )


class Ranker:
    """A trained booster, loaded for scoring."""

    def __init__(self, booster: lgb.Booster) -> None:
        self.booster = booster
        names = booster.feature_name()
        if tuple(names) != FEATURE_NAMES:
            raise ValueError(f"model features {names} differ from this code's {FEATURE_NAMES}")

    @classmethod
    def load(cls, path: Path) -> "Ranker":
        return cls(lgb.Booster(model_file=str(path)))

    def save(self, path: Path, num_iteration: int | None = None) -> None:
        self.booster.save_model(str(path), num_iteration=num_iteration)

    def score(self, features: np.ndarray, num_threads: int = 1) -> np.ndarray:
        """Scores with one thread by default: the API's setting (module docstring)."""
        return np.asarray(self.booster.predict(features, num_threads=num_threads), dtype=np.float32)

    def contributions(self, features: np.ndarray) -> np.ndarray:
        """SHAP values [rows, features + 1] (TreeSHAP, LightGBM's ``pred_contrib``): each
        feature's share of each row's score, the last column the model's expected value; a row
        sums to its score. Cost grows with trees x leaves x depth per row, so callers pass only
        the rows they explain."""
        return np.asarray(
            self.booster.predict(features, pred_contrib=True, num_threads=1), dtype=np.float64
        )

    def feature_importance(self) -> dict[str, float]:
        gains = self.booster.feature_importance(importance_type="gain")
        return {n: float(g) for n, g in zip(FEATURE_NAMES, gains, strict=True)}
