"""A/B between named builds: the split, serving several build lines at once, hot swaps per arm,
promotion under traffic, and what a named build may delete."""

import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from cli.main import main
from recsys.config import Settings, SettingsError, with_overrides
from recsys.experiment import TrafficSplit
from recsys.gc import collect_garbage
from recsys.pipeline import BuildResult, run_build
from recsys.store.user_store import current_build, promote
from tests.test_api_support import Built, api_client, build_small

SPLIT = {"champion": 0.5, "challenger": 0.5}


def test_the_split_is_stable_and_shares_hold() -> None:
    split = TrafficSplit.of({"champion": 0.9, "challenger": 0.1}, salt="exp-1")
    users = [f"user-{i}" for i in range(20_000)]
    arms = [split.assign(u) for u in users]
    assert arms == [split.assign(u) for u in users]  # the same user, the same arm
    share = Counter(arms)["challenger"] / len(users)
    assert share == pytest.approx(0.1, abs=0.01)
    # a new salt is a new, independent split: agreement ~ 0.9^2 + 0.1^2
    other = [
        TrafficSplit.of({"champion": 0.9, "challenger": 0.1}, "exp-2").assign(u) for u in users
    ]
    agreement = sum(a == b for a, b in zip(arms, other, strict=True)) / len(users)
    assert agreement == pytest.approx(0.82, abs=0.02)
    # dict order does not matter; without an experiment everyone is the champion
    reordered = TrafficSplit.of({"challenger": 0.1, "champion": 0.9}, salt="exp-1")
    assert [reordered.assign(u) for u in users[:500]] == arms[:500]
    assert {TrafficSplit.of({}, "x").assign(u) for u in users[:100]} == {"champion"}


@pytest.mark.parametrize(
    ("ab", "fragment"),
    [
        ({"champion": 0.9, "challenger": 0.2}, "must sum to 1"),
        ({"champion": 1.0, "Challenger!": 0.0}, "build name 'Challenger!'"),
        ({"champion": 1.5, "challenger": -0.5}, "must be in (0, 1]"),
    ],
)
def test_a_bad_split_is_refused_in_one_line(ab: dict[str, float], fragment: str) -> None:
    with pytest.raises(SettingsError, match=r"invalid setting serve\.ab") as info:
        with_overrides(Settings(), {"serve": {"ab": ab}})
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_the_split_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSYS_SERVE__AB", '{"champion": 0.9, "challenger": 0.1}')
    assert Settings().serve.ab == {"champion": 0.9, "challenger": 0.1}


@pytest.fixture(scope="module")
def two_lines(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Built, str]:
    """A champion build and a challenger build, one key prefix and artifacts directory."""
    built = build_small(redis_url, tmp_path_factory.mktemp("artifacts"))
    with redis.Redis.from_url(redis_url) as client:
        challenger = run_build(
            built.dataset, built.artifacts, client, built.settings, name="challenger"
        )
    return built, challenger.version


def _answers(api: TestClient, users: list[str]) -> dict[str, tuple[str, str]]:
    out = {}
    for user in users:
        r = api.get(f"/recommendations/{user}", params={"k": 5})
        assert r.status_code == 200
        out[user] = (r.json()["arm"], r.json()["model_version"])
    return out


def test_each_user_gets_their_arms_build(two_lines: tuple[Built, str]) -> None:
    built, challenger = two_lines
    settings = built.with_serve(ab=SPLIT, ab_salt="t1")
    split = TrafficSplit.of(SPLIT, "t1")
    users = [*built.known_users(40), "cold-a", "cold-b"]
    with api_client(built, settings) as api:
        first = _answers(api, users)
        assert _answers(api, users) == first  # sticky
        ready = api.get("/readyz").json()
    builds = {"champion": built.version, "challenger": challenger}
    assert first == {u: (split.assign(u), builds[split.assign(u)]) for u in users}
    assert {arm for arm, _ in first.values()} == {"champion", "challenger"}
    assert ready["status"] == "ok" and ready["model_version"] == built.version
    # without an experiment: the champion for everyone, as before arms existed
    with api_client(built) as api:
        assert set(_answers(api, users).values()) == {("champion", built.version)}


def test_an_arm_without_a_build_is_answered_by_the_champion(two_lines: tuple[Built, str]) -> None:
    built, _ = two_lines
    settings = built.with_serve(ab={"champion": 0.5, "nobody": 0.5})
    users = built.known_users(20)
    with api_client(built, settings) as api:
        answers = _answers(api, users)
        ready = api.get("/readyz")
    assert set(answers.values()) == {("champion", built.version)}
    assert ready.status_code == 200
    assert "arm nobody: no build named nobody has been published" in ready.json()["detail"]


def test_promotion_under_traffic_fails_no_request(
    redis_url: str, tmp_path: Path, redis_client: redis.Redis
) -> None:
    built = build_small(redis_url, tmp_path / "artifacts")
    challenger = run_build(
        built.dataset, built.artifacts, redis_client, built.settings, name="challenger"
    )
    settings = built.with_serve(ab={"champion": 0.9, "challenger": 0.1}, ab_salt="t2")
    split = TrafficSplit.of({"champion": 0.9, "challenger": 0.1}, "t2")
    users = [u for u in built.known_users(200) if split.assign(u) == "champion"][:20]
    statuses: Counter[int] = Counter()
    seen: list[str] = []
    stop = threading.Event()

    def traffic(api: TestClient) -> None:
        i = 0
        while not stop.is_set():
            r = api.get(f"/recommendations/{users[i % len(users)]}", params={"k": 10})
            statuses[r.status_code] += 1
            if r.status_code == 200:
                seen.append(r.json()["model_version"])
            i += 1

    with api_client(built, settings) as api:
        thread = threading.Thread(target=traffic, args=(api,))
        thread.start()
        try:
            time.sleep(0.3)
            previous, version = promote(redis_client, built.keys, "challenger")
            deadline = time.monotonic() + 10
            while not seen or seen[-1] != challenger.version:
                assert time.monotonic() < deadline, "the champion did not swap in the challenger"
                time.sleep(0.02)
            time.sleep(0.3)
        finally:
            stop.set()
            thread.join()
        after = _answers(api, users)
    assert (previous, version) == (built.version, challenger.version)
    assert set(statuses) == {200}, statuses
    flipped = seen.index(challenger.version)
    assert set(seen[:flipped]) == {built.version} and set(seen[flipped:]) == {challenger.version}
    assert set(after.values()) == {("champion", challenger.version)}
    assert current_build(redis_client, built.keys) == challenger.version


def test_hot_swaps_happen_per_arm_and_keep_the_champion(
    two_lines: tuple[Built, str], redis_client: redis.Redis
) -> None:
    built, challenger = two_lines
    settings = built.with_serve(ab=SPLIT, ab_salt="t3")
    split = TrafficSplit.of(SPLIT, "t3")
    users = built.known_users(30)
    with api_client(built, settings) as api:
        newer: list[BuildResult] = []
        for _ in range(3):  # keep_builds is 2: older challenger builds go, the champion stays
            newer.append(
                run_build(
                    built.dataset, built.artifacts, redis_client, built.settings, name="challenger"
                )
            )
        deadline = time.monotonic() + 10
        while True:
            answers = _answers(api, users)
            if {v for a, v in answers.values() if a == "challenger"} == {newer[-1].version}:
                break
            assert time.monotonic() < deadline, "the challenger arm did not swap"
            time.sleep(0.05)
    for user, (arm, version) in answers.items():
        assert arm == split.assign(user)
        assert version == (built.version if arm == "champion" else newer[-1].version)
    # with no worker left and no grace period: the champion's build survives three challenger
    # builds (keep_builds counts per line); the challenger's oldest two do not
    gc = collect_garbage(redis_client, built.keys, built.artifacts, keep=2, grace_s=0)
    assert set(gc.retired) == {challenger, newer[0].version}
    assert current_build(redis_client, built.keys) == built.version
    assert redis_client.exists(built.keys.user_state(built.version, users[0]))
    assert (built.artifacts / built.version).is_dir()
    for gone in (challenger, newer[0].version):
        assert not redis_client.exists(built.keys.user_state(gone, users[0]))
        assert not (built.artifacts / gone).exists()
    assert (built.artifacts / newer[-2].version).is_dir()


def test_cli_refuses_bad_names_in_one_line(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["build", "data", "--artifacts", "art", "--name", "Bad Name"])
    assert exited.value.code == 2
    assert "build name 'Bad Name'" in capsys.readouterr().err
    code = main(["ab", "promote", "nobody", "--redis-url", redis_url])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err == ("recsys: error: no build named 'nobody' in Redis (recsys build --name nobody)")
    assert main(["ab", "promote", "champion", "--redis-url", redis_url]) == 2
    assert "champion already" in capsys.readouterr().err


def test_loadtest_checks_its_split_before_building(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["loadtest", "--ab", '{"champion": 0.7}', "--users", "10"]) == 2
    assert "arm shares must sum to 1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["loadtest", "--ab", "[0.5, 0.5]"])
    assert exited.value.code == 2
