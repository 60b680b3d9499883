"""How sure a reported number is: bootstrap intervals and a paired champion-vs-challenger test.

Both resample *users*, the unit that was sampled: a test set is one draw of users from everyone
who will ever ask, and the question is how much the mean per-user metric would move under
another draw. Values come in *strata* (walk-forward folds; a single split is one stratum) and
the statistic is the mean of the stratum means, which is what the report shows for walk-forward
(each fold weighs the same). Each stratum is resampled on its own, so a resample keeps the folds'
sizes.

The paired test compares two systems on the same users. Its p-value comes from a sign-flip
randomisation test (Smucker, Allan & Carterette, "A comparison of statistical significance tests
for information retrieval evaluation", CIKM 2007, recommend it for IR metrics): under the null
hypothesis that both systems are exchangeable, each user's difference is as likely to have the
other sign. The Wilcoxon signed-rank p-value (scipy) is reported alongside as a second opinion.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats as sps

FloatArray = npt.NDArray[np.float64]

_CHUNK_CELLS = 4_000_000  # resample x user cells drawn at once: ~32 MB of indices


def _clean(strata: Sequence[npt.ArrayLike]) -> list[FloatArray]:
    """Float arrays without ``nan`` (users a metric is undefined for); every stratum non-empty."""
    out = []
    for i, values in enumerate(strata):
        arr = np.asarray(values, dtype=np.float64).ravel()
        arr = arr[~np.isnan(arr)]
        if arr.size == 0:
            raise ValueError(f"stratum {i} has no defined value to resample")
        out.append(arr)
    if not out:
        raise ValueError("no values to resample")
    return out


def _resampled_means(values: FloatArray, resamples: int, rng: np.random.Generator) -> FloatArray:
    """Means of ``resamples`` draws of ``len(values)`` values with replacement."""
    n = values.size
    out = np.empty(resamples, dtype=np.float64)
    step = max(1, _CHUNK_CELLS // n)
    for start in range(0, resamples, step):
        rows = min(step, resamples - start)
        out[start : start + rows] = values[rng.integers(0, n, size=(rows, n))].mean(axis=1)
    return out


def _bootstrap(strata: list[FloatArray], resamples: int, rng: np.random.Generator) -> FloatArray:
    """Bootstrap distribution of the mean of stratum means (strata resampled separately)."""
    return np.mean([_resampled_means(s, resamples, rng) for s in strata], axis=0)


def _check(resamples: int, level: float) -> None:
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be strictly between 0 and 1, got {level}")


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float

    def as_list(self) -> list[float]:
        return [round(self.low, 5), round(self.high, 5)]


def bootstrap_ci(
    strata: Sequence[npt.ArrayLike], resamples: int = 1000, seed: int = 0, level: float = 0.95
) -> Interval:
    """Percentile bootstrap interval of the mean of stratum means, resampling users.

    ``nan`` values are left out first (the metric is undefined for those users). The same seed
    draws the same user indices for equally sized inputs, so the intervals of two systems on
    the same users are computed from the same resamples.
    """
    _check(resamples, level)
    clean = _clean(strata)
    dist = _bootstrap(clean, resamples, np.random.default_rng(seed))
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(dist, [tail, 1.0 - tail])
    return Interval(float(np.mean([s.mean() for s in clean])), float(low), float(high))


def ratio_ci(
    numerator: npt.ArrayLike,
    denominator: npt.ArrayLike,
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> Interval:
    """Percentile bootstrap interval of mean(numerator) / mean(denominator), the two measured
    on the same users (resampled together, so the pairing is kept). The cold-start target
    ("NDCG@10 at least twice popularity", issue 14) is such a ratio."""
    _check(resamples, level)
    num = np.asarray(numerator, dtype=np.float64).ravel()
    den = np.asarray(denominator, dtype=np.float64).ravel()
    if num.size != den.size or num.size == 0:
        raise ValueError(f"need paired, non-empty values, got {num.size} and {den.size}")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, num.size, size=(resamples, num.size))
    with np.errstate(divide="ignore", invalid="ignore"):
        dist = num[draws].mean(axis=1) / den[draws].mean(axis=1)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(dist, [tail, 1.0 - tail])
    return Interval(float(num.mean() / den.mean()), float(low), float(high))


@dataclass(frozen=True)
class PairedResult:
    """Challenger minus champion on the same users."""

    users: int
    champion: float
    challenger: float
    difference: float
    ci_low: float
    ci_high: float
    p_value: float  # sign-flip randomisation test, two-sided
    p_wilcoxon: float  # Wilcoxon signed-rank on the pooled differences, two-sided
    resamples: int
    permutations: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "users": self.users,
            "champion": round(self.champion, 5),
            "challenger": round(self.challenger, 5),
            "difference": round(self.difference, 5),
            "ci95": [round(self.ci_low, 5), round(self.ci_high, 5)],
            "p_value": round(self.p_value, 5),
            "p_wilcoxon": round(self.p_wilcoxon, 5),
            "resamples": self.resamples,
            "permutations": self.permutations,
        }


def _paired_strata(
    champion: Sequence[npt.ArrayLike], challenger: Sequence[npt.ArrayLike]
) -> tuple[list[FloatArray], list[FloatArray]]:
    if len(champion) != len(challenger):
        raise ValueError(f"{len(champion)} champion strata but {len(challenger)} challenger ones")
    a_out, b_out = [], []
    for i, (a, b) in enumerate(zip(champion, challenger, strict=True)):
        a_arr = np.asarray(a, dtype=np.float64).ravel()
        b_arr = np.asarray(b, dtype=np.float64).ravel()
        if a_arr.shape != b_arr.shape:
            raise ValueError(f"stratum {i}: {a_arr.size} champion users, {b_arr.size} challenger")
        keep = ~(np.isnan(a_arr) | np.isnan(b_arr))
        if not keep.any():
            raise ValueError(f"stratum {i} has no user with both values defined")
        a_out.append(a_arr[keep])
        b_out.append(b_arr[keep])
    return a_out, b_out


def sign_flip_p_value(
    differences: Sequence[npt.ArrayLike], resamples: int, rng: np.random.Generator
) -> float:
    """Two-sided p-value of the mean of stratum means of paired differences being 0.

    Each resample flips the sign of every user's difference at random; p is the share of
    resamples at least as extreme as observed, with the +1 correction of Phipson & Smyth (2010)
    so it is never 0 from a finite number of resamples.
    """
    strata = [np.asarray(d, dtype=np.float64) for d in differences]
    weights = np.concatenate([np.full(d.size, 1.0 / (d.size * len(strata))) for d in strata])
    d = np.concatenate(strata) * weights
    observed = abs(float(d.sum()))
    tolerance = 1e-12 * max(1.0, observed)  # float sums of the same terms in another order
    extreme = 0
    step = max(1, _CHUNK_CELLS // d.size)
    for start in range(0, resamples, step):
        rows = min(step, resamples - start)
        signs = rng.integers(0, 2, size=(rows, d.size), dtype=np.int8) * 2 - 1
        extreme += int(np.count_nonzero(np.abs(signs @ d) >= observed - tolerance))
    return (extreme + 1) / (resamples + 1)


def wilcoxon_p_value(differences: FloatArray) -> float:
    """Wilcoxon signed-rank p-value; 1.0 when every difference is zero (no evidence at all)."""
    if not np.any(differences != 0):
        return 1.0
    return float(sps.wilcoxon(differences, zero_method="wilcox").pvalue)


def paired_comparison(
    champion: Sequence[npt.ArrayLike],
    challenger: Sequence[npt.ArrayLike],
    resamples: int = 1000,
    permutations: int = 10_000,
    seed: int = 0,
    level: float = 0.95,
) -> PairedResult:
    """Challenger minus champion, per user, with a paired bootstrap interval and p-values.

    ``champion[s][i]`` and ``challenger[s][i]`` are the same user's values in stratum ``s``; a
    user whose value is ``nan`` in either is left out of both.
    """
    _check(resamples, level)
    if permutations < 1:
        raise ValueError(f"permutations must be at least 1, got {permutations}")
    a, b = _paired_strata(champion, challenger)
    diffs = [y - x for x, y in zip(a, b, strict=True)]
    rng = np.random.default_rng(seed)
    dist = _bootstrap(diffs, resamples, rng)
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(dist, [tail, 1.0 - tail])
    return PairedResult(
        users=int(sum(d.size for d in diffs)),
        champion=float(np.mean([x.mean() for x in a])),
        challenger=float(np.mean([y.mean() for y in b])),
        difference=float(np.mean([d.mean() for d in diffs])),
        ci_low=float(low),
        ci_high=float(high),
        p_value=sign_flip_p_value(diffs, permutations, rng),
        p_wilcoxon=wilcoxon_p_value(np.concatenate(diffs)),
        resamples=resamples,
        permutations=permutations,
    )


# --------------------------------------------------------------------------- ratio metrics
# Online metrics are ratios of sums over users (clicks / items shown, ...): the pooled value
# weighs every impression the same, and resampling *users* keeps a user's impressions together,
# which is the cluster bootstrap that correlated impressions of one user call for (Deng, Knoblich
# & Lu, "Applying the Delta Method in Metric Analytics", KDD 2018, on user-randomised tests).


def _resampled_ratios(
    num: FloatArray, den: FloatArray, resamples: int, rng: np.random.Generator
) -> FloatArray:
    """sum(num) / sum(den) over ``resamples`` draws of the users with replacement."""
    n = num.size
    out = np.empty(resamples, dtype=np.float64)
    step = max(1, _CHUNK_CELLS // n)
    for start in range(0, resamples, step):
        rows = min(step, resamples - start)
        idx = rng.integers(0, n, size=(rows, n))
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start : start + rows] = num[idx].sum(axis=1) / den[idx].sum(axis=1)
    return out


def _ratio_inputs(num: npt.ArrayLike, den: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    n = np.asarray(num, dtype=np.float64).ravel()
    d = np.asarray(den, dtype=np.float64).ravel()
    if n.shape != d.shape:
        raise ValueError(f"{n.size} numerators but {d.size} denominators")
    if n.size == 0 or d.sum() <= 0:
        raise ValueError("no user with a positive denominator")
    return n, d


def ratio(num: npt.ArrayLike, den: npt.ArrayLike) -> float:
    n, d = _ratio_inputs(num, den)
    return float(n.sum() / d.sum())


def bootstrap_ratio_ci(
    num: npt.ArrayLike,
    den: npt.ArrayLike,
    resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> Interval:
    """Percentile bootstrap interval of sum(num) / sum(den), resampling users (one entry per
    user in each array). Resamples whose denominator is 0 are left out."""
    _check(resamples, level)
    n, d = _ratio_inputs(num, den)
    dist = _resampled_ratios(n, d, resamples, np.random.default_rng(seed))
    dist = dist[np.isfinite(dist)]
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(dist, [tail, 1.0 - tail])
    return Interval(float(n.sum() / d.sum()), float(low), float(high))


@dataclass(frozen=True)
class TwoSampleResult:
    """Challenger minus champion on two disjoint sets of users (the arms of an A/B test)."""

    users_champion: int
    users_challenger: int
    champion: float
    challenger: float
    difference: float
    ci_low: float
    ci_high: float
    p_value: float  # permutation test of the arm labels over users, two-sided
    p_welch: float  # Welch's t-test on per-user ratios, two-sided
    resamples: int
    permutations: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "users": [self.users_champion, self.users_challenger],
            "champion": round(self.champion, 6),
            "challenger": round(self.challenger, 6),
            "difference": round(self.difference, 6),
            "ci95": [round(self.ci_low, 6), round(self.ci_high, 6)],
            "p_value": round(self.p_value, 6),
            "p_welch": round(self.p_welch, 6),
            "resamples": self.resamples,
            "permutations": self.permutations,
        }


def permutation_ratio_p_value(
    num: FloatArray,
    den: FloatArray,
    in_b: npt.NDArray[np.bool_],
    permutations: int,
    rng: np.random.Generator,
) -> float:
    """Two-sided p-value of ratio(B) - ratio(A) being 0, with users' arm labels shuffled
    (each user keeps their sums); the Phipson & Smyth (2010) +1 correction as above."""

    def difference(labels: npt.NDArray[np.bool_]) -> npt.NDArray[np.float64]:
        b = labels.astype(np.float64)
        a = 1.0 - b
        with np.errstate(invalid="ignore", divide="ignore"):
            return (b @ num) / (b @ den) - (a @ num) / (a @ den)

    observed = abs(float(difference(in_b[None, :])[0]))
    tolerance = 1e-12 * max(1.0, observed)
    extreme = 0
    step = max(1, _CHUNK_CELLS // num.size)
    for start in range(0, permutations, step):
        rows = min(step, permutations - start)
        labels = np.argsort(rng.random((rows, num.size)), axis=1) < int(in_b.sum())
        extreme += int(np.count_nonzero(np.abs(difference(labels)) >= observed - tolerance))
    return (extreme + 1) / (permutations + 1)


def welch_p_value(a: FloatArray, b: FloatArray) -> float:
    """Welch's unequal-variance t-test; 1.0 when it is undefined (fewer than 2 users a side, or
    no variance at all)."""
    if a.size < 2 or b.size < 2 or (np.var(a) == 0 and np.var(b) == 0):
        return 1.0
    p = float(sps.ttest_ind(a, b, equal_var=False).pvalue)
    return p if np.isfinite(p) else 1.0


def two_sample_ratio(
    champion: tuple[npt.ArrayLike, npt.ArrayLike],
    challenger: tuple[npt.ArrayLike, npt.ArrayLike],
    resamples: int = 1000,
    permutations: int = 10_000,
    seed: int = 0,
    level: float = 0.95,
) -> TwoSampleResult:
    """Challenger minus champion of a ratio metric, each arm given as per-user (numerators,
    denominators): an independent bootstrap of each arm's users for the interval, a permutation
    of the arm labels for the p-value, Welch's t-test on per-user ratios beside it."""
    _check(resamples, level)
    if permutations < 1:
        raise ValueError(f"permutations must be at least 1, got {permutations}")
    num_a, den_a = _ratio_inputs(*champion)
    num_b, den_b = _ratio_inputs(*challenger)
    rng = np.random.default_rng(seed)
    dist = _resampled_ratios(num_b, den_b, resamples, rng) - _resampled_ratios(
        num_a, den_a, resamples, rng
    )
    dist = dist[np.isfinite(dist)]
    tail = (1.0 - level) / 2.0
    low, high = np.quantile(dist, [tail, 1.0 - tail])
    in_b = np.r_[np.zeros(num_a.size, dtype=bool), np.ones(num_b.size, dtype=bool)]
    p = permutation_ratio_p_value(np.r_[num_a, num_b], np.r_[den_a, den_b], in_b, permutations, rng)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_a = num_a[den_a > 0] / den_a[den_a > 0]
        per_b = num_b[den_b > 0] / den_b[den_b > 0]
    a_value, b_value = num_a.sum() / den_a.sum(), num_b.sum() / den_b.sum()
    return TwoSampleResult(
        users_champion=int(num_a.size),
        users_challenger=int(num_b.size),
        champion=float(a_value),
        challenger=float(b_value),
        difference=float(b_value - a_value),
        ci_low=float(low),
        ci_high=float(high),
        p_value=p,
        p_welch=welch_p_value(per_a, per_b),
        resamples=resamples,
        permutations=permutations,
    )
