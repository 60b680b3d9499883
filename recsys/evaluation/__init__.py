"""Offline evaluation, one module per job:

- ``protocol``: splits (leave-last-out, temporal, walk-forward), what a build may read, the
  held-out requests, and the options of a run;
- ``served``: what a build serves each request, read back from Redis through the store;
- ``baselines``: popularity, item-kNN and plain ALS on the same training events;
- ``metric_table`` (every metric, declared once), ``ranking_metrics`` (the per-user functions)
  and ``scoring`` (every metric at every k, and segments);
- ``candidate_recall``: stage 1 on its own, merged and per source;
- ``drift``: PSI of every feature and of the ranker's score, training window vs test window;
- ``stats`` and ``comparison``: bootstrap intervals, paired tests, walk-forward means,
  champion vs challenger;
- ``runs``: the build-and-score loop that ``recsys eval``, ``make report`` and the benchmarks
  call;
- ``records`` (the typed report), ``report`` (markdown and HTML) and ``plots``.
"""
