"""Two minutes of `make chaos` (issue 12): mixed traffic while a build is killed mid-write,
Redis is restarted and killed, a build is flipped in and an API worker is killed. Nothing
acknowledged is lost, nothing answers 5xx, Redis memory levels off, nothing is left behind.

In a file of its own: under `pytest -n 2 --dist loadfile` it runs beside the rest."""

from pathlib import Path

import pytest

from loadtest.chaos import SCHEDULE, ChaosOptions, ChaosRun, format_report


@pytest.mark.slow
def test_two_minutes_of_chaos(tmp_path: Path) -> None:
    opts = ChaosOptions(out=tmp_path, duration_s=120, rate=25, users=1500)
    report = ChaosRun(opts).run()
    summary = format_report(report)
    assert report.passed, summary
    assert [a["name"] for a in report.actions] == [name for _, name in SCHEDULE], summary
    assert report.events_acknowledged > 200, summary
    assert report.events_lost == 0 and report.server_errors == 0, summary
    worker = report.actions[-1]
    assert worker["replaced_by"] != worker["killed"], summary
    assert report.actions[0]["keys_left"] > 0, summary  # the killed build had written keys
    assert (tmp_path / "chaos.json").is_file()
