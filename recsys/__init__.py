"""recsys: a two-stage recommender library (candidates -> ranker) with an online API on top.

The one place that holds BLAS to one thread, here because every entry point imports ``recsys``
before numpy loads OpenBLAS (which reads the variable once, at load). implicit parallelises ALS
itself and warns when BLAS threads too: a BLAS thread pool on top oversubscribes the cores
(implicit README, "OpenBLAS"). ``setdefault``: an explicit setting wins.
"""

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"
