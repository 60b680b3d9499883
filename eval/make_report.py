"""``make report``: regenerate the evaluation reports kept in ``docs/reports/``.

- ``ml-latest-small/``: MovieLens ml-latest-small (converted on the fly from
  ``../shared/data/ml-latest-small`` into a temporary directory; the data is never written to
  the repository), leave-last-out.
- ``synth/``: ``recsys data synth`` with its defaults, leave-last-out.
- ``synth-walk-forward/``: the same log, walk-forward. Its 88 days hold two whole 30-day folds
  after a first month of history, so 2 folds rather than the default 3.

It also rewrites the metric list of ``docs/METRICS.md`` from the metric table.

Each takes under a minute on the 2-core development machine. Usage:
``python -m eval.make_report [--out docs/reports] [--movielens DIR]``.
"""

import argparse
import logging
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MOVIELENS = REPO.parent / "shared" / "data" / "ml-latest-small"

log = logging.getLogger("make_report")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.make_report", description=__doc__)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "reports")
    parser.add_argument("--movielens", type=Path, default=MOVIELENS)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S"
    )
    from eval.run import run_eval
    from recsys.config import Settings
    from recsys.data.dataset import write_dataset
    from recsys.data.movielens import convert_movielens
    from recsys.data.synth import generate_synthetic
    from recsys.evaluation.metric_table import with_metrics_markdown
    from recsys.evaluation.online_metric_table import with_online_metrics_markdown
    from recsys.evaluation.protocol import EvalOptions, Protocol

    settings = Settings()
    metrics_doc = REPO / "docs" / "METRICS.md"
    metrics_doc.write_text(
        with_online_metrics_markdown(with_metrics_markdown(metrics_doc.read_text()))
    )
    with tempfile.TemporaryDirectory(prefix="recsys-report-") as work:
        runs: list[tuple[str, Path, Protocol, EvalOptions]] = []
        if args.movielens.is_dir():
            ml = Path(work) / "ml-latest-small"
            write_dataset(convert_movielens(args.movielens), ml)
            runs.append(("ml-latest-small", ml, "leave-last-out", EvalOptions()))
        else:
            log.warning("%s not found: the ml-latest-small report is left as it is", args.movielens)
        synth = Path(work) / "synth"
        write_dataset(generate_synthetic(), synth)
        runs.append(("synth", synth, "leave-last-out", EvalOptions()))
        runs.append(("synth-walk-forward", synth, "walk-forward", EvalOptions(folds=2)))
        for name, data, protocol, options in runs:
            out = args.out / name
            shutil.rmtree(out, ignore_errors=True)  # no stale plot survives a regeneration
            log.info("report %s (%s) -> %s", name, protocol, out)
            label = "ml-latest-small" if name.startswith("ml") else "recsys data synth (defaults)"
            run_eval(data, out, protocol, settings, options, label=label)
    return 0


if __name__ == "__main__":
    sys.exit(main())
