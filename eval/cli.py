"""The ``recsys eval`` arguments, and the function the CLI calls with them.

Only argparse is imported here: ``recsys --help`` builds every subcommand's parser, and the
evaluation's own imports (polars, LightGBM, matplotlib) wait until an evaluation runs.
"""

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from recsys.config import Settings

PROTOCOLS = ("leave-last-out", "temporal", "walk-forward")  # == recsys.data.split.PROTOCOLS


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="report directory")
    parser.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default="leave-last-out",
        help="leave-last-out: each user's last event; temporal: the last 10%% of time; "
        "walk-forward: --folds windows of --fold-days at the end, one build each",
    )
    parser.add_argument("--folds", type=int, default=3, help="walk-forward folds (default 3)")
    parser.add_argument(
        "--fold-days", type=int, default=30, help="walk-forward test window in days (default 30)"
    )
    parser.add_argument(
        "--compare",
        nargs="+",
        type=Path,
        metavar="SETTINGS_JSON",
        help="CHALLENGER or CHAMPION CHALLENGER: JSON files of settings overrides, e.g. "
        '{"als": {"factors": 128}}; both are built on the same split and compared per user '
        "(without CHAMPION: the current settings)",
    )
    parser.add_argument(
        "--bootstrap", type=int, default=1000, help="bootstrap resamples (default 1000)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of every resampling")
    parser.add_argument(
        "--no-drift", action="store_true", help="skip the feature drift section (one ALS fit)"
    )
    parser.add_argument("--label", help="dataset name shown in the report (default: DATA_DIR)")
    parser.add_argument("--redis-url")


def run_from_args(args: argparse.Namespace, settings: "Settings") -> None:
    """Run what the parsed arguments ask for; bad combinations are a ``RecsysError`` (one line,
    exit code 2 in the CLI)."""
    from eval.run import run_compare, run_eval
    from recsys.errors import RecsysError
    from recsys.evaluation.protocol import EvalOptions

    for name in ("folds", "fold_days", "bootstrap"):
        if getattr(args, name) < 1:
            flag = "--" + name.replace("_", "-")
            raise RecsysError(f"{flag} must be at least 1, got {getattr(args, name)}")
    options = EvalOptions(
        folds=args.folds,
        fold_days=args.fold_days,
        resamples=args.bootstrap,
        seed=args.seed,
        drift_requests=0 if args.no_drift else EvalOptions.drift_requests,
    )
    if args.compare is None:
        run_eval(args.data_dir, args.out, args.protocol, settings, options, args.label)
        return
    if len(args.compare) > 2:
        raise RecsysError(
            f"--compare takes CHALLENGER or CHAMPION CHALLENGER, got {len(args.compare)} files"
        )
    champion, challenger = ([None, *args.compare])[-2:]
    run_compare(
        args.data_dir, args.out, args.protocol, settings, champion, challenger, options, args.label
    )
