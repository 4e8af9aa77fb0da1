"""Prompt-only sets from their released files (PartiPrompts' TSV, DrawBench's CSV, GenEval's metadata JSONL),
written here in those formats: prompts and categories in file order, quotes kept in the TSV, no reference images,
a categories filter, the fingerprint following the prompt text, and the where-to-get-it errors."""

import json

import pytest

from bench.data.base import DatasetError
from bench.data.prompt_sets import FILES, PromptSet

# rows as in google-research/parti PartiPrompts.tsv (one starts with a quoted phrase; Note is often empty)
PARTI = ("Prompt\tCategory\tChallenge\tNote\n"
         "bond\tAbstract\tBasic\tBiology-inspired concepts with multiple meanings\n"
         "a shiba inu\tAnimals\tBasic\t\n"
         '"G I G G L E" painted in thick colorful lettering as graffiti on a faded red brick wall.\tArtifacts\t'
         "Writing & Symbols\t\n"
         'A robot painted as graffiti on a brick wall. The words "Fly an airplane" are written on the wall.\t'
         "Outdoor Scenes\tComplex\t\n"
         "a capybara\tAnimals\tBasic\t\n")
DRAWBENCH = ('Prompts,Category\n"A red colored car.",Colors\n"A black apple and a green backpack. The apple is '
             'above the backpack.",Colors\nA storefront with \'Hello World\' written on it.,Text\n')
GENEVAL = [{"tag": "single_object", "include": [{"class": "bench", "count": 1}], "prompt": "a photo of a bench"},
           {"tag": "counting", "include": [{"class": "cow", "count": 2}], "exclude": [{"class": "cow", "count": 3}],
            "prompt": "a photo of two cows"},
           {"tag": "position", "include": [{"class": "dog", "count": 1}], "prompt": "a photo of a dog left of a cat"}]


@pytest.fixture(autouse=True)
def _no_data_env(monkeypatch):
    monkeypatch.delenv("STEPBENCH_DATA", raising=False)


def write(folder, name):
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / FILES[name].file
    if name == "geneval":
        path.write_text("".join(json.dumps(r) + "\n" for r in GENEVAL))
    else:
        path.write_text(PARTI if name == "partiprompts" else DRAWBENCH, encoding="utf-8")
    return path


def test_partiprompts_tsv_prompts_and_categories(tmp_path):
    path = write(tmp_path / "parti", "partiprompts")
    ds = PromptSet("partiprompts", root=str(path))
    assert not ds.has_images and ds.conditioning == "caption" and len(ds) == 5
    assert ds.captions()[0] == "bond" and ds.captions()[2].startswith('"G I G G L E" painted')   # quotes kept
    assert 'The words "Fly an airplane" are written' in ds.captions()[3]
    assert ds.categories() == ["Abstract", "Animals", "Artifacts", "Outdoor Scenes", "Animals"]
    assert ds.labels().tolist() == [0, 1, 2, 3, 1] and ds.listed() == (5, None)
    with pytest.raises(DatasetError, match="'partiprompts' is prompt-only: it has no reference images"):
        ds.reference_batches(4)
    assert PromptSet("partiprompts", root=str(tmp_path / "parti")).captions() == ds.captions()   # the folder
    assert PromptSet.describes("partiprompts", {}) == ("caption", False)
    animals = PromptSet("partiprompts", root=str(path), categories=["Animals"])
    assert animals.captions() == ["a shiba inu", "a capybara"] and animals.categories() == ["Animals"] * 2
    with pytest.raises(DatasetError, match=r"options.categories: 'Animal' is not a category of .*Abstract, Animals"):
        PromptSet("partiprompts", root=str(path), categories=["Animal"])


def test_drawbench_csv_and_geneval_jsonl(tmp_path):
    db = PromptSet("drawbench", root=str(write(tmp_path / "db", "drawbench")))
    assert db.captions() == ["A red colored car.", "A black apple and a green backpack. The apple is above the "
                             "backpack.", "A storefront with 'Hello World' written on it."]
    assert db.categories() == ["Colors", "Colors", "Text"]
    ge = PromptSet("geneval", root=str(write(tmp_path / "ge", "geneval")))
    assert ge.captions() == [r["prompt"] for r in GENEVAL] and ge.categories() == ["single_object", "counting",
                                                                                   "position"]
    assert ge.provenance() == {"prompt_set": {"file": str(tmp_path / "ge" / "evaluation_metadata.jsonl"),
                                              "count": 3, "categories": ["single_object", "counting", "position"]}}
    # each prompt's category is its class: per-class rows are per-category means
    assert db.class_names == ["Colors", "Text"] and db.labels().tolist() == [0, 0, 1]


def test_the_fingerprint_follows_prompt_text_and_categories_not_the_file(tmp_path):
    path = write(tmp_path / "a", "partiprompts")
    fp = PromptSet("partiprompts", root=str(path)).fingerprint()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "PartiPrompts.tsv").write_text(PARTI.replace("a capybara", "a capybara in the rain"))
    assert PromptSet("partiprompts", root=str(tmp_path / "b")).fingerprint() != fp
    (tmp_path / "b" / "PartiPrompts.tsv").write_text(PARTI.replace("\tBasic\t\n", "\tBasic\tnote\n"))
    assert PromptSet("partiprompts", root=str(tmp_path / "b")).fingerprint() == fp     # Note is not in the set
    (tmp_path / "b" / "PartiPrompts.tsv").write_text(PARTI.replace("a capybara\tAnimals", "a capybara\tPeople"))
    assert PromptSet("partiprompts", root=str(tmp_path / "b")).fingerprint() != fp
    assert PromptSet("partiprompts", root=str(path), categories=["Animals"]).fingerprint() != fp


def test_missing_files_and_bad_columns_are_named(tmp_path, monkeypatch):
    with pytest.raises(DatasetError, match=r"neither options.root nor \$STEPBENCH_DATA is set; download "
                                           r"PartiPrompts.tsv from https://github.com/google-research/parti"):
        PromptSet("partiprompts")
    monkeypatch.setenv("STEPBENCH_DATA", str(tmp_path))
    with pytest.raises(DatasetError, match=r"'geneval' not found at \$STEPBENCH_DATA/geneval .*djghosh13/geneval"):
        PromptSet("geneval")
    (tmp_path / "drawbench").mkdir()
    with pytest.raises(DatasetError, match=r"no DrawBench.csv in .*drawbench'; export the DrawBench sheet"):
        PromptSet("drawbench")
    write(tmp_path / "drawbench", "drawbench")
    assert len(PromptSet("drawbench")) == 3                   # found under $STEPBENCH_DATA/drawbench
    (tmp_path / "drawbench" / "DrawBench.csv").write_text("Text,Category\nA red car.,Colors\n")
    with pytest.raises(DatasetError, match=r"no prompt column \('Prompts' or 'Prompt' or 'prompts' or 'prompt'; "
                                           r"columns: 'Text', 'Category'\)"):
        PromptSet("drawbench")
    (tmp_path / "drawbench" / "DrawBench.csv").write_text("Prompts,Category\nA red car.,\n")
    with pytest.raises(DatasetError, match=r"DrawBench.csv:2: column 'Category' needs a category"):
        PromptSet("drawbench")
    with pytest.raises(DatasetError, match=r"unknown prompt set 'parti'"):
        PromptSet("parti")


def test_planned_sizes_are_the_released_counts():
    assert {n: PromptSet.planned_size(n, {}) for n in FILES} == {"partiprompts": 1632, "drawbench": 200,
                                                                 "geneval": 553}
    assert PromptSet.planned_size("partiprompts", {"categories": ["Animals"]}) is None
    assert all(PromptSet.card(n).folder == n and PromptSet.card(n).images is None for n in FILES)
