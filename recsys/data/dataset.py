"""The in-memory form of a dataset directory, normalised so later code never checks for columns.

Normalised interactions: ``user_id`` and ``item_id`` (Int64 or String, as the user gave them),
``timestamp`` Int64 unix seconds, ``weight`` Float32 (1.0 when absent), ``device`` String
(``"unknown"`` when absent), ``completion`` Float32 (null when absent), ``type`` Enum of
``recsys.feedback.EVENT_TYPES`` (``"watch"`` when absent). Sorted by timestamp.

Normalised items: ``item_id`` (same dtype as in interactions), ``title`` String, ``genres`` String
(pipe-separated, "" when absent), ``release_ts`` Int64 (null when absent), ``duration_min`` Float32
(null when absent). Every item id in interactions appears in items.
"""

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from recsys.columns import Columns


@dataclass(frozen=True)
class Dataset:
    interactions: pl.DataFrame
    items: pl.DataFrame

    @property
    def n_users(self) -> int:
        return self.interactions[Columns.user].n_unique()

    @property
    def n_items(self) -> int:
        return self.items.height


def write_dataset(dataset: Dataset, out_dir: Path) -> None:
    """Write both files as Parquet; each lands under its final name only once fully written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, frame in (("interactions", dataset.interactions), ("items", dataset.items)):
        final = out_dir / f"{name}.parquet"
        tmp = out_dir / f".{name}.parquet.tmp"
        frame.write_parquet(tmp)
        tmp.replace(final)
