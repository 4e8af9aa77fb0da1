"""Dataset sources' declared contract: ``Options`` (typos and bad values refused, naming the key), cards (every
name has one; the conventional folder is read from it and nowhere else), ``planned_size``, ``has_holdout`` and
the ``provenance()`` hook. The loops run over the registry, so a new source is covered without editing here."""

import dataclasses
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench import registry
from bench.cli import main
from bench.data.base import Dataset, DatasetError
from bench.data.imagefolder import ImageFolder
from bench.data.imagenet import ImageNetV2, ImageNetVal, ReLAIONet
from bench.data.locate import card_of, conventional_folders
from bench.data.mini import MiniDataset
from bench.data.stream import LabelledImages
from bench.data.verify import dataset_dir, manifest_path
from bench.options import OptionsError

pytestmark = pytest.mark.filterwarnings("ignore:dataset .* unreadable image", "ignore:dataset .* map to no")
README = Path(__file__).resolve().parents[1] / "datasets" / "README.md"


@pytest.fixture(autouse=True)
def _own_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("STEPBENCH_HASH_CACHE", str(tmp_path / "hc" / "hashes.json"))
    monkeypatch.delenv("STEPBENCH_DATA", raising=False)


def _sources() -> list[tuple[str, type]]:
    """Every dataset name the project ships or an installed package adds (not test doubles registered at run
    time by other tests)."""
    return [(n, registry.DATASETS.resolve(n)) for n in registry.DATASETS.names()
            if registry.DATASETS.origin(n) != "registered at run time"]


def _required(cls) -> dict:
    """Placeholder values for the options a source cannot do without (so one bad option is the only problem)."""
    fill = {"source": "mini-val"}                     # `prompted` wraps a registered source
    return {k: fill.get(k, "0" * 64 if k.endswith("sha256") else "x") for k, f in cls.Options.model_fields.items()
            if f.is_required()}


SOURCES = _sources()
IDS = [n for n, _ in SOURCES]

# option -> values that must be refused wherever a source declares that option
BAD = {
    "size": [-5, 0, "10", True, 2.5],
    "resolution": [0, -1, "256", True],
    "workers": [-1, "2", False],
    "half": ["c", "A", 1],
    "transform": ["crop", "center", None],
    "class_names": ["pretty", None],
    "prompt_template": ["a photo", "a {class_name} of {what}", "{0} {class_name}", 7],
    "root": ["", 3],
    "ground_truth": [""],
    "class_map": [{"crane": 1000}, {"crane": -1}, {"crane": "134"}, ["crane"]],
    "strict": ["yes", 1],
    "classes": [[], "imagenet-21k", [1, 2]],
    "class_index": ["imagenet-21k"],
    "label_map": [{"dog": -1}, {"dog": "0"}],
    "path": [""],
    "split": [""],
    "image_column": [""],
    "label_column": [""],
    "source": [""],
    "prompts": [""],
    "prompts_sha256": ["abc", "", "0" * 63 + "g"],
    # caption and prompt-only sets (coco, captions, hf's caption_column, partiprompts / drawbench / geneval)
    "year": [2015, "2014", 14],
    "caption_choice": ["last", None],
    "n": [0, -3, "5"],
    "seed": [-1, "1", 1.5],
    "filter": ["sinc", "LANCZOS"],
    "caption_column": [""],
    "format": ["xml", "JSONL"],
    "categories": [[], [""], "Animals"],
}
GOOD = {"resolution": [None, 1, 512], "workers": [0, None, 3], "half": ["a", "b", None], "size": [1, 60],
        "transform": ["paper", "adm"], "class_names": ["underscored", "readable"],
        "prompt_template": ["{class_name}", "{class_name}, {class_name}"]}


def test_every_source_subclasses_the_base_and_declares_options():
    assert {"mini-val", "mini-v2", "mini-ood", "imagefolder", "imagenet-val", "imagenet-v2", "relaionet",
            "hf"} <= set(IDS)
    for name, cls in SOURCES:
        assert issubclass(cls, Dataset), name
        assert "Options" in vars(cls) or any("Options" in vars(k) for k in cls.__mro__[1:-1]), name
    assert issubclass(LabelledImages, Dataset)
    assert set(LabelledImages.Options.model_fields) == {"resolution", "transform", "workers", "half",
                                                        "prompt_template"}


@pytest.mark.parametrize("name,cls", SOURCES, ids=IDS)
def test_a_misspelt_option_is_named_with_a_did_you_mean(name, cls):
    fields = list(cls.Options.model_fields)
    assert fields, f"{name} takes no options"
    for key in fields:
        typo = key + key[-1]
        with pytest.raises(OptionsError) as e:
            cls.validate_options({**_required(cls), typo: 1})
        assert (typo, f"unknown option (did you mean {key!r}?)") in e.value.problems, e.value.problems
    if _required(cls):                       # a typo is named even when a required option is missing too
        with pytest.raises(OptionsError) as e:
            cls.validate_options({"resolutoin": 1})
        keys = [k for k, _ in e.value.problems]
        assert "resolutoin" in keys and set(_required(cls)) <= set(keys)


@pytest.mark.parametrize("name,cls", SOURCES, ids=IDS)
def test_bad_values_are_refused_naming_the_key(name, cls):
    checked = 0
    for key, values in BAD.items():
        if key not in cls.Options.model_fields:
            continue
        for value in values:
            with pytest.raises(OptionsError) as e:
                cls.validate_options({**_required(cls), key: value})
            assert {re.split(r"[.\[]", k)[0] for k, _ in e.value.problems} == {key}, (key, value, e.value.problems)
            checked += 1
        for value in GOOD.get(key, []):
            assert cls.validate_options({**_required(cls), key: value})[key] == value
    assert checked >= 3, f"{name}: no bad values tried; add its options to BAD"


@pytest.mark.parametrize("name,cls", SOURCES, ids=IDS)
def test_validated_options_are_complete_and_idempotent(name, cls):
    opts = cls.validate_options(_required(cls))
    # options added after cells were stored stay out at their defaults (bench.options.keyed_when_set)
    hidden = set(getattr(sys.modules[cls.__module__], "_KEYED_WHEN_SET", {}))
    assert set(opts) == set(cls.Options.model_fields) - hidden
    assert cls.validate_options(opts) == opts


@pytest.mark.parametrize("name,cls", SOURCES, ids=IDS)
def test_the_constructor_refuses_bad_options_before_touching_disk(name, cls):
    fields = cls.Options.model_fields
    key = next(k for k in ("size", "resolution", *fields) if k in fields and k in BAD)
    with pytest.raises(DatasetError, match=rf"^dataset {name!r}: options\.{key}: "):
        cls(name, **{**_required(cls), key: BAD[key][0]})
    with pytest.raises(DatasetError, match=rf"^dataset {name!r}: options\.{key}{key[-1]}: unknown option"):
        cls(name, **{**_required(cls), key + key[-1]: 1})


def test_label_map_is_checked_against_classes_at_validation():
    with pytest.raises(OptionsError) as e:
        ImageFolder.validate_options({"root": "r", "label_map": {"dog": 0}})
    assert e.value.problems == [("label_map", "needs options.classes (the names of its ids)")]
    with pytest.raises(OptionsError) as e:
        ImageFolder.validate_options({"root": "r", "classes": ["a"], "label_map": {"dog": 1}})
    assert e.value.problems[0][0] == "label_map" and "not an index of options.classes" in e.value.problems[0][1]
    assert ImageFolder.validate_options({"root": "r", "class_index": "imagenet-1k", "label_map": {"dog": 5}})


# -- cards ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,cls", SOURCES, ids=IDS)
def test_every_registered_name_has_a_card(name, cls):
    card = cls.card(name)
    assert card is not None and card.name == name and card.title and card.get and card.licence
    assert card_of(name) == card


def test_card_counts_and_planned_sizes():
    expect = {"imagenet-val": (50_000, 1000, "imagenet/val"), "imagenet-v2": (10_000, 1000, "imagenet-v2"),
              "relaionet": (None, 1000, "relaionet"), "imagefolder": (None, None, None), "hf": (None, None, None),
              "mini-val": (1000, 10, None), "mini-v2": (1000, 10, None), "mini-ood": (1000, 10, None)}
    for name, (images, classes, folder) in expect.items():
        card = registry.resolve("dataset", name).card(name)
        assert (card.images, card.classes, card.folder) == (images, classes, folder), name
    assert ImageNetVal.planned_size("imagenet-val", {}) == 50_000
    assert ImageNetVal.planned_size("imagenet-val", {"half": "a"}) == 25_000
    assert ImageNetVal.planned_size("imagenet-val", {"half": "b"}) == 25_000
    assert ImageNetV2.planned_size("imagenet-v2", {}) == 10_000
    assert ImageNetV2.planned_size("imagenet-v2", {"half": "a"}) == 5_000
    assert ReLAIONet.planned_size("relaionet", {}) is None
    assert ImageFolder.planned_size("imagefolder", {"root": "x"}) is None
    assert MiniDataset.planned_size("mini-val", {}) == 1000
    assert MiniDataset.planned_size("mini-ood", {"size": 37}) == 37 == len(MiniDataset("mini-ood", size=37))
    assert len(MiniDataset("mini-v2", 12)) == 12                     # positional size still works
    with pytest.raises(DatasetError, match="size given twice"):
        MiniDataset("mini-v2", 12, size=13)


def test_manifests_are_named_by_the_cards():
    for name in ("imagenet-val", "imagenet-v2", "relaionet"):
        assert manifest_path(name).name == f"{card_of(name).manifest}.sha256" == f"{name}.sha256"
    assert manifest_path("my-own-set").name == "my-own-set.sha256"   # not registered: named after itself


def test_the_readme_folder_table_matches_the_cards():
    rows = dict(re.findall(r"^\| `([\w.-]+)` \| `([^`]+)` \|", README.read_text(), re.M))
    assert rows == conventional_folders()
    for name, folder in rows.items():                # and each text card's "Location" line
        text = (README.parent / f"{name}.md").read_text()
        assert f"`$STEPBENCH_DATA/{folder}`" in text, name


def _jpeg(path, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(path)


def test_the_conventional_folder_is_read_from_the_card(tmp_path, monkeypatch, capsys):
    moved = dataclasses.replace(ImageNetVal.cards["imagenet-val"], folder="elsewhere/val-copy")
    monkeypatch.setitem(ImageNetVal.cards, "imagenet-val", moved)
    with pytest.raises(DatasetError, match=r"\$STEPBENCH_DATA/elsewhere/val-copy"):
        ImageNetVal("imagenet-val")
    monkeypatch.setenv("STEPBENCH_DATA", str(tmp_path))
    with pytest.raises(DatasetError, match=r"not found at \$STEPBENCH_DATA/elsewhere/val-copy"):
        ImageNetVal("imagenet-val")
    _jpeg(tmp_path / "elsewhere" / "val-copy" / "n01440764" / "ILSVRC2012_val_00000001.JPEG", 0)
    ds = ImageNetVal("imagenet-val", workers=0)
    assert ds.root == tmp_path / "elsewhere" / "val-copy" and len(ds) == 1
    assert dataset_dir("imagenet-val", None) == tmp_path / "elsewhere" / "val-copy"
    assert conventional_folders()["imagenet-val"] == "elsewhere/val-copy"
    assert main(["data", "manifest", "imagenet-val", "--manifest", str(tmp_path / "m.sha256")]) == 0
    assert "val-copy" in capsys.readouterr().out
    assert main(["data", "verify", "imagenet-val", "--manifest", str(tmp_path / "m.sha256")]) == 0
    out = capsys.readouterr().out
    assert "1 of 1 files match" in out and "lists 1 image files; the imagenet-val card" in out and "50,000" in out


def test_data_verify_names_unknown_and_folderless_datasets(capsys):
    assert main(["data", "verify", "imagenet-vall"]) == 2
    assert "did you mean 'imagenet-val'" in capsys.readouterr().err
    assert main(["data", "verify", "imagefolder"]) == 2
    err = capsys.readouterr().err
    assert "no conventional folder" in err and "imagenet-val" in err and "--root" in err


# -- holdout and provenance hooks ---------------------------------------------------------------------------------
def test_holdout_is_declared_not_probed(tmp_path):
    assert MiniDataset.has_holdout and ImageFolder.has_holdout and ImageNetVal.has_holdout
    assert Dataset.has_holdout is False
    ds = MiniDataset("mini-val", 4)
    assert ds.holdout(torch.tensor([1, 2]), torch.tensor([0, 1])).shape[0] == 2
    assert ds.provenance() == {}


def test_provenance_reports_decode_failures_and_unmapped_folders(tmp_path):
    clean = tmp_path / "clean"
    for i in range(2):
        _jpeg(clean / "a" / f"{i}.jpg", i)
    assert ImageFolder("imagefolder", root=str(clean), workers=0).provenance() == {}
    (clean / "a" / "bad.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    prov = ImageFolder("imagefolder", root=str(clean), workers=0).provenance()
    assert list(prov) == ["decode_failures"] and prov["decode_failures"]["count"] == 1
    assert prov["decode_failures"]["files"][0]["path"] == "a/bad.jpg"
    rl = tmp_path / "rl" / "images"
    _jpeg(rl / "tench" / "0.jpg", 3)
    _jpeg(rl / "no such class" / "0.jpg", 4)
    ds = ReLAIONet("relaionet", root=str(rl), workers=0)
    assert ds.provenance() == {"unmapped_folders": [{"folder": "no such class", "images": 1}]}
    assert ds.unmapped_folders == [{"folder": "no such class", "images": 1}]   # the attribute is kept
