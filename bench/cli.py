"""`bench`: run · validate · ls · show · report · export. Thin: parsing and printing only.

Exit codes: 0 success, 1 some cells failed, 2 bad input (suite, store, arguments), 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_DB = "results/bench.duckdb"
INCLUDE_HELP = ("import a module (dotted name or .py file) that registers adapters, metrics or datasets; repeatable; "
                "Ray workers import it too (installed packages register through entry points instead)")


def _err(msg: str) -> int:
    for line in str(msg).splitlines() or [""]:
        print(f"error: {line}", file=sys.stderr)
    return 2


def _load_suite(path: str, includes: list[str] | tuple[str, ...] = ()):
    from bench import registry
    from bench.suite import Suite
    for ref in includes:                 # user modules that register adapters, metrics or datasets
        registry.include(ref)
    return Suite.load(path)


def cmd_validate(args) -> int:
    suite = _load_suite(args.suite, args.include)
    cells = suite.expand()
    import pandas as pd

    from bench import registry
    rows, total_images, total_nfe, unsized = [], 0, 0, 0
    for c in cells:
        adapter = registry.resolve("model adapter", c.model.adapter)()
        n = _planned_n(c)
        try:
            nfe = adapter.nfe_per_image(c.settings())
        except Exception:       # some adapters know their NFE only once loaded (counted at run time anyway)
            nfe = float("nan")
        if n is None:
            unsized += 1
        else:
            total_images += n
            total_nfe += n * (nfe if nfe == nfe else 0)     # NaN: adaptive solvers, counted at run time
        rows.append({"model": c.model.id, "adapter": c.model.adapter, "dataset": c.dataset, "steps": c.steps,
                     "cfg": c.cfg, "solver": c.solver, "seed": c.seed, "n": n, "nfe/img": nfe})
    df = pd.DataFrame(rows)
    print(f"suite {suite.name!r} ({args.suite}): {len(cells)} cells, {len(suite.spec.datasets)} datasets, "
          f"{len(suite.spec.models)} models, metrics: {', '.join(suite.spec.metrics)}")
    with pd.option_context("display.max_rows", args.max_rows, "display.width", 160):
        print(df.to_string(index=False, max_rows=args.max_rows))
    print(f"total images: {total_images:,}   total declared NFE: {total_nfe:,}"
          + (f"   (+ {unsized} cells sized by their dataset's copy on disk)" if unsized else ""))
    for m in suite.spec.models:      # guidance semantics the plan must not hide (e.g. SoFlow's ignored cfg axis)
        cls = registry.resolve("model adapter", m.adapter)
        if cls.cfg_ignored and m.cfg:
            print(f"note: {m.id} ({m.adapter}): the cfg axis is ignored -- {cls.guidance}; its cfg values "
                  f"{m.cfg} give identical images")
        elif cls.guidance and m.cfg:
            print(f"guidance: {m.id} ({m.adapter}): {cls.guidance}")
    return 0


def _planned_n(cell) -> int | None:
    """Samples a cell will generate, from the plan and the dataset's card alone (None when only the copy on disk
    can tell)."""
    from bench import registry
    p = cell.plan
    ds = registry.resolve("dataset", cell.dataset_source)
    if p.kind == "per_class":
        card = ds.card(cell.dataset_source)
        return p.n * card.classes if card is not None and card.classes else None
    if p.kind == "uniform":
        return p.n
    size = ds.planned_size(cell.dataset_source, cell.dataset_options)
    if p.n is not None:
        return p.n if size is None else min(p.n, size)
    return size


def _positive_int(v: str) -> int:
    if not v.isdigit() or int(v) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {v!r}")
    return int(v)


def cmd_run(args) -> int:
    from bench.runner import Runner
    suite = _load_suite(args.suite, args.include)
    runner = Runner(suite, db=args.db, overwrite=args.overwrite, progress=not args.quiet, device=args.device,
                    includes=tuple(args.include))
    if args.executor == "ray":
        from bench.dist.ray_executor import RayExecutor, RayOptions
        opts = RayOptions(address=args.ray_address, workers=args.workers, gpus_per_task=args.gpus_per_task,
                          cpus_per_task=args.cpus_per_task, shards_per_cell=args.shards_per_cell,
                          max_retries=args.max_retries)
        s = RayExecutor(runner, opts).run()
    else:
        s = runner.run()
    print(f"{suite.name}: {s.planned} cells planned, {s.ran} ran, {s.skipped} already stored, {s.failed} failed; "
          f"{s.images:,} images in {s.seconds:.1f} s -> {args.db}")
    for f in s.failures:
        print(f"  failed: {f}", file=sys.stderr)
    if s.interrupted:
        print("interrupted: cells written so far are kept; run the same command again to resume", file=sys.stderr)
    return s.exit_code


def cmd_components(args) -> int:
    """Registered adapters, metrics and datasets: name, where it comes from, and its options with defaults."""
    from bench import registry
    for ref in args.include:
        registry.include(ref)
    kinds = {"adapters": "model adapter", "metrics": "metric", "datasets": "dataset"}
    for label in ([args.kind] if args.kind else list(kinds)):
        reg = registry.KINDS[kinds[label]]
        print(f"{label}:")
        for name in reg.names():
            line = f"  {name:<16} {reg.origin(name)}"
            if args.options:
                try:
                    opts = reg.resolve(name).validate_options({})
                    line += "\n" + "\n".join(f"      {k} = {v!r}" for k, v in opts.items())
                except Exception as e:          # an optional dependency missing: say so, list the rest
                    line += f"  (cannot be loaded here: {type(e).__name__}: {e})"
            print(line)
    return 0


def cmd_ls(args) -> int:
    from bench.store import ResultStore
    with ResultStore(args.db, read_only=True) as st:
        df = st.suites()
    print(df.to_string(index=False) if not df.empty else "(no cells stored)")
    return 0


# `bench show`'s columns; "*" stands for every ranked metric in the store (its stored display order, MMHM last)
SHOW_COLUMNS = ["model", "dataset", "steps", "cfg", "solver", "n", "*", "nfe", "latency_s", "status"]


def _frame(args):
    from bench.report.source import snapshot
    from bench.store import load
    with snapshot(args.db) as db:         # readable even while a `bench run` holds the store
        df = load(db)
    suite = getattr(args, "suite", None)
    if suite:
        name = suite
        if Path(suite).is_file():
            from bench.suite import Suite
            name = Suite.name_of(suite)           # the name only: no component is imported (reports are torch-free)
        df = df[df["suite"] == name]
    if getattr(args, "dataset", None):
        df = df[df["dataset"] == args.dataset]
    return df


def cmd_show(args) -> int:
    import pandas as pd

    from bench.report.directions import from_store
    from bench.report.source import snapshot
    df = _frame(args)
    if df.empty:
        print("(no matching cells)")
        return 0
    with snapshot(args.db) as db:         # what each metric is: recorded in the store beside its values
        specs = from_store(db)
    metrics = specs.ranked(df)
    cols = [c for name in SHOW_COLUMNS for c in (metrics if name == "*" else [name]) if c in df.columns]
    formats = {c: (lambda v, s=specs[c]: "NaN" if pd.isna(v) else s.format(v)) for c in metrics
               if specs[c].fmt != ".4g"}
    with pd.option_context("display.max_rows", None, "display.width", 200, "display.float_format", "{:.4g}".format):
        print(df[cols].to_string(index=False, formatters=formats))
    failed = df[df["status"] == "failed"]
    for _, r in failed.iterrows():
        print(f"failed: {r['model']} {r['dataset']} steps={r['steps']} cfg={r['cfg']}: {r['error']}", file=sys.stderr)
    return 0


def cmd_export(args) -> int:
    df = _frame(args)
    out = Path(args.out or f"results/export.{args.format}")
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.format == "csv":
        df.to_csv(out, index=False)
    else:
        df.to_parquet(out, index=False)
    print(f"wrote {len(df)} rows to {out}")
    return 0


def cmd_report(args) -> int:
    from bench.report import snapshot, write_report
    # read-only; while a `bench run` holds the store's lock, a copy of it taken now
    with snapshot(args.db, notify=lambda msg: print(f"note: {msg}", file=sys.stderr)) as db:
        df = _frame(argparse.Namespace(**{**vars(args), "db": str(db)}))
        if df.empty:
            return _err(f"{args.db}: no cells for suite {args.suite!r}" if args.suite
                        else f"{args.db}: no cells stored")
        paths = write_report(df, args.out, db=db, shown_db=str(args.db))
    figures = [p for p in paths if p.suffix in (".png", ".svg")]
    for p in paths:
        if p not in figures:
            print(f"wrote {p}")
    print(f"wrote {len(figures)} plot files (PNG and SVG) beside them")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="bench", description="stepbench: fair benchmarking of one-step and "
                                 "multi-step image generators across steps and guidance scales")
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("run", help="run a suite (skips cells already stored)")
    p.add_argument("suite")
    p.add_argument("--include", action="append", default=[], metavar="MODULE_OR_PATH", help=INCLUDE_HELP)
    p.add_argument("--db", default=DEFAULT_DB)
    p.add_argument("--overwrite", choices=["never", "missing", "always"], default="missing",
                   help="never: keep every stored cell; missing (default): re-run missing and failed cells; "
                        "always: re-run everything")
    p.add_argument("--device", default=None, help="override the suite's device (auto, cpu, cuda[:N])")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or per-cell lines")
    g = p.add_argument_group("scale-out (Ray)")
    g.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="local (default): one process; ray: cells and shards as tasks on a Ray cluster")
    g.add_argument("--ray-address", default=None, help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray)")
    g.add_argument("--workers", type=_positive_int, default=None,
                   help="model actors per model (default: as many as the cluster's CPUs/GPUs allow)")
    g.add_argument("--gpus-per-task", type=float, default=0.0, help="GPUs each worker holds (0 on CPU clusters)")
    g.add_argument("--cpus-per-task", type=float, default=1.0, help="CPUs each worker holds")
    g.add_argument("--shards-per-cell", type=_positive_int, default=1,
                   help="split each cell's samples into K disjoint ranges run in parallel and merged exactly")
    g.add_argument("--max-retries", type=int, default=2, help="retries of a shard whose worker died")
    g.add_argument("--ray-import", action="append", dest="include", metavar="MODULE", help=argparse.SUPPRESS)
    p.set_defaults(fn=cmd_run)

    p = sub.add_parser("validate", help="check a suite and print its plan")
    p.add_argument("suite")
    p.add_argument("--include", action="append", default=[], metavar="MODULE_OR_PATH", help=INCLUDE_HELP)
    p.add_argument("--max-rows", type=int, default=60)
    p.set_defaults(fn=cmd_validate)

    p = sub.add_parser("components", help="list registered adapters, metrics and datasets (built in, entry "
                       "points, --include)")
    p.add_argument("kind", nargs="?", choices=["adapters", "metrics", "datasets"])
    p.add_argument("--options", action="store_true", help="also list each one's options and defaults")
    p.add_argument("--include", action="append", default=[], metavar="MODULE_OR_PATH", help=INCLUDE_HELP)
    p.set_defaults(fn=cmd_components)

    p = sub.add_parser("ls", help="list stored suites")
    p.add_argument("--db", default=DEFAULT_DB)
    p.set_defaults(fn=cmd_ls)

    for name, fn, hlp in (("show", cmd_show, "table of stored cells with MMHM"),
                          ("export", cmd_export, "export the tidy table as CSV or Parquet"),
                          ("report", cmd_report, "write leaderboards and plots")):
        p = sub.add_parser(name, help=hlp)
        p.add_argument("--db", default=DEFAULT_DB)
        p.add_argument("--suite", default=None, help="suite name or suite file")
        p.add_argument("--dataset", default=None)
        if name == "export":
            p.add_argument("--format", choices=["csv", "parquet"], default="csv")
            p.add_argument("--out", default=None)
        if name == "report":
            p.add_argument("--out", default="reports")
        p.set_defaults(fn=fn)

    p = sub.add_parser("data", help="check local dataset copies against datasets/<name>.sha256")
    dsub = p.add_subparsers(dest="data_cmd", required=True)
    for name, hlp in (("verify", "report missing, changed and extra files (exit 0 all match, 1 otherwise)"),
                      ("manifest", "write a sha256 manifest of a local copy")):
        q = dsub.add_parser(name, help=hlp)
        q.add_argument("name", help="dataset name, e.g. imagenet-val")
        q.add_argument("--root", default=None, help="the dataset folder (default: $STEPBENCH_DATA/<folder>)")
        q.add_argument("--manifest", default=None, help="manifest file (default: datasets/<name>.sha256)")
        q.set_defaults(fn=cmd_data)

    p = sub.add_parser("cache", help="list or clear cached reference statistics (results/cache/refstats)")
    csub = p.add_subparsers(dest="cache_cmd", required=True)
    for name, hlp in (("ls", "list cached reference statistics"), ("clear", "remove cached reference statistics")):
        q = csub.add_parser(name, help=hlp)
        q.add_argument("--db", default=DEFAULT_DB, help="the store whose cache to use (its folder's cache/)")
        q.add_argument("--cache-dir", default=None, help="the cache folder (default: beside --db, cache/)")
        if name == "clear":
            g = q.add_mutually_exclusive_group(required=True)
            g.add_argument("--all", action="store_true", help="remove every entry")
            g.add_argument("--older-than", default=None, help="remove entries older than this (e.g. 12h, 7d)")
        q.set_defaults(fn=cmd_cache)
    p = sub.add_parser("convert", help="convert an official JAX/Flax checkpoint to safetensors (see bench/convert.py)")
    p.add_argument("kind", choices=["meanflow"], help="which model family the checkpoint is")
    p.add_argument("src", help="Flax checkpoint: checkpoint_<step> msgpack file, its folder, or an .npz of Flax paths")
    p.add_argument("dst", help="output .safetensors file")
    p.add_argument("--arch", default=None, help="size (B/4, M/2, L/2, XL/2) or a JSON object of DiTConfig fields; "
                   "default: inferred from the weights")
    p.add_argument("--input-size", type=int, default=32, help="latent size (32 for 256 px)")
    p.add_argument("--tree", default="ema_params", help="TrainState tree to convert (default ema_params)")
    p.set_defaults(fn=cmd_convert)
    return ap


def cmd_convert(args) -> int:
    import json

    from bench.convert import convert_meanflow
    try:
        arch = json.loads(args.arch) if args.arch and args.arch.lstrip().startswith("{") else args.arch
        out = convert_meanflow(args.src, args.dst, arch=arch, input_size=args.input_size, tree=args.tree)
    except (ValueError, OSError, RuntimeError) as e:
        return _err(f"bench convert {args.kind}: {e}")
    print(f"wrote {out}")
    return 0


def cmd_cache(args) -> int:
    from bench.metrics.refcache import RefCache, parse_age
    cache = RefCache(Path(args.cache_dir) if args.cache_dir else Path(args.db).parent / "cache")
    if args.cache_cmd == "clear":
        try:
            age = None if args.all else parse_age(args.older_than)
        except ValueError as e:
            return _err(str(e))
        print(f"removed {len(cache.clear(age))} files from {cache.root}")
        return 0
    entries = cache.entries()
    if not entries:
        print(f"(no cached reference statistics in {cache.root})")
        return 0
    import time
    print(f"{'key':<14} {'created (UTC)':<20} {'rows':>7} {'MiB':>8}  extractor / layer / dataset fingerprint")
    for e in entries:
        m = e.material or {}
        what = (f"{m.get('extractor')} / {m.get('layer', '-')} / {str(m.get('dataset'))[:12]}" if m
                else "(old format or unreadable: never used)")
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(e.created))
        print(f"{e.key[:12]:<14} {when:<20} {e.rows if e.rows is not None else '?':>7} {e.bytes / 2**20:>8.2f}  {what}")
    print(f"{len(entries)} entries, {sum(e.bytes for e in entries) / 2**20:.1f} MiB in {cache.root}")
    return 0


def cmd_data(args) -> int:
    from bench.data.base import DatasetError
    from bench.data.decode import EXTS
    from bench.data.locate import card_of
    from bench.data.verify import dataset_dir, manifest_path, read_manifest, verify, write_manifest
    try:
        root = dataset_dir(args.name, args.root)
        mpath = Path(args.manifest) if args.manifest else manifest_path(args.name)
        if args.data_cmd == "manifest":
            print(f"wrote {write_manifest(root, mpath)} file hashes of {root} to {mpath}")
            return 0
        if not mpath.is_file():
            return _err(f"no manifest {mpath} for {args.name!r}; write one from a trusted copy with "
                        f"`bench data manifest {args.name} --root DIR`")
        manifest = read_manifest(mpath)
        v = verify(root, manifest)
    except DatasetError as e:
        return _err(str(e))
    for label, paths in (("missing", v.missing), ("changed", v.changed), ("extra", v.extra)):
        for r in paths[:20]:
            print(f"{label}: {r}")
        if len(paths) > 20:
            print(f"{label}: ... and {len(paths) - 20} more")
    print(f"{args.name} ({root}): {v.checked - len(v.changed)} of {v.checked + len(v.missing)} files match "
          f"{mpath.name}; {len(v.missing)} missing, {len(v.changed)} changed, {len(v.extra)} extra")
    card = card_of(args.name)
    if card is not None and card.images is not None:       # a partial or padded copy can still match its manifest
        images = sum(Path(r).suffix.lower() in EXTS for r in manifest)
        if images != card.images:
            print(f"note: the manifest lists {images:,} image files; the {args.name} card ({card.title}) expects "
                  f"{card.images:,}")
    return 0 if v.ok else 1


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from bench.registry import RegistryError
    from bench.store import StoreError
    from bench.suite import SuiteError
    try:
        return args.fn(args)
    except (SuiteError, StoreError, RegistryError) as e:
        return _err(str(e))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
