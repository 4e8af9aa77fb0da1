"""stepbench: fair benchmarking of one-step and multi-step image generators.

    import bench
    df = bench.load("results/bench.duckdb")   # one row per cell: metrics, NFE, latency, MMHM
"""

__version__ = "0.1.0"


def load(db: str = "results/bench.duckdb", latest: bool = True, mmhm_bounds=None):
    """The result store as a tidy pandas DataFrame (one row per cell, metric columns, MMHM); by default only the
    newest measurement of each sweep point (``latest=False`` for all). ``mmhm_bounds``: saved MMHM bounds for
    the full cells, a bounds file's path (`bench report --save-mmhm-bounds`, or the paper's JSON) or a mapping
    ``{dataset or "*": {"fid": [min, max], "is": ..., "clip": ..., "pick": ...}}``; default: computed from the
    store. A dataset they do not cover is a ValueError naming it."""
    from bench.store import load as _load
    return _load(db, latest=latest, mmhm_bounds=mmhm_bounds)


def per_class(db: str = "results/bench.duckdb"):
    """Per-class CLIP Score / PickScore means in long form (key, model, dataset, steps, cfg, metric, class, value)."""
    from bench.store import per_class as _per_class
    return _per_class(db)


def compare(db: str = "results/bench.duckdb", a: str = "", b: str = "", resamples: int = 1000, seed: int = 2020,
            level: float = 0.95, exact: bool = False):
    """Is cell ``a`` really better than cell ``b``? One row per metric (values, A - B, paired bootstrap interval,
    p-value, verdict); ``a``/``b``: keys, unique key prefixes or ``model:steps:cfg@dataset`` (`bench.stats.compare`)."""
    from bench.stats.compare import compare as _compare
    return _compare(db, a, b, resamples=resamples, seed=seed, level=level, exact=exact)


__all__ = ["compare", "load", "per_class", "__version__"]
