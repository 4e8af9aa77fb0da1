"""Discovery: `bench ls adapters|datasets|metrics|suites` read the contracts (registries, docstrings, Options models,
cards, suite files), `bench components` is the same listing, `bench --version`, and every flag's help."""

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from bench import __version__, registry
from bench.cli import build_parser, main
from bench.cli.common import parsers

ROOT = Path(__file__).resolve().parent.parent


def out_of(capsys, *args):
    code = main(list(args))
    out = capsys.readouterr()
    assert code == 0, out.err
    return out.out


@pytest.mark.parametrize("kind, reg", [("adapters", registry.MODELS), ("datasets", registry.DATASETS),
                                       ("metrics", registry.METRICS)])
def test_ls_lists_every_registered_name_with_its_description_and_origin(capsys, kind, reg):
    out = out_of(capsys, "ls", kind)
    for name in reg.names():
        line = next((ln for ln in out.splitlines() if ln.startswith(f"  {name} ")), None)
        assert line is not None, f"{name} not listed"
        assert len(line.split(None, 1)) == 2, f"{name}: no description"
    assert out.count("built in; options:") >= len([n for n in reg.names() if reg.origin(n) == "built in"])


def test_descriptions_options_and_cards_come_from_the_contracts(capsys):
    from bench.metrics.fid_is_kid import FidIsKidOptions
    from bench.models.mini import MiniSiT
    adapters = out_of(capsys, "ls", "adapters")
    assert MiniSiT.__doc__.strip().split(". ")[0] in adapters
    assert "cfg_channels=3" in adapters and "weights_file='SiT-XL-2-256.pt'" in adapters     # sit's Options
    metrics = out_of(capsys, "ls", "metrics")
    assert f"kid_subset_size={FidIsKidOptions().kid_subset_size}" in metrics
    datasets = out_of(capsys, "ls", "datasets")
    assert "$STEPBENCH_DATA/imagenet/val; 50,000 images, 1,000 classes" in datasets
    assert "root (required)" in datasets                          # imagefolder: no default for its root
    assert "imagefiles" in datasets and "npz" in datasets         # the sources `bench score` opens paths with


def test_components_is_the_same_listing(capsys):
    assert out_of(capsys, "components", "metrics") == out_of(capsys, "ls", "metrics")
    assert out_of(capsys, "components", "--options") == out_of(capsys, "components")


def test_ls_suites_counts_the_cells_of_each_file(tmp_path, capsys):
    out = out_of(capsys, "ls", "suites", "--dir", str(ROOT / "suites"))
    for path in (ROOT / "suites").glob("*.yaml"):
        assert path.name in out
    assert "suite 'paper': 96 cells (8 models, 3 datasets)" in out and "eight systems" in out
    (tmp_path / "good.yaml").write_text((ROOT / "suites" / "mini.yaml").read_text())
    (tmp_path / "bad.yaml").write_text("suite: x\nmodels: []\n")
    out = out_of(capsys, "ls", "suites", "--dir", str(tmp_path))
    assert "good.yaml" in out and "suite 'mini': 135 cells" in out
    assert "bad.yaml" in out and "cannot be read" in out
    assert main(["ls", "suites", "--dir", str(tmp_path / "none")]) == 2


def test_a_component_from_include_is_listed_with_its_origin_and_options(tmp_path):
    mod = tmp_path / "my_adapter.py"
    mod.write_text('''
from bench import registry
from bench.models.toy import ToyFlow
from bench.options import StrictOptions

class Fancy(ToyFlow):
    """A fancy flow for the listing test. More words here."""
    class Options(StrictOptions):
        depth: int = 7

registry.register("model adapter", "fancy-flow", Fancy)
''')
    r = subprocess.run([sys.executable, "-m", "bench.cli", "ls", "adapters", "--include", str(mod)], cwd=ROOT,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    line = r.stdout.split("  fancy-flow ")[1].splitlines()
    assert line[0].strip() == "A fancy flow for the listing test."
    assert "registered at run time; options: depth=7" in line[1]


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"stepbench {__version__}"


def test_every_argument_of_every_command_has_help_and_says_its_default():
    missing, undated = [], []
    for path, p in parsers(build_parser()):
        for a in p._actions:
            if isinstance(a, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
                continue
            if a.help is argparse.SUPPRESS:
                continue
            where = f"bench {' '.join(path)} {'/'.join(a.option_strings) or a.dest}"
            if not (a.help or "").strip():
                missing.append(where)
                continue
            shown = p._get_formatter()._expand_help(a) if a.help else ""
            if a.option_strings and a.default not in (None, False, [], argparse.SUPPRESS) \
                    and "default" not in shown.lower():
                undated.append(where)
    assert not missing, f"arguments without help text: {missing}"
    assert not undated, f"flags whose help does not say their default: {undated}"


def test_help_shows_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    out = capsys.readouterr().out
    assert "(default: results/bench.duckdb)" in out and "default: from --out's extension" in out
