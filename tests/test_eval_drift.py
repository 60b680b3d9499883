"""Population stability index: hand-computed values, bins, missing values, flags."""

import math

import numpy as np
import pytest

from recsys.evaluation.drift import (
    EPSILON,
    bin_edges,
    bin_shares,
    describe_shift,
    feature_drift,
    flag,
    psi,
)


def test_identical_samples_have_zero_psi() -> None:
    x = np.random.default_rng(0).normal(size=1000)
    assert psi(x, x) == pytest.approx(0.0)


def test_psi_hand_computed() -> None:
    # reference 0..99: 9 inner decile edges at 9, 19, ..., 89 -> bins (-inf, 9], (9, 19], ...,
    # (89, inf) of 10% each, plus an empty missing bin (floored at EPSILON). Current:
    # everything in the first bin.
    # PSI = (1 - 0.1) ln(1 / 0.1) + 9 (eps - 0.1) ln(eps / 0.1) + (eps - eps) ln 1
    reference = np.arange(100, dtype=float)
    current = np.zeros(50)
    expected = 0.9 * math.log(10) + 9 * (EPSILON - 0.1) * math.log(EPSILON / 0.1)
    assert psi(reference, current) == pytest.approx(expected)
    assert expected == pytest.approx(8.2828, abs=1e-3)


def test_psi_of_a_one_bin_shift() -> None:
    # current = reference shifted by one bin width: each bin's values move to the next one, the
    # first bin empties and the last holds 20%. Shares: cur = [eps, .1 x 8, .2]
    reference = np.arange(100, dtype=float) + 0.5
    current = reference + 10
    ref = np.full(10, 0.1)
    cur = np.array([EPSILON, *[0.1] * 8, 0.2])
    expected = float(np.sum((cur - ref) * np.log(cur / ref)))
    assert psi(reference, current) == pytest.approx(expected)


def test_binary_and_constant_features_get_few_bins() -> None:
    binary = np.array([0.0] * 70 + [1.0] * 30)
    assert bin_edges(binary).tolist() == [0.0, 1.0]
    # bins: (-inf, 0], (0, 1], (1, inf), missing
    assert bin_shares(binary, bin_edges(binary)).tolist() == pytest.approx([0.7, 0.3, 0.0, 0.0])
    assert bin_edges(np.full(10, 3.0)).tolist() == [3.0]
    assert bin_edges(np.arange(100.0)).tolist() == [9, 19, 29, 39, 49, 59, 69, 79, 89]
    # 70/30 -> 50/50: (0.5-0.7) ln(0.5/0.7) + (0.5-0.3) ln(0.5/0.3)
    expected = -0.2 * math.log(5 / 7) + 0.2 * math.log(5 / 3)
    assert psi(binary, np.array([0.0, 1.0] * 50)) == pytest.approx(expected)


def test_missing_values_have_their_own_bin() -> None:
    reference = np.arange(100, dtype=float)
    current = reference.copy()
    current[:50] = np.nan  # half missing now, and the rest in the upper half
    shares = bin_shares(current, bin_edges(reference))
    assert shares[-1] == pytest.approx(0.5)
    assert psi(reference, current) > 0.2
    # an all-missing reference has no edges: one value bin and one missing bin
    no_edges = bin_edges(np.full(5, np.nan))
    assert no_edges.size == 0
    assert bin_shares(np.array([1.0, np.nan, np.nan, 2.0]), no_edges) == pytest.approx([0.5, 0.5])


def test_flags() -> None:
    assert [flag(v) for v in (0.0, 0.1, 0.1001, 0.2, 0.2001)] == [
        "stable",
        "stable",
        "moderate",
        "moderate",
        "major",
    ]


def test_feature_drift_names_columns() -> None:
    rng = np.random.default_rng(1)
    reference = rng.normal(size=(2000, 3))
    current = np.column_stack(
        [rng.normal(size=2000), rng.normal(0.5, 1, 2000), rng.normal(2.0, 1, 2000)]
    )
    out = feature_drift(reference, current, ["same", "shifted", "moved"])
    assert out["same"].flag == "stable"
    assert out["shifted"].flag in {"moderate", "major"}
    assert out["moved"].flag == "major"
    assert out["moved"].current_mean == pytest.approx(2.0, abs=0.1)
    with pytest.raises(ValueError, match="feature names"):
        feature_drift(reference, current, ["a", "b"])


def test_describe_shift_reports_moments_and_missing() -> None:
    d = describe_shift(np.array([1.0, 2.0, 3.0, np.nan]), np.array([np.nan, np.nan]))
    assert d.reference_mean == pytest.approx(2.0)
    assert d.current_mean is None
    assert d.reference_missing == pytest.approx(0.25) and d.current_missing == 1.0
    assert d.flag == "major"
