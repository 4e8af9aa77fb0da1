"""Paired statistics over stored cells: is A really better than B, ranks with uncertainty, how big n must be.

- `bench.stats.paired`: the paired bootstrap (one draw of sample ids for both cells; percentile interval,
  centred-difference p-value; resamples and seed recorded) and vectorised per-sample statistics.
- `bench.stats.setstats`: set metrics (FID, IS, any accumulator) recomputed from kept features per replicate.
- `bench.stats.source`: cells named by key / prefix / ``model:steps:cfg@dataset``, their scores and features.
- `bench.stats.compare`: `compare(db, a, b)`, one row per metric (also `bench compare` and `bench.compare`).
- `bench.stats.ranks`: rank intervals of a leaderboard (MMHM recomputed per replicate, bounds included).
- `bench.stats.samplesize`: FID and MMHM against n over nested subsets.
"""
