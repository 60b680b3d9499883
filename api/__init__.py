"""Entry point of the online API (``recsys serve``): FastAPI over ``recsys.serving``."""
