"""Bit flags remembering which source(s) found a candidate (a ranker feature)."""

from enum import IntFlag


class Source(IntFlag):
    ALS = 1
    POPULAR = 2
