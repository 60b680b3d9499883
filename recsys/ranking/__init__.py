"""Stage 2: labels, training set and the LambdaRank ranker."""
