"""``recsys data synth`` and ``recsys data movielens``."""

import logging
from pathlib import Path

from recsys.data.dataset import write_dataset
from recsys.data.movielens import convert_movielens
from recsys.data.synth import generate_synthetic

log = logging.getLogger(__name__)


def synth(out_dir: Path, users: int, items: int, seed: int) -> None:
    dataset = generate_synthetic(n_users=users, n_items=items, seed=seed)
    write_dataset(dataset, out_dir)
    log.info(
        "wrote %d events of %d users on %d items to %s",
        dataset.interactions.height,
        dataset.n_users,
        dataset.n_items,
        out_dir,
    )


def movielens(src_dir: Path, out_dir: Path, release_years: bool = True) -> None:
    dataset = convert_movielens(src_dir, release_years)
    write_dataset(dataset, out_dir)
    log.info(
        "wrote %d events of %d users on %d items to %s",
        dataset.interactions.height,
        dataset.n_users,
        dataset.n_items,
        out_dir,
    )
