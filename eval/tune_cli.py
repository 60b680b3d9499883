"""The ``recsys tune`` arguments, and the function the CLI calls with them.

Only argparse is imported at the top, as in ``eval/cli.py``: ``recsys --help`` stays instant.
"""

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from eval.cli import PROTOCOLS as EVAL_PROTOCOLS

if TYPE_CHECKING:
    from recsys.config import Settings

PROTOCOLS = tuple(p for p in EVAL_PROTOCOLS if p != "walk-forward")  # one split each


def add_tune_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--trials", type=int, default=30, help="builds to try (default 30)")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("tune-output"),
        help="where best.json (a --config file) and trials.md/json go (default tune-output)",
    )
    parser.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default="leave-last-out",
        help="how the validation events are held out of the training events",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the search")
    parser.add_argument("--redis-url")


def run_from_args(args: argparse.Namespace, settings: "Settings") -> None:
    from eval.tune import run_tune
    from recsys.errors import RecsysError

    if args.trials < 1:
        raise RecsysError(f"--trials must be at least 1, got {args.trials}")
    run_tune(args.data_dir, args.out, settings, args.trials, args.protocol, args.seed)
