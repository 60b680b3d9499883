"""Entry point of the offline job: data preparation and ``recsys build``."""
