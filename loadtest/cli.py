"""Arguments of ``recsys loadtest``. Imports argparse and pathlib only, so ``--help`` is instant;
the runner (polars, redis, the build) is imported when the command runs."""

import argparse
import json
from pathlib import Path

DEFAULT_OUT = Path("bench-output/loadtest/run")


def _rates(text: str) -> list[float]:
    try:
        rates = [float(r) for r in text.split(",") if r.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected req/s like 150 or 150,300,450"
        ) from None
    if not rates or any(r <= 0 for r in rates):
        raise argparse.ArgumentTypeError(f"{text!r}: rates must be positive")
    return rates


def _split(text: str) -> dict[str, float]:
    try:
        shares = json.loads(text)
    except json.JSONDecodeError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a JSON object of shares") from None
    if not isinstance(shares, dict) or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in shares.values()
    ):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a JSON object of shares")
    return {str(k): float(v) for k, v in shares.items()}


def add_loadtest_arguments(p: argparse.ArgumentParser) -> None:
    target = p.add_mutually_exclusive_group()
    target.add_argument(
        "--host",
        help="a running API (needs --data), or replicas of it as URL,URL (clients are dealt "
        "round-robin); default: start our own. Its POST /events are real writes to that API's "
        "Redis (the data's users): aim it at a staging copy",
    )
    p.add_argument(
        "--data", type=Path, help="dataset the traffic is drawn from (and built, without --host)"
    )
    target.add_argument(
        "--artifacts",
        type=Path,
        help="build here, or reuse the build already here (default: a temporary directory)",
    )
    p.add_argument(
        "--users-rate",
        type=_rates,
        default=[150.0],
        metavar="RATE[,RATE...]",
        help="offered req/s; several (e.g. 150,300,600) step through them for the saturation "
        "table (default 150)",
    )
    p.add_argument("--duration", default="60s", help="measured time per rate (default 60s)")
    p.add_argument("--ramp", default="5s", help="ramp-up before statistics reset (default 5s)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"reports (default {DEFAULT_OUT})")
    p.add_argument("--workers", type=int, help="server processes (default: serve.workers)")
    p.add_argument("--mean-wait", type=float, default=1.0, help="client think time, s (default 1)")
    p.add_argument("--max-p99-ms", type=float, default=100.0, help="fail above (default 100)")
    p.add_argument("--max-failures", type=int, default=0, help="fail above (default 0)")
    p.add_argument("--users", type=int, default=20_000, help="synthetic users without --data")
    p.add_argument("--items", type=int, default=2_000, help="synthetic items without --data")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--repeat", type=int, default=1, help="runs of the whole series; the table shows medians"
    )
    p.add_argument(
        "--wait-idle",
        action="store_true",
        help="measure on a quiet machine: wait for a load average < 0.5, and before each rate "
        "for < 0.3 busy cores",
    )
    p.add_argument("--redis-url", help="Redis for our own server (default: a local one)")
    p.add_argument(
        "--dashboard",
        action="store_true",
        help="keep the dashboard open in headless Chromium during each step (the overview "
        "refreshing itself, a second tab through the other pages every 5 s); any error in it "
        "fails the run",
    )
    p.add_argument(
        "--ab",
        type=_split,
        default={},
        metavar="JSON",
        help='an A/B split for our own server, e.g. \'{"champion": 0.5, "challenger": 0.5}\': '
        "every arm gets a build of the same data (built once, then reused)",
    )
    p.add_argument(
        "--render",
        type=Path,
        metavar="OUT",
        help="measure nothing: print the table of the steps a finished run wrote in OUT (and "
        "rewrite OUT/series.md)",
    )


def run_from_args(args: argparse.Namespace, settings: object) -> int:
    from loadtest.results import Thresholds
    from loadtest.run import LoadtestOptions, run_loadtest
    from recsys.config import Settings
    from recsys.durations import parse_duration
    from recsys.errors import RecsysError

    assert isinstance(settings, Settings)
    if args.render:
        return _render(args.render)
    try:
        opts = LoadtestOptions(
            rates=args.users_rate,
            duration_s=parse_duration(args.duration),
            ramp_s=parse_duration(args.ramp),
            host=args.host,
            data=args.data,
            artifacts=args.artifacts,
            out=args.out,
            workers=args.workers,
            mean_wait_s=args.mean_wait,
            synth_users=args.users,
            synth_items=args.items,
            seed=args.seed,
            wait_idle=args.wait_idle,
            repeat=args.repeat,
            dashboard=args.dashboard,
            ab=args.ab,
            thresholds=Thresholds(max_p99_ms=args.max_p99_ms, max_failures=args.max_failures),
        )
    except ValueError as e:
        raise RecsysError(str(e)) from e
    return run_loadtest(opts, settings)


def _render(out: Path) -> int:
    from loadtest.results import format_series, read_series
    from recsys.errors import RecsysError

    try:
        table = format_series(read_series(out))
    except (FileNotFoundError, KeyError, TypeError, ValueError) as e:
        raise RecsysError(f"--render {out}: {e}") from e
    (out / "series.md").write_text(table + "\n")
    print(table)
    return 0
