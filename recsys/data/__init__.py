"""Dataset contract: loading, validation, synthetic data, MovieLens conversion, hold-out splits."""
