"""`bench score GENERATED --ref REFERENCE`: a table of metrics for images you already have (`bench.score`)."""

from __future__ import annotations

import argparse
import json
import sys

from bench.cli.common import INCLUDE_HELP, err, positive_int


def option(text: str) -> tuple[str, str, object]:
    """``SCOPE.KEY=VALUE`` -> (scope, key, value); the value is read as a YAML scalar or list (``50`` is 50,
    ``true`` is True, ``null`` is None, ``[1, 2]`` a list), anything else stays a string."""
    import yaml
    head, eq, raw = text.partition("=")
    scope, dot, key = head.partition(".")
    if not (eq and dot and scope and key):
        raise argparse.ArgumentTypeError(f"expected SCOPE.KEY=VALUE (SCOPE: a metric name or 'ref'), got {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else raw
    except yaml.YAMLError:
        value = raw
    return scope, key, value if isinstance(value, (str, int, float, bool, list, type(None))) else raw


def metric_list(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(m.strip() for m in text.split(",") if m.strip()))
    if not names:
        raise argparse.ArgumentTypeError("expected a comma-separated list of metric names")
    return names


def cmd_score(args) -> int:
    from bench import registry
    from bench.data.base import DatasetError
    from bench.options import OptionsError
    from bench.score import Request, ScoreError, ScoreFailed, score
    for ref in args.include:
        registry.include(ref)
    opts: dict[str, dict] = {}
    for scope, key, value in args.option:
        opts.setdefault(scope, {})[key] = value
    req = Request(args.generated, args.ref, metrics=args.metrics, options=opts, prompts=args.prompts,
                  labels=args.labels, resolution=args.resolution, batch_size=args.batch_size, device=args.device,
                  name=args.name)
    try:
        out = score(req, db=args.db, progress=not args.quiet)
    except (ScoreError, DatasetError, OptionsError) as e:
        return err(str(e))
    except ScoreFailed as e:
        print(f"error: scoring failed: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"key": out.key, "n": out.n, "reference_images": out.reference_images,
                          "stored": out.stored, "values": {k: v for k, (v, _) in out.values.items()}}))
        return 0
    c = out.cell
    print(f"generated: {args.generated} ({out.n:,} images)   reference: {args.ref} ({c.dataset_source}, "
          f"{out.reference_images:,} images)")
    rows = [(o.label, format(v, o.fmt), {True: "higher is better", False: "lower is better"}.get(o.higher_is_better,
            "")) for k, (v, o) in out.values.items() if "/" not in k]
    width = max(len(r[0]) for r in rows) if rows else 6
    for label, value, direction in rows:
        print(f"  {label:<{width}}  {value:>12}  {direction}")
    if out.stored:
        print(f"cell {out.key[:16]}... {out.stored} in {args.db} (suite 'score', model {c.model.id!r}, dataset "
              f"{c.dataset!r})")
    else:
        print(f"cell {out.key[:16]}... not stored (pass --db FILE to keep it with its provenance)")
    return 0


def add(sub) -> None:
    p = sub.add_parser("score", help="metrics of a folder or .npz of images against a reference (folder, .npz or "
                       "dataset name), like torch-fidelity's `fidelity --input1 --input2`")
    p.add_argument("generated", metavar="GENERATED", help="a folder of images (its own files, sorted by name) or an "
                   "ADM-style .npz (arr_0: N x H x W x 3 uint8; labels in arr_1 or labels)")
    p.add_argument("--ref", required=True, metavar="REFERENCE", help="a folder of images (or of class folders), an "
                   ".npz, or a registered dataset name (`bench ls datasets`), e.g. imagenet-val")
    p.add_argument("--metrics", type=metric_list, default=("fid_is_kid",), metavar="M1,M2",
                   help="comma-separated metric names (`bench ls metrics`): fid_is_kid (FID, IS, KID, precision, "
                        "recall; density, coverage, fid_inf when set), clip_score, pickscore, image_reward (these "
                        "three need --prompts or --labels), fd_dinov2, fd_dinov2_dgm, cmmd (default: fid_is_kid)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--prompts", default=None, metavar="FILE", help="for clip_score / pickscore / image_reward: a "
                   "UTF-8 file with one prompt per line, line i for image i (sorted file names, or .npz rows)")
    g.add_argument("--labels", action="store_true", help="for clip_score / pickscore / image_reward: prompts from "
                   "the class ids the .npz carries (arr_1 / labels), named by the reference's classes and prompt "
                   "template")
    p.add_argument("-o", "--option", type=option, action="append", default=[], metavar="SCOPE.KEY=VALUE",
                   help="an option of a metric (fid_is_kid.kid_subset_size=100) or of the reference dataset "
                        "(ref.transform=adm); repeatable; checked like a suite's options")
    p.add_argument("--resolution", type=positive_int, default=None, help="decode image folders (GENERATED and "
                   "a folder --ref) at this size (default: as stored, as torch-fidelity does; an .npz is always "
                   "used as stored)")
    p.add_argument("--batch-size", type=positive_int, default=64, help="images per batch")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    p.add_argument("--db", default=None, help="also store the result as a cell of suite 'score' in this store "
                   "(skipped when that cell is already stored; default: not stored)")
    p.add_argument("--name", default=None, help="the model id of the stored cell (default: GENERATED's name)")
    p.add_argument("--json", action="store_true", help="print the values as one JSON object")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.add_argument("--include", action="append", default=[], metavar="MODULE_OR_PATH", help=INCLUDE_HELP)
    p.set_defaults(fn=cmd_score)
