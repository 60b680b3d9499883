"""Reading locust's statistics back and the verdict: a p99 over the limit or a failed request
makes ``recsys loadtest`` exit non-zero."""

import json
from pathlib import Path

import pytest

from loadtest.results import (
    EXIT_OK,
    EXIT_THRESHOLDS,
    Thresholds,
    format_series,
    format_summary,
    median_by_rate,
    read_series,
    summarise,
    verdict,
)

HEADER = (
    "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,"
    "Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,"
    "50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%"
)


def _write_stats(prefix: Path, p99_ms: int, failures: int = 0) -> None:
    """A locust ``_stats.csv`` as 2.x writes it: one row per name, then Aggregated."""
    rows = [
        HEADER,
        f"GET,GET /recommendations [known],8000,{failures},6,7.1,2.5,180.2,750,133.4,0.0,"
        f"6,7,8,9,11,14,20,{p99_ms},40,60,180",
        "GET,GET /recommendations [unknown],1000,0,2,2.3,1.1,30.5,780,16.7,0.0,"
        "2,2,3,3,4,5,7,9,20,30,30",
        "POST,POST /events,1000,0,2,2.4,1.0,25.0,21,16.7,0.0,2,2,3,3,4,5,6,8,15,25,25",
        f",Aggregated,10000,{failures},5,6.2,1.0,180.2,650,166.8,0.0,"
        f"5,6,7,8,10,13,18,{p99_ms},38,60,180",
    ]
    Path(f"{prefix}_stats.csv").write_text("\n".join(rows) + "\n")


def _write_outcomes(path: Path) -> None:
    rows = [
        {"kind": "known", "fallback": "none", "count": 7900},
        {"kind": "known", "fallback": "ranker-timeout", "count": 100},
        {"kind": "unknown", "fallback": "cold-start", "count": 1000},
    ]
    path.write_text(json.dumps({"outcomes": rows, "locust_cpu_warnings": 0}))


def test_summary_reads_the_aggregate_each_request_kind_and_the_fallbacks(tmp_path: Path) -> None:
    _write_stats(tmp_path / "locust", p99_ms=25)
    _write_outcomes(tmp_path / "outcomes.json")
    s = summarise(tmp_path / "locust", tmp_path / "outcomes.json", 150.0, {"redis": 0.4})
    assert (s.total.requests, s.total.failures, s.total.rps) == (10000, 0, 166.8)
    assert (s.total.p50_ms, s.total.p95_ms, s.total.p99_ms, s.total.max_ms) == (5, 13, 25, 180.2)
    assert [r.name for r in s.by_name] == [
        "GET /recommendations [known]",
        "GET /recommendations [unknown]",
        "POST /events",
    ]
    assert s.fallbacks == {"ranker-timeout": 100, "cold-start": 1000}
    assert s.fallback_share == pytest.approx(1100 / 9000)
    text = format_summary(s)
    assert "achieved 166.8 req/s" in text and "p99 25" in text and "12.2%" in text
    assert s.degraded_share == pytest.approx(100 / 9000)
    row = "| 150 | 166.8 | 5 | 13 | 25 | 180 | 0 | 11.1% | 1.1% | ? | ? | ? | 1 |"
    assert row in format_series([s])


def test_p99_over_the_limit_exits_non_zero(tmp_path: Path) -> None:
    _write_stats(tmp_path / "locust", p99_ms=101)
    s = summarise(tmp_path / "locust", tmp_path / "absent.json", 150.0)
    code, lines = verdict([s], Thresholds(max_p99_ms=100))
    assert code == EXIT_THRESHOLDS
    assert lines == ["FAIL at ~150 req/s: p99 101 ms > 100 ms"]
    assert verdict([s], Thresholds(max_p99_ms=101)) == (EXIT_OK, [])


def test_any_failed_request_exits_non_zero(tmp_path: Path) -> None:
    _write_stats(tmp_path / "locust", p99_ms=20, failures=1)
    s = summarise(tmp_path / "locust", tmp_path / "absent.json", None)
    code, lines = verdict([s], Thresholds())
    assert code == EXIT_THRESHOLDS
    assert "1 failed requests > 0" in lines[0]
    assert verdict([s], Thresholds(max_failures=1))[0] == EXIT_OK


def test_one_bad_step_of_a_series_fails_the_run(tmp_path: Path) -> None:
    good, bad = tmp_path / "good", tmp_path / "bad"
    _write_stats(good, p99_ms=20)
    _write_stats(bad, p99_ms=300)
    steps = [summarise(p, tmp_path / "absent.json", r) for p, r in ((good, 150), (bad, 600))]
    code, lines = verdict(steps, Thresholds())
    assert code == EXIT_THRESHOLDS
    assert len(lines) == 1 and "~600 req/s" in lines[0]


def test_repeated_runs_of_a_rate_become_one_row_of_medians(tmp_path: Path) -> None:
    runs = []
    for i, (p99, failures) in enumerate(((20, 0), (40, 2), (30, 0))):
        prefix = tmp_path / f"run{i}"
        _write_stats(prefix, p99_ms=p99, failures=failures)
        _write_outcomes(tmp_path / "outcomes.json")
        runs.append(summarise(prefix, tmp_path / "outcomes.json", 150.0))
    _write_stats(tmp_path / "other", p99_ms=90)
    runs.append(summarise(tmp_path / "other", tmp_path / "absent.json", 300.0))
    rows = median_by_rate(runs)
    assert [r.offered_rps for r in rows] == [150.0, 300.0]
    three = rows[0]
    assert (three.runs, three.total.p99_ms, three.total.failures) == (3, 30, 2)
    assert three.total.requests == 30000
    assert three.fallbacks == {"ranker-timeout": 300, "cold-start": 3000}
    assert rows[1].runs == 1 and rows[1].total.p99_ms == 90
    table = format_series(runs).splitlines()
    assert len(table) == 4 and table[2].startswith("| 150 | 166.8 | 5 | 13 | 30 |")


def test_stats_without_an_aggregate_row_are_an_error(tmp_path: Path) -> None:
    Path(f"{tmp_path / 'locust'}_stats.csv").write_text(HEADER + "\n")
    with pytest.raises(ValueError, match="Aggregated"):
        summarise(tmp_path / "locust", tmp_path / "absent.json", 150.0)


def test_a_finished_series_is_read_back_from_its_summaries(tmp_path: Path) -> None:
    """`recsys loadtest --render` re-tabulates saved steps: to_json and from_json round-trip."""
    _write_outcomes(tmp_path / "outcomes.json")
    written = []
    for rate, run, p99 in ((300.0, 1, 40), (150.0, 1, 20), (150.0, 2, 30)):
        _write_stats(tmp_path / "locust", p99_ms=p99)
        s = summarise(tmp_path / "locust", tmp_path / "outcomes.json", rate, {"redis": 0.4})
        step = tmp_path / "out" / f"rate-{rate:g}" / f"run-{run}"
        step.mkdir(parents=True)
        (step / "summary.json").write_text(json.dumps(s.to_json()))
        written.append(s)
    back = read_series(tmp_path / "out")
    assert sorted(back, key=lambda s: s.total.p99_ms) == sorted(
        written, key=lambda s: s.total.p99_ms
    )
    assert format_series(back) == format_series(sorted(written, key=lambda s: s.offered_rps or 0))
    with pytest.raises(FileNotFoundError, match="no rate-"):
        read_series(tmp_path)
