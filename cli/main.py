"""``recsys``: argument parsing and the one place where errors become a line and an exit code."""

import argparse
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from recsys.config import Settings

from eval.cli import add_eval_arguments  # argparse and pathlib only: --help stays instant
from eval.tune_cli import add_tune_arguments  # the same
from loadtest.cli import add_loadtest_arguments  # the same

EXIT_USAGE = 2
CONFIG_HELP = (
    'JSON file of settings, e.g. {"als": {"factors": 128}} or what `recsys tune` wrote; '
    "applied over the environment's settings"
)


def _build_name(text: str) -> str:
    from recsys.experiment import check_build_name

    try:
        return check_build_name(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _duration(text: str) -> float:
    from recsys.durations import parse_duration

    try:
        return parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _unix_s(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected unix seconds") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: unix seconds cannot be negative")
    return value


def _add_period(p: argparse.ArgumentParser) -> None:
    p.add_argument("--since", type=_unix_s, help="first answer, unix s (default: the log's start)")
    p.add_argument("--until", type=_unix_s, help="last answer, unix s (default: now)")


def _add_online(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--artifacts",
        type=Path,
        required=True,
        help="the builds that answered (item popularity, catalogue size; its local Redis)",
    )
    _add_period(p)
    p.add_argument(
        "--window",
        type=_duration,
        default=1800.0,
        help="attribution window: events this long after an answer count for it (default 30m)",
    )
    p.add_argument("--bootstrap", type=int, default=1000, help="resamples of the users")
    p.add_argument("--permutations", type=int, default=10_000, help="of each A/B p-value")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--redis-url")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="recsys", description="Two-stage recommender service.")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="prepare a dataset directory").add_subparsers(
        dest="data_command", required=True
    )
    s = data.add_parser("synth", help="generate a synthetic streaming log")
    s.add_argument("out_dir", type=Path)
    s.add_argument("--users", type=int, default=5000)
    s.add_argument("--items", type=int, default=1000)
    s.add_argument("--seed", type=int, default=0)
    m = data.add_parser("movielens", help="convert a MovieLens folder")
    m.add_argument("src_dir", type=Path)
    m.add_argument("out_dir", type=Path)
    m.add_argument(
        "--no-release-years",
        action="store_true",
        help="leave release_ts empty (items keep title and genres only)",
    )

    b = sub.add_parser("build", help="run the offline job")
    b.add_argument("data_dir", type=Path)
    b.add_argument("--artifacts", type=Path, required=True)
    b.add_argument("--redis-url", help="redis://HOST:PORT, or redis+cluster://HOST:PORT (any node)")
    b.add_argument(
        "--ray-address",
        help="auto or HOST:PORT: run the per-user stage as Ray tasks (pip install 'recsys[scale]')",
    )
    b.add_argument("--config", type=Path, help=CONFIG_HELP)
    b.add_argument(
        "--name",
        type=_build_name,
        default="champion",
        help="the build line it publishes to (default champion; e.g. challenger for an A/B)",
    )

    o = sub.add_parser(
        "online-report", help="online metrics: impressions joined with the events that followed"
    )
    _add_online(o)
    o.add_argument("--out", type=Path, required=True, help="report directory")

    ab = sub.add_parser("ab", help="A/B between build lines").add_subparsers(
        dest="ab_command", required=True
    )
    ar = ab.add_parser("report", help="compare the arms on per-user online metrics")
    _add_online(ar)
    ar.add_argument("--out", type=Path, help="also write the whole online report here")
    ap = ab.add_parser("promote", help="make a build line's newest build the champion")
    ap.add_argument("name", type=_build_name)
    ap.add_argument("--artifacts", type=Path, help="artifacts whose local Redis serves builds")
    ap.add_argument("--redis-url", help="redis://HOST:PORT, or redis+cluster://HOST:PORT")

    ev = sub.add_parser("events", help="the API's events").add_subparsers(
        dest="events_command", required=True
    )
    ex = ev.add_parser("export", help="events from the API's log as interactions")
    ex.add_argument("out_dir", type=Path)
    ex.add_argument(
        "--data",
        type=Path,
        help="a dataset to merge them into (OUT_DIR is then a dataset the next build reads); "
        "without it, OUT_DIR/interactions.parquet holds the events alone",
    )
    ex.add_argument("--artifacts", type=Path, help="artifacts whose local Redis holds the log")
    _add_period(ex)
    ex.add_argument("--redis-url", help="redis://HOST:PORT, or redis+cluster://HOST:PORT")

    g = sub.add_parser(
        "gc", help="remove what killed builds left, and builds no serving worker needs"
    )
    g.add_argument("--artifacts", type=Path, required=True)
    g.add_argument("--redis-url")

    e = sub.add_parser("eval", help="hold out, build, score, write a report")
    add_eval_arguments(e)
    e.add_argument("--config", type=Path, help=CONFIG_HELP)

    t = sub.add_parser("tune", help="search settings on a validation split (optuna)")
    add_tune_arguments(t)
    t.add_argument("--config", type=Path, help="settings to start from; " + CONFIG_HELP)

    v = sub.add_parser("serve", help="run the API")
    v.add_argument("--artifacts", type=Path, required=True)
    v.add_argument("--host")
    v.add_argument("--port", type=int)
    v.add_argument("--workers", type=int, help="processes (default 1)")
    v.add_argument("--redis-url")
    v.add_argument(
        "--eval-report",
        type=Path,
        help="an evaluation report (report.json or its folder) for the dashboard's overview",
    )

    lt = sub.add_parser("loadtest", help="locust against the API; non-zero exit over thresholds")
    add_loadtest_arguments(lt)

    d = sub.add_parser("demo", help="the whole lifecycle on embedded defaults")
    d.add_argument(
        "--out",
        type=Path,
        default=Path("demo-output"),
        help="a new or empty folder, or one an earlier demo created (it is replaced)",
    )
    d.add_argument("--users", type=int, default=4000)
    d.add_argument("--items", type=int, default=800)
    d.add_argument(
        "--redis-url",
        help="use this Redis (keys under the prefix recsys-demo); default: a local server of "
        "the demo's own, whatever RECSYS_REDIS_URL says",
    )
    return p


# demo and loadtest write synthetic builds and events: they never go into the Redis that
# RECSYS_REDIS_URL configures (production, say) unless --redis-url names one, and then under
# a key prefix of their own, so they can never publish over a real build (issue 12)
TOOL_KEY_PREFIXES = {"demo": "recsys-demo", "loadtest": "recsys-loadtest"}


def _positive(parser: argparse.ArgumentParser, **values: int) -> None:
    for name, value in values.items():
        if value < 1:
            parser.error(f"--{name} must be at least 1, got {value}")


def _exit_on_sigterm(signum: int, frame: object) -> None:
    # SIGTERM (a scheduler, `kill`) would end the process without unwinding: context managers
    # and atexit would not run, and an embedded redis-server would outlive us unsaved
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )
    # faiss reports at INFO which CPU build it tried to load; not news to a user
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    # imports after parsing: `recsys --help` stays instant
    from pydantic import ValidationError

    from recsys.config import Settings, SettingsError, read_overrides, with_overrides
    from recsys.errors import RecsysError

    try:
        settings = Settings()
        if getattr(args, "config", None):
            settings = with_overrides(settings, read_overrides(args.config), args.config)
        if getattr(args, "redis_url", None):  # the command line has the last word
            settings = settings.model_copy(update={"redis_url": args.redis_url})
        if getattr(args, "ray_address", None):  # validated like any setting
            ray_cfg = type(settings.ray).model_validate(
                settings.ray.model_dump() | {"address": args.ray_address}
            )
            settings = settings.model_copy(update={"ray": ray_cfg})
        if args.command in TOOL_KEY_PREFIXES:
            settings = _tool_settings(settings, args.redis_url, TOOL_KEY_PREFIXES[args.command])
        if args.command == "serve":
            flags = {"host": args.host, "port": args.port, "workers": args.workers}
            given = {k: v for k, v in flags.items() if v is not None}
            # validated like any setting: --port 0 or --workers 0 is a usage error
            serve_cfg = type(settings.serve).model_validate(settings.serve.model_dump() | given)
            settings = settings.model_copy(update={"serve": serve_cfg})
            if args.eval_report is not None:
                ui = settings.ui.model_copy(update={"eval_report": args.eval_report.resolve()})
                settings = settings.model_copy(update={"ui": ui})
        return _run(parser, args, settings)
    except RecsysError as e:
        print(f"recsys: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except ValidationError as e:
        print(f"recsys: error: {SettingsError.from_validation(e)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def _tool_settings(settings: "Settings", explicit_url: str | None, prefix: str) -> "Settings":
    if settings.redis_url and not explicit_url:
        logging.getLogger("recsys").info(
            "not using RECSYS_REDIS_URL: this command starts a Redis of its own unless "
            "--redis-url names one"
        )
    if explicit_url:
        return settings.model_copy(update={"redis_url": explicit_url, "key_prefix": prefix})
    return settings.model_copy(update={"redis_url": None})


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace, settings: "object") -> int:
    from recsys.config import Settings

    assert isinstance(settings, Settings)
    if args.command == "data" and args.data_command == "synth":
        _positive(parser, users=args.users, items=args.items)
        from offline.data import synth

        synth(args.out_dir, args.users, args.items, args.seed)
    elif args.command == "data":
        from offline.data import movielens

        movielens(args.src_dir, args.out_dir, release_years=not args.no_release_years)
    elif args.command == "build":
        from offline.build import build

        build(args.data_dir, args.artifacts, settings, args.name)
    elif args.command == "gc":
        from offline.gc import gc

        for line in gc(args.artifacts, settings).lines():
            print(line)
    elif args.command in ("online-report", "ab") and getattr(args, "ab_command", None) != "promote":
        _online(parser, args, settings)
    elif args.command == "ab":
        from offline.promote import promote_build

        promote_build(args.name, settings, args.artifacts)
    elif args.command == "events":
        from offline.events import export_events

        export_events(
            args.out_dir, settings, args.data, args.artifacts, _ms(args.since), _ms(args.until)
        )
    elif args.command == "eval":
        from eval.cli import run_from_args

        run_from_args(args, settings)
    elif args.command == "tune":
        from eval.tune_cli import run_from_args as run_tune

        run_tune(args, settings)
    elif args.command == "serve":
        from api.serve import serve

        serve(args.artifacts, settings)
    elif args.command == "demo":
        _positive(parser, users=args.users, items=args.items)
        from cli.demo import demo

        demo(args.out, args.users, args.items, settings)
    elif args.command == "loadtest":
        _positive(parser, users=args.users, items=args.items, repeat=args.repeat)
        from loadtest.cli import run_from_args as run_loadtest

        return run_loadtest(args, settings)
    return 0


def _ms(unix_s: int | None) -> int | None:
    return None if unix_s is None else unix_s * 1000


def _online(parser: argparse.ArgumentParser, args: argparse.Namespace, settings: object) -> None:
    from eval.online import Period, run_ab_report, run_online_report
    from recsys.config import Settings
    from recsys.evaluation.online import OnlineOptions

    assert isinstance(settings, Settings)
    _positive(parser, bootstrap=args.bootstrap, permutations=args.permutations)
    options = OnlineOptions(args.window, args.bootstrap, args.permutations, args.seed)
    period = Period(_ms(args.since), _ms(args.until))
    if args.command == "online-report":
        run_online_report(settings, args.artifacts, args.out, period, options)
    else:
        run_ab_report(settings, args.artifacts, args.out, period, options)


if __name__ == "__main__":
    sys.exit(main())
