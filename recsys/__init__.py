"""recsys: a two-stage recommender library (candidates -> ranker) with an online API on top."""

__version__ = "0.1.0"
