"""The ``recsys`` command: one parser that dispatches to the entry points."""
