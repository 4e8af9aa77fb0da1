"""Write datasets/imagenet-1k.json (the 1000 ILSVRC2012 classes in index order) from timm's offline files.

    .venv/bin/python -m bench.data.make_class_index [--out datasets/imagenet-1k.json]

Index order = timm's ``imagenet_synsets.txt`` (the standard sorted-WNID order, label ids 0..999); lemmas from
``imagenet_synset_to_lemma.txt``. Each class gets its WordNet lemmas, the ``underscored`` short name (first lemma,
spaces -> '_', e.g. ``great_white_shark``; the paper's prompt form) and a ``readable`` name (first lemma as
written, e.g. ``great white shark``). timm is needed only to regenerate the file, never at run time.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path


def build(info_dir: Path) -> dict:
    synsets = (info_dir / "imagenet_synsets.txt").read_text().split()
    lemmas = {}
    for line in (info_dir / "imagenet_synset_to_lemma.txt").read_text().splitlines():
        wnid, _, names = line.partition("\t")
        lemmas[wnid] = [n.strip() for n in names.split(",") if n.strip()]
    if len(synsets) != 1000 or len(set(synsets)) != 1000:
        raise SystemExit(f"{info_dir}/imagenet_synsets.txt: expected 1000 distinct synsets, got {len(synsets)}")
    missing = [s for s in synsets if s not in lemmas]
    if missing:
        raise SystemExit(f"{info_dir}/imagenet_synset_to_lemma.txt: no lemmas for {missing[:5]}")
    classes = [{"index": i, "synset": s, "lemmas": lemmas[s], "underscored": lemmas[s][0].replace(" ", "_"),
                "readable": lemmas[s][0]} for i, s in enumerate(synsets)]
    dup = Counter(c["underscored"] for c in classes)
    return {
        "name": "imagenet-1k",
        "source": "timm/data/_info/imagenet_synsets.txt + imagenet_synset_to_lemma.txt (WordNet 3.0 lemmas)",
        "generator": "python -m bench.data.make_class_index",
        "name_variants": {"underscored": "first lemma with spaces -> '_' (default; the paper's prompt form)",
                          "readable": "first lemma as written"},
        "duplicate_names": sorted(n for n, k in dup.items() if k > 1),
        "classes": classes,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parents[2] / "datasets" / "imagenet-1k.json"))
    ap.add_argument("--timm-info", default=None, help="timm's data/_info folder (default: the installed timm's)")
    args = ap.parse_args(argv)
    if args.timm_info:
        info = Path(args.timm_info)
    else:   # locate the installed timm without importing it (importing timm pulls in torch and takes seconds)
        import importlib.util
        spec = importlib.util.find_spec("timm")
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit("timm is not installed: pip install timm, or pass --timm-info DIR")
        info = Path(list(spec.submodule_search_locations)[0]) / "data" / "_info"
    data = build(info)
    head = {k: v for k, v in data.items() if k != "classes"}
    rows = ",\n".join("  " + json.dumps(c, ensure_ascii=False) for c in data["classes"])
    text = json.dumps(head, indent=1, ensure_ascii=False)[:-2] + ',\n "classes": [\n' + rows + "\n ]\n}\n"
    Path(args.out).write_text(text)
    print(f"wrote {len(data['classes'])} classes to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
