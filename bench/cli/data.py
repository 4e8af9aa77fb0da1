"""`bench data verify|manifest`: local dataset copies against their manifests, or, without one, their cards."""

from __future__ import annotations

from pathlib import Path

from bench.cli.common import err, positive_int

SHOWN = 20          # lines of each kind of finding before "... and N more"


def _listed(label: str, entries: list[str]) -> None:
    for r in entries[:SHOWN]:
        print(f"{label}: {r}")
    if len(entries) > SHOWN:
        print(f"{label}: ... and {len(entries) - SHOWN} more")


def verify_manifest(args, mpath: Path) -> int:
    from bench.data.decode import EXTS
    from bench.data.locate import card_of
    from bench.data.verify import dataset_dir, read_manifest, verify
    root = dataset_dir(args.name, args.root)
    manifest = read_manifest(mpath)
    v = verify(root, manifest)
    for label, paths in (("missing", v.missing), ("changed", v.changed), ("extra", v.extra)):
        _listed(label, paths)
    print(f"{args.name} ({root}): {v.checked - len(v.changed)} of {v.checked + len(v.missing)} files match "
          f"{mpath.name}; {len(v.missing)} missing, {len(v.changed)} changed, {len(v.extra)} extra")
    card = card_of(args.name)
    if card is not None and card.images is not None:       # a partial or padded copy can still match its manifest
        images = sum(Path(r).suffix.lower() in EXTS for r in manifest)
        if images != card.images:
            print(f"note: the manifest lists {images:,} image files; the {args.name} card ({card.title}) expects "
                  f"{card.images:,}")
    return 0 if v.ok else 1


def verify_card(args, mpath: Path) -> int:
    """No manifest: the layout as the source reads it, counts against the card, a decoded sample."""
    from bench.data.verify import check_copy
    c = check_copy(args.name, args.root, sample=args.sample)
    for note in c.notes:
        print(f"note: {note}")
    _listed("problem", c.problems)
    _listed("unreadable", [f"{u['path']}: {u['error']}" for u in c.unreadable])
    expect = ", ".join(f"{v:,} {k}" for k, v in (("images", c.expected_images), ("classes", c.expected_classes))
                       if v)
    print(f"{args.name} ({c.root}, {c.layout}): {c.images:,} images in {c.classes:,} classes"
          f"{f' (the card: {expect})' if expect else ''}; "
          f"{c.sampled - len(c.unreadable)} of {c.sampled} sampled files decode")
    print(f"no manifest {mpath}: layout, counts and a sample checked, not every byte; to pin this copy write one "
          f"from a trusted copy with `bench data manifest {args.name} --root DIR`")
    return 0 if c.ok else 1


def cmd_data(args) -> int:
    from bench.data.base import DatasetError
    from bench.data.verify import dataset_dir, known_dataset, manifest_path, write_manifest
    try:
        mpath = Path(args.manifest) if args.manifest else manifest_path(args.name)
        if args.data_cmd == "manifest":
            if not args.manifest:          # a misspelt name would write datasets/<typo>.sha256
                known_dataset(args.name)
            root = dataset_dir(args.name, args.root)
            print(f"wrote {write_manifest(root, mpath)} file hashes of {root} to {mpath}")
            return 0
        if mpath.is_file():
            return verify_manifest(args, mpath)
        if args.manifest:
            return err(f"no manifest {mpath} for {args.name!r}; write one from a trusted copy with "
                       f"`bench data manifest {args.name} --root DIR`")
        return verify_card(args, mpath)
    except DatasetError as e:
        return err(str(e))


def add(sub) -> None:
    p = sub.add_parser("data", help="check local dataset copies (against datasets/<name>.sha256, or without one "
                       "against the dataset's card)")
    dsub = p.add_subparsers(dest="data_cmd", required=True, metavar="{verify,manifest}")
    for name, hlp in (("verify", "with a manifest: missing, changed and extra files; without: layout, image and "
                       "class counts against the card, and a decoded sample (exit 0 all good, 1 otherwise)"),
                      ("manifest", "write a sha256 manifest of a trusted local copy")):
        q = dsub.add_parser(name, help=hlp)
        q.add_argument("name", help="dataset name, e.g. imagenet-val (`bench ls datasets`)")
        q.add_argument("--root", default=None, help="the dataset folder (default: $STEPBENCH_DATA/<the card's "
                       "folder>)")
        q.add_argument("--manifest", default=None, help="manifest file (default: datasets/<name>.sha256)")
        if name == "verify":
            q.add_argument("--sample", type=positive_int, default=200,
                           help="without a manifest: how many files to decode (a seeded draw)")
        q.set_defaults(fn=cmd_data)
