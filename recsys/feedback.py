"""Kinds of user feedback, declared once: what an event of each type means to serving, to stage 1
and to the ranker.

A *positive* event (a watch, a click) is evidence of taste: it joins the user's history, ALS
fits on it, the item table counts it, and the ranker learns it as a label. A *negative* event
(a skip, a dislike) says "not this": the item leaves that user's candidates at once and for good
(the next build excludes it like a watched item), ALS and the item table ignore it, and in the
ranker's training set it is a labelled negative, always kept among the sampled ones. Either
way an item the user reacted to never comes back to them.

The data contract's optional ``type`` column and ``POST /events``' ``type`` field take these
names; a log without the column is a log of watches.
"""

from dataclasses import dataclass
from typing import Final, Literal, get_args

import polars as pl

from recsys.columns import Columns

EventType = Literal["watch", "click", "skip", "dislike"]
EVENT_TYPES: Final[tuple[EventType, ...]] = get_args(EventType)
DEFAULT_EVENT_TYPE: Final[EventType] = "watch"
EVENT_TYPE_DTYPE: Final = pl.Enum(EVENT_TYPES)
"""The normalised ``type`` column: one byte per event, not a string."""


@dataclass(frozen=True)
class EventKind:
    name: EventType
    positive: bool
    meaning: str


EVENT_KINDS: Final = (
    EventKind("watch", True, "the user watched the item (completion says how much)"),
    EventKind("click", True, "the user opened the item from a recommendation"),
    EventKind("skip", False, "the user passed over the item"),
    EventKind("dislike", False, "the user said they do not want the item"),
)
if tuple(k.name for k in EVENT_KINDS) != EVENT_TYPES:
    raise RuntimeError("EVENT_KINDS must list every EventType once, in its order")
POSITIVE_TYPES: Final = frozenset(k.name for k in EVENT_KINDS if k.positive)
NEGATIVE_TYPES: Final = frozenset(k.name for k in EVENT_KINDS if not k.positive)


def is_positive(event_type: str) -> bool:
    return event_type in POSITIVE_TYPES


def positive_expr() -> pl.Expr:
    """True for the rows of a normalised interactions frame that are positive events."""
    return pl.col(Columns.event_type).is_in(sorted(POSITIVE_TYPES))


def positive_mask(events: pl.DataFrame) -> pl.Series:
    """Positive rows of an interactions frame; a frame without the ``type`` column (one built by
    hand rather than normalised) is all watches."""
    if Columns.event_type not in events.columns:
        return pl.Series(Columns.event_type, [True] * events.height, dtype=pl.Boolean)
    return events.select(positive_expr()).to_series()


def positives(events: pl.DataFrame) -> pl.DataFrame:
    """The positive events of an interactions frame (all of them without a ``type`` column)."""
    if Columns.event_type not in events.columns:
        return events
    return events.filter(positive_expr())
