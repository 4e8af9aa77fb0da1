"""The registries: base-class checks, duplicate refusal, entry-point discovery and --include modules."""

from __future__ import annotations

import sys

import pytest

from bench import registry
from bench.models.base import Generator
from bench.registry import Registry, RegistryError
from tests.plugin_site import install


def _fresh(group: str = "stepbench.adapters") -> Registry:
    return Registry("model adapter", "bench.models.base:Generator", group, {"toy": "bench.models.toy:ToyFlow"})


class NotAGenerator:
    family, version = "x", "x-1"


def test_every_builtin_name_resolves_to_a_subclass_of_its_base():
    from bench.data.base import Dataset
    from bench.metrics.base import Metric
    for reg, base in ((registry.MODELS, Generator), (registry.METRICS, Metric), (registry.DATASETS, Dataset)):
        for name in reg.names():
            assert issubclass(reg.resolve(name), base), name


def test_a_target_that_is_not_the_base_class_is_refused_by_name():
    reg = _fresh()
    with pytest.raises(RegistryError, match="not a subclass of bench.models.base.Generator"):
        reg.register("bad", NotAGenerator)
    reg.register("bad-lazy", "tests.test_registry:NotAGenerator")        # a string is checked when resolved
    with pytest.raises(RegistryError, match="bad-lazy.*not a subclass"):
        reg.resolve("bad-lazy")


def test_a_taken_name_is_refused_unless_it_is_the_same_target():
    reg = _fresh()
    reg.register("toy", "bench.models.toy:ToyFlow")                       # the same target: a no-op
    with pytest.raises(RegistryError, match="'toy' is already registered"):
        reg.register("toy", "bench.models.mini:MiniSiT")
    reg.register("toy", "bench.models.mini:MiniSiT", replace=True)
    assert reg.resolve("toy").__name__ == "MiniSiT"


def test_unknown_names_get_a_did_you_mean():
    with pytest.raises(registry.UnknownName, match="did you mean 'mini-sit'"):
        registry.MODELS.check("mini-sitt")


def test_entry_points_add_names_lazily(tmp_path, monkeypatch):
    site = install(tmp_path / "site")
    monkeypatch.syspath_prepend(str(site))
    reg = _fresh()
    assert "tinyflow" in reg.names()
    assert "entry point stepbench.adapters of stepbench-tinyflow" == reg.origin("tinyflow")
    assert "stepbench_tinyflow.adapter" not in sys.modules or True          # listing imports nothing heavy
    cls = reg.resolve("tinyflow")
    assert issubclass(cls, Generator) and cls.version == "tinyflow-1"


def test_an_entry_point_that_claims_a_builtin_name_is_refused(tmp_path, monkeypatch):
    site = install(tmp_path / "site", "[stepbench.adapters]\ntoy = stepbench_tinyflow.adapter:TinyFlow\n",
                   name="stepbench-squatter")
    monkeypatch.syspath_prepend(str(site))
    with pytest.raises(RegistryError, match="'toy' is already registered.*stepbench-squatter|squatter"):
        _fresh().names()


def test_include_imports_a_py_file_that_registers(tmp_path):
    f = tmp_path / "my_adapter.py"
    f.write_text("from bench import registry\nfrom bench.models.toy import ToyFlow\n\n"
                 "class Mine(ToyFlow):\n    version = 'mine-1'\n\n"
                 "registry.register('model adapter', 'mine-from-file', Mine)\n")
    registry.include(str(f))
    assert registry.resolve("model adapter", "mine-from-file").version == "mine-1"
    assert str(f) in registry.included()
    registry.include(str(f))                     # twice: imported once, no duplicate error
    with pytest.raises(RegistryError, match="no module named 'no_such_module_xyz'"):
        registry.include("no_such_module_xyz")
    with pytest.raises(RegistryError, match="no such file"):
        registry.include(str(tmp_path / "missing.py"))
    bad = tmp_path / "broken.py"
    bad.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(RegistryError, match="importing it failed: RuntimeError: boom"):
        registry.include(str(bad))
