"""Every candidate source, listed once, in merge-priority order: each source fills up to its
quota with items no earlier source took; ``fills_rest`` sources (ALS) then fill what is left.

To add a source: a module that declares a ``SourceSpec`` (name, an unused flag bit, default
quota, builder), and one line here. Settings, flags, ranker features, evaluation and the shared
contract test all follow from this list (docs/ARCHITECTURE.md has a worked example).
"""

from typing import Final

from recsys.candidates import als, item_to_item, ranked_lists, sequential
from recsys.candidates.source import SourceTable

SOURCES: Final = SourceTable(
    [
        als.ALS,
        sequential.SEQUENTIAL,
        item_to_item.ITEM_FACTORS,
        item_to_item.ITEM_CONTENT,
        ranked_lists.POPULAR,
        ranked_lists.FRESH,
    ]
)
