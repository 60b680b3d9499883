"""Stage 1: candidate sources, merged into one list per user."""
