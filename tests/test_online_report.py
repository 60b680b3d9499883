"""The online report's rules on hand-made logs: which answer an event counts for, what each
metric divides by, the intervals and the A/B test; and the commands that read the log."""

import json
from pathlib import Path

import numpy as np
import pytest
import redis

from cli.main import main
from recsys.evaluation.online import Catalogue, OnlineOptions, online_report, shown_items
from recsys.evaluation.stats import bootstrap_ratio_ci, two_sample_ratio
from recsys.store.events import WatchEvent
from recsys.store.feedback_log import (
    Impression,
    LoggedEvent,
    queue_impressions,
    queue_logged_event,
    read_impressions,
)
from recsys.store.keys import Keys

T0 = 1_700_000_000_000  # ms
WINDOW_S = 60.0


def imp(rid: str, user: str, items: list[int], at_ms: int, arm: str = "champion") -> Impression:
    scores = [1.0 - 0.1 * i for i in range(len(items))]
    return Impression(rid, user, "b1", arm, list(items), scores, None, 0, "tv", at_ms)


def ev(
    user: str, item: int | str, at_ms: int, kind: str = "watch", rid: str | None = None
) -> LoggedEvent:
    event = WatchEvent(item, 0, "tv", 0.5 if kind == "watch" else None, kind, rid)  # type: ignore[arg-type]
    return LoggedEvent(user, event, at_ms)


def test_attribution_rules() -> None:
    impressions = [
        imp("r1", "u", [1, 2, 3], T0),
        imp("r2", "u", [2, 4, 5], T0 + 10_000),
        imp("r3", "v", [1, 2, 3], T0),
    ]
    events = [
        ev(
            "u", 2, T0 + 20_000, rid="r1"
        ),  # named answer r1, in its window: r1 even though r2 is later
        ev("u", "4", T0 + 20_000),  # no id: the latest answer that showed item 4 (r2); "4" is 4
        ev("u", 3, T0 + 5_000, "dislike"),  # no id: r1 (r2 did not show 3)
        ev("u", 5, T0 + 10_000 + 61_000),  # after r2's window: nobody's
        ev("u", 9, T0 + 1_000),  # never shown: nobody's
        ev("v", 1, T0 - 1, rid="r3"),  # before the answer it names: nobody's
        ev("v", 2, T0 + 1_000, rid="r1"),  # names another user's answer: by time, v's r3
        ev("u", 1, T0 + 2_000, "skip", rid="nope"),  # unknown id: by time, r1
    ]
    rows, attributed = shown_items(impressions, events, WINDOW_S)
    assert attributed == 5
    flags = {
        (r["request_id"], r["item"]): (r["clicked"], r["watched"], r["skipped"], r["disliked"])
        for r in rows.iter_rows(named=True)
    }
    on = {k for k, v in flags.items() if any(v)}
    assert on == {("r1", "2"), ("r2", "4"), ("r1", "3"), ("r3", "2"), ("r1", "1")}
    assert flags[("r1", "3")] == (False, False, False, True)
    assert flags[("r1", "1")] == (False, False, True, False)
    assert flags[("r2", "4")] == (True, True, False, False)
    hits = {r["request_id"]: r["hit"] for r in rows.iter_rows(named=True)}
    assert hits == {"r1": True, "r2": True, "r3": True}


def test_metrics_divide_by_what_they_say() -> None:
    # user a: two answers of 10 items, one watch at position 2 and one at position 12 (k=20)
    impressions = [
        imp("a1", "a", list(range(20)), T0),
        imp("a2", "a", list(range(100, 110)), T0 + 100_000),
        imp("b1", "b", list(range(5)), T0),
    ]
    events = [
        ev("a", 2, T0 + 1_000, rid="a1"),
        ev("a", 12, T0 + 2_000, rid="a1"),
        ev("a", 100, T0 + 101_000, "dislike", rid="a2"),
        ev("b", 0, T0 + 1_000, "click", rid="b1"),
    ]
    catalogues = {"b1": Catalogue(200, {str(i): i / 200 for i in range(200)})}
    report = online_report(
        impressions, events, catalogues, OnlineOptions(window_s=WINDOW_S, resamples=200)
    )
    m = {k: v.value for k, v in report.overall.metrics.items()}  # rounded to 6 decimals
    assert report.overall.items_shown == 35 and report.overall.impressions == 3
    assert m["ctr@5"] == pytest.approx((1 + 0 + 1) / (5 + 5 + 5), abs=1e-6)
    assert m["ctr@10"] == pytest.approx((1 + 0 + 1) / (10 + 10 + 5), abs=1e-6)
    assert m["ctr@20"] == pytest.approx((2 + 0 + 1) / (20 + 10 + 5), abs=1e-6)
    assert m["watch_rate"] == pytest.approx(2 / 35, abs=1e-6)  # a click is not a watch
    assert m["completion"] == pytest.approx(0.5, abs=1e-6)
    assert m["hit_rate"] == pytest.approx(2 / 3, abs=1e-6)
    assert m["dislike_rate"] == pytest.approx(1 / 35, abs=1e-6)
    assert m["skip_rate"] == 0
    shown = [*range(20), *range(100, 110), *range(5)]
    assert m["pop_pct"] == pytest.approx(np.mean([i / 200 for i in shown]), abs=1e-6)
    assert m["coverage"] == pytest.approx(30 / 200, abs=1e-6)
    assert set(report.breakdowns) == {"build", "arm", "device", "fallback"}
    assert report.breakdowns["fallback"]["none"].impressions == 3
    assert report.comparisons == []  # one arm


def test_ratio_interval_and_two_sample_test() -> None:
    rng = np.random.default_rng(3)
    shown = rng.integers(5, 30, 400).astype(float)
    clicks = rng.binomial(shown.astype(int), 0.1).astype(float)
    ci = bootstrap_ratio_ci(clicks, shown, resamples=500, seed=1)
    assert ci.low < clicks.sum() / shown.sum() < ci.high
    assert ci.high - ci.low < 0.03
    # the same rate in both arms: no difference found; a 30% lift: found
    other = rng.binomial(shown.astype(int), 0.1).astype(float)
    same = two_sample_ratio((clicks, shown), (other, shown), 500, 2000, seed=2)
    assert same.p_value > 0.05 and same.ci_low < 0 < same.ci_high
    lifted = rng.binomial(shown.astype(int), 0.13).astype(float)
    better = two_sample_ratio((clicks, shown), (lifted, shown), 500, 2000, seed=2)
    assert better.p_value < 0.01 and better.ci_low > 0 and better.p_welch < 0.01
    assert better.difference == pytest.approx(
        lifted.sum() / shown.sum() - clicks.sum() / shown.sum()
    )


def _write_log(client: redis.Redis, keys: Keys, shards: int) -> None:
    rng = np.random.default_rng(0)
    impressions, events = [], []
    for u in range(60):
        arm = "challenger" if u % 2 else "champion"
        rate = 0.3 if arm == "champion" else 0.05
        for r in range(5):
            rid = f"{u}-{r}"
            at = T0 + (u * 10 + r) * 1000
            impressions.append(imp(rid, f"u{u}", list(range(10)), at, arm))
            if rng.random() < rate:
                events.append(ev(f"u{u}", int(rng.integers(10)), at + 500, rid=rid))
    pipe = client.pipeline(transaction=False)
    queue_impressions(pipe, keys, shards, 10_000, impressions)
    for e in events:
        queue_logged_event(pipe, keys, shards, 10_000, e)
    pipe.execute()


def test_the_commands_read_the_log(
    redis_client: redis.Redis,
    redis_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    prefix = f"test-online-{tmp_path.name}"
    keys = Keys(prefix)
    _write_log(redis_client, keys, 8)
    assert len(read_impressions(redis_client, keys, 8)) == 300
    (tmp_path / "art").mkdir()
    env = ["--artifacts", str(tmp_path / "art"), "--redis-url", redis_url, "--window", "1m"]
    monkeypatch.setenv("RECSYS_KEY_PREFIX", prefix)
    assert main(["online-report", *env, "--out", str(tmp_path / "out"), "--bootstrap", "100"]) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["impressions"] == 300
    assert {p.name for p in (tmp_path / "out").iterdir()} == {
        "report.json",
        "report.md",
        "report.html",
    }
    md = (tmp_path / "out" / "report.md").read_text()
    assert "## A/B: arms compared" in md and "## By arm" in md
    assert main(["ab", "report", *env, "--bootstrap", "100", "--permutations", "500"]) == 0
    printed = capsys.readouterr().out
    assert "**challenger** (30 users) against **champion** (30 users)" in printed
    assert "significant at 1%" in printed
    # a period with nothing in it: one line, exit 2
    assert main(["online-report", *env, "--out", str(tmp_path / "x"), "--since", "1"]) == 0
    empty = ["--until", "1"]
    assert main(["online-report", *env, "--out", str(tmp_path / "x"), *empty]) == 2
    assert "holds no answer for this period" in capsys.readouterr().err
