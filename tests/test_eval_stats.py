"""Bootstrap intervals and the paired comparison: exact cases, calibration, and their inputs."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from recsys.evaluation.stats import (
    bootstrap_ci,
    paired_comparison,
    ratio_ci,
    sign_flip_p_value,
    wilcoxon_p_value,
)


def test_constant_values_have_a_point_interval() -> None:
    ci = bootstrap_ci([np.full(50, 0.3)], resamples=200)
    assert (ci.mean, ci.low, ci.high) == pytest.approx((0.3, 0.3, 0.3))


def test_interval_width_matches_the_normal_approximation() -> None:
    # mean of n=2000 draws with sd 1: standard error 1/sqrt(2000) = 0.02236; a 95% interval is
    # about +-1.96 standard errors wide, 0.0877 in total
    values = np.random.default_rng(0).normal(0.5, 1.0, 2000)
    ci = bootstrap_ci([values], resamples=2000, seed=1)
    assert ci.low < values.mean() < ci.high
    assert ci.high - ci.low == pytest.approx(2 * 1.96 / math.sqrt(2000), rel=0.1)


def test_interval_covers_the_true_mean_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(2)
    covered = 0
    for trial in range(200):
        sample = rng.binomial(1, 0.3, 300).astype(float)  # like HR@10 per user
        ci = bootstrap_ci([sample], resamples=400, seed=trial)
        covered += ci.low <= 0.3 <= ci.high
    assert 0.9 <= covered / 200 <= 0.99


def test_strata_average_their_means_and_nan_is_left_out() -> None:
    # fold means 1.0 and 0.0 weigh the same however many users each has
    ci = bootstrap_ci([np.ones(10), np.array([0.0, 0.0, np.nan])], resamples=100)
    assert ci.mean == pytest.approx(0.5) and ci.low == ci.high == pytest.approx(0.5)
    with pytest.raises(ValueError, match="stratum 0"):
        bootstrap_ci([np.array([np.nan])])
    with pytest.raises(ValueError, match="resamples"):
        bootstrap_ci([np.ones(3)], resamples=0)


def test_same_seed_same_interval() -> None:
    values = np.random.default_rng(3).random(100)
    assert bootstrap_ci([values], seed=5) == bootstrap_ci([values], seed=5)


def test_sign_flip_p_value_is_exact_on_a_tiny_case() -> None:
    # 3 users, each +1: of the 8 equally likely sign patterns, 2 (all + or all -) reach
    # |mean| >= 1, so p = 2/8 = 0.25
    p = sign_flip_p_value([np.ones(3)], 20_000, np.random.default_rng(0))
    assert p == pytest.approx(0.25, abs=0.01)


def test_paired_identical_systems() -> None:
    a = np.random.default_rng(4).random(200)
    result = paired_comparison([a], [a.copy()], resamples=200, permutations=500)
    assert result.difference == 0.0 and result.ci_low == result.ci_high == 0.0
    assert result.p_value == 1.0 and result.p_wilcoxon == 1.0


def test_paired_detects_a_real_improvement() -> None:
    rng = np.random.default_rng(5)
    champion = rng.random(500)
    challenger = champion + rng.normal(0.05, 0.1, 500)  # better by 0.05 on average
    result = paired_comparison([champion], [challenger], resamples=500, permutations=2000)
    assert result.difference == pytest.approx(np.mean(challenger - champion))
    assert 0.0 < result.ci_low < result.difference < result.ci_high
    assert result.p_value == pytest.approx(1 / 2001)  # no flip is as extreme: the +1 floor
    assert result.p_wilcoxon < 1e-6
    assert result.users == 500


def test_paired_noise_is_not_significant() -> None:
    rng = np.random.default_rng(6)
    champion = rng.random(400)
    challenger = champion + rng.normal(0.0, 0.1, 400)
    result = paired_comparison([champion], [challenger], resamples=500, permutations=2000)
    assert result.ci_low < 0.0 < result.ci_high
    assert result.p_value > 0.05


def test_paired_p_value_agrees_with_the_paired_t_test_on_normal_data() -> None:
    # with many users the randomisation distribution is close to normal; p-values agree
    rng = np.random.default_rng(7)
    champion = rng.random(1000)
    challenger = champion + rng.normal(0.006, 0.1, 1000)
    result = paired_comparison([champion], [challenger], resamples=200, permutations=20_000)
    t_p = sps.ttest_rel(challenger, champion).pvalue
    assert result.p_value == pytest.approx(t_p, abs=0.02)


def test_paired_drops_users_missing_on_either_side() -> None:
    a = np.array([0.1, np.nan, 0.3, 0.4])
    b = np.array([0.2, 0.5, np.nan, 0.6])
    result = paired_comparison([a], [b], resamples=50, permutations=50)
    assert result.users == 2
    assert result.difference == pytest.approx(((0.2 - 0.1) + (0.6 - 0.4)) / 2)
    with pytest.raises(ValueError, match="stratum 0: 2 champion users, 3 challenger"):
        paired_comparison([np.ones(2)], [np.ones(3)])


def test_wilcoxon_matches_scipy() -> None:
    d = np.random.default_rng(8).normal(0.1, 1.0, 60)
    assert wilcoxon_p_value(d) == pytest.approx(sps.wilcoxon(d).pvalue)
    assert wilcoxon_p_value(np.zeros(5)) == 1.0


def test_ratio_ci_resamples_users_in_pairs() -> None:
    rng = np.random.default_rng(4)
    base = rng.random(300)
    ci = ratio_ci(2.0 * base, base)
    assert ci.mean == pytest.approx(2.0) and ci.low == pytest.approx(2.0)
    assert ci.high == pytest.approx(2.0)  # paired: every resample has the same ratio
    noisy = ratio_ci(2.0 * base + rng.normal(0, 0.3, 300), base)
    assert noisy.low < noisy.mean < noisy.high and noisy.low < 2.0 < noisy.high
    with pytest.raises(ValueError):
        ratio_ci(base, base[:10])
