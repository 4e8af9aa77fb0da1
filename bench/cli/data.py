"""`bench data verify|manifest`: local dataset copies against their manifests and cards."""

from __future__ import annotations

from pathlib import Path

from bench.cli.common import err


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
            return err(f"no manifest {mpath} for {args.name!r}; write one from a trusted copy with "
                        f"`bench data manifest {args.name} --root DIR`")
        manifest = read_manifest(mpath)
        v = verify(root, manifest)
    except DatasetError as e:
        return err(str(e))
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



def add(sub) -> None:
    p = sub.add_parser("data", help="check local dataset copies against datasets/<name>.sha256")
    dsub = p.add_subparsers(dest="data_cmd", required=True)
    for name, hlp in (("verify", "report missing, changed and extra files (exit 0 all match, 1 otherwise)"),
                      ("manifest", "write a sha256 manifest of a local copy")):
        q = dsub.add_parser(name, help=hlp)
        q.add_argument("name", help="dataset name, e.g. imagenet-val")
        q.add_argument("--root", default=None, help="the dataset folder (default: $STEPBENCH_DATA/<folder>)")
        q.add_argument("--manifest", default=None, help="manifest file (default: datasets/<name>.sha256)")
        q.set_defaults(fn=cmd_data)

