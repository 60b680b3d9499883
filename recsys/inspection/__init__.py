"""What a build keeps so that people can look inside it (the dashboard, ``/ui``), and the pure
functions that turn it into pages' data.

A build saves, cheaply and off the request path: each item's activity over time, the neighbour
tables of its item-to-item sources, the users a sample of answers recommends each item to, and
the distribution of the ranker's features in its training window (the reference of live drift).
"""
