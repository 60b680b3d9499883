"""Dense integer indices for the user's own ids (which stay strings or ints, as given)."""

from dataclasses import dataclass

import numpy as np
import polars as pl


@dataclass(frozen=True)
class IdIndex:
    """Position ``i`` of ``ids`` is the dense index of that id."""

    ids: pl.Series

    @classmethod
    def from_values(cls, values: pl.Series) -> "IdIndex":
        return cls(values.unique(maintain_order=True).alias("id"))

    def __len__(self) -> int:
        return self.ids.len()

    def lookup(self, values: pl.Series) -> np.ndarray:
        """Dense indices of ``values`` (int32), -1 for ids not in the index."""
        table = pl.DataFrame({"id": self.ids, "idx": np.arange(len(self), dtype=np.int32)})
        probe = pl.DataFrame({"id": values.cast(self.ids.dtype, strict=False)})
        return (
            probe.join(table, on="id", how="left", maintain_order="left")["idx"]
            .fill_null(-1)
            .to_numpy()
            .astype(np.int32)
        )

    def keys(self) -> list[str]:
        """Ids as the strings used in Redis keys and URLs."""
        return self.ids.cast(pl.String).to_list()
