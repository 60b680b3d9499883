"""What a candidate source is: a declaration (name, flag bit, default quota, builder), what it
may be built from, and the one question it answers.

Every source is declared once, as a ``SourceSpec`` in its own module, and listed once, in
``recsys.candidates.registry.SOURCES``. Everything else is derived from that list: the quota
settings (``RECSYS_CANDIDATES__QUOTAS__<NAME>``), the merge order, the flag bit stored on each
candidate, the ranker's ``src_<name>`` feature, the evaluation's per-source recall, and the
shared contract test every source must pass (``tests/test_candidates.py``), the way every
implicit recommender inherits one test suite.
"""

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol

import numpy as np

from recsys.candidates.ann import ItemIndex
from recsys.candidates.neighbours import NeighbourTables
from recsys.items import ItemTable

if TYPE_CHECKING:  # recsys.config derives its quota settings from the registry
    from recsys.config import CandidateConfig

FLAG_DTYPE: Final = np.uint16
"""Per-candidate source flags, as stored by the codec: room for 16 sources."""
MAX_SOURCES: Final = np.iinfo(FLAG_DTYPE).bits


@dataclass(frozen=True)
class UserBatch:
    """What the sources may know about a batch of users."""

    users: np.ndarray  # int32 [B] dense user indices
    factors: np.ndarray  # float32 [B, d]
    recent: np.ndarray  # int32 [B, L] last watches, oldest first, -1 padded on the left
    max_seen: int  # most items any user of the batch has seen: how far to over-fetch


@dataclass(frozen=True)
class SourceInputs:
    """What a source may be built from: the item side of what stage 1 learned from the build's
    events (nothing after its cut), plus the candidate settings.

    Item side only, and saved with the build: the API builds every source again from a saved
    build to answer users the build never saw (``recsys.serving.cold_start_state``). Anything a
    new source derives from the events belongs in the item table or the neighbour tables, which
    ``recsys.candidates.model`` computes once per fit."""

    items: ItemTable  # per-item arrays, the transition tables included
    neighbours: NeighbourTables  # factor and content neighbours of every item
    item_index: ItemIndex  # maximum inner product search over the item factors
    config: "CandidateConfig"


class CandidateSource(Protocol):
    """A built source: for a batch of users, items best first."""

    def candidates(self, batch: UserBatch, width: int) -> np.ndarray:
        """Item indices [B, <= width + batch.max_seen], best first, distinct per row, -1 padded
        at the end; over-fetched by ``max_seen`` because seen items are dropped afterwards."""
        ...

    def scored(self, batch: UserBatch, width: int) -> tuple[np.ndarray, np.ndarray | None]:
        """``candidates`` and their stage-1 scores [B, same width] when the source computes
        them anyway (ALS inner products), else None."""
        ...


@dataclass(frozen=True)
class SourceSpec:
    """One candidate source, declared once."""

    name: str
    """Settings key (``candidates.quotas.<name>``), report row, and ``src_<name>`` feature."""
    bit: int
    """Bit of the per-candidate flags (0-15). Stored in Redis and read by trained rankers, so a
    source keeps its bit for good; a new source takes an unused one."""
    quota: int
    """Default number of slots this source may fill per user."""
    build: Callable[[SourceInputs], CandidateSource]
    """Builds the source from a stage-1 fit; its docstring says what the source finds."""
    fills_rest: bool = False
    """Offers ``per_user`` items instead of its quota, so its leftovers fill the slots the other
    sources leave empty; built even with a quota of 0."""

    @property
    def flag(self) -> int:
        return 1 << self.bit

    @property
    def description(self) -> str:
        """What it finds (the builder's docstring), for the settings' documentation."""
        return " ".join((self.build.__doc__ or self.name).split())

    @property
    def feature(self) -> str:
        """The ranker feature that says this source found the candidate."""
        return f"src_{self.name}"


class SourceTable:
    """The declared sources, in merge-priority order (earlier sources fill their quota first).

    Checked when it is made: names and bits distinct, bits within the stored flags' width."""

    def __init__(self, specs: Sequence[SourceSpec]) -> None:
        names = [s.name for s in specs]
        bits = [s.bit for s in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"candidate source names repeat: {names}")
        if len(set(bits)) != len(bits):
            raise ValueError(f"candidate source bits repeat: {dict(zip(names, bits, strict=True))}")
        for s in specs:
            if not 0 <= s.bit < MAX_SOURCES:
                raise ValueError(f"source {s.name}: bit {s.bit} is outside 0..{MAX_SOURCES - 1}")
            if not s.name.isidentifier():
                raise ValueError(f"source name {s.name!r} must be an identifier (a settings key)")
        self._specs = tuple(specs)
        self._by_name = {s.name: s for s in specs}

    def __iter__(self) -> Iterator[SourceSpec]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def __getitem__(self, name: str) -> SourceSpec:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no candidate source {name!r}; sources: {self.names}") from None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self._specs)

    def by_bit(self) -> tuple[SourceSpec, ...]:
        """In flag-bit order: the order of the ``src_*`` features, so a new source's column
        comes after the existing ones."""
        return tuple(sorted(self._specs, key=lambda s: s.bit))

    def names_of(self, flags: int) -> list[str]:
        """The sources whose bit is set in ``flags``, in priority order."""
        return [s.name for s in self._specs if flags & s.flag]
