"""The ranker-timeout decision: a measured estimate of ranking time, aware of queued jobs."""

import time

import pytest

from api.deadline import EWMA_ALPHA, PROBE_AFTER_S, SAFETY, RankTimeEstimate


def test_ranks_when_the_estimate_fits_and_not_when_it_does_not() -> None:
    est = RankTimeEstimate(threads=2, prior_exec_s=0.010)
    assert est.expected_s() == pytest.approx(0.010 * SAFETY)
    assert est.fits(0.050)
    assert not est.fits(0.010)
    assert not est.fits(0.0)
    assert not est.fits(-1.0)


def test_jobs_in_flight_push_the_estimate_up_by_waves_of_threads() -> None:
    est = RankTimeEstimate(threads=2, prior_exec_s=0.010)
    est.submitted()
    assert est.expected_s() == pytest.approx(0.010 * SAFETY)  # a free thread is left
    est.submitted()
    assert est.expected_s() == pytest.approx(0.020 * SAFETY)  # wait for one to finish first
    assert not est.fits(0.025)
    est.finished(0.010)
    est.finished(0.010)
    assert est.in_flight == 0
    assert est.fits(0.025)


def test_measured_runs_move_the_estimate() -> None:
    est = RankTimeEstimate(threads=1, prior_exec_s=0.010)
    est.submitted()
    est.finished(0.030)
    assert est.exec_s == pytest.approx(0.010 + EWMA_ALPHA * 0.020)
    for _ in range(50):
        est.submitted()
        est.finished(0.002)
    assert est.exec_s == pytest.approx(0.002, rel=0.01)


def test_a_cancelled_job_leaves_the_estimate_alone() -> None:
    est = RankTimeEstimate(threads=1, prior_exec_s=0.010)
    est.submitted()
    est.finished(None)
    assert est.in_flight == 0
    assert est.exec_s == 0.010


def test_a_stale_estimate_is_probed_once_per_period() -> None:
    """An estimate inflated by a pause must not lock ranking out for good."""
    est = RankTimeEstimate(threads=1, prior_exec_s=0.5)
    assert not est.fits(0.090)  # fresh and too slow
    est.last_finished = time.monotonic() - PROBE_AFTER_S - 0.1
    assert est.fits(0.090)  # stale: one request probes
    assert not est.fits(0.090)  # the next ones wait for the probe's measurement
