"""`bench cache ls|clear` (reference statistics) and `bench convert` (official checkpoints to safetensors)."""

from __future__ import annotations

from pathlib import Path

from bench.cli.common import DEFAULT_DB, err


def cmd_cache(args) -> int:
    from bench.metrics.refcache import RefCache, parse_age
    cache = RefCache(Path(args.cache_dir) if args.cache_dir else Path(args.db).parent / "cache")
    if args.cache_cmd == "clear":
        try:
            age = None if args.all else parse_age(args.older_than)
        except ValueError as e:
            return err(str(e))
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


def cmd_convert(args) -> int:
    import json

    from bench.convert import convert_meanflow
    try:
        arch = json.loads(args.arch) if args.arch and args.arch.lstrip().startswith("{") else args.arch
        out = convert_meanflow(args.src, args.dst, arch=arch, input_size=args.input_size, tree=args.tree)
    except (ValueError, OSError, RuntimeError) as e:
        return err(f"bench convert {args.kind}: {e}")
    print(f"wrote {out}")
    return 0



def add(sub) -> None:
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
