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


__all__ = ["load", "per_class", "__version__"]
