"""Entry point of ``recsys eval``: hold out, build, score, write the report."""
