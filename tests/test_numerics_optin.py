"""A suite's ``numerics: tf32`` opt-in: metric forwards (and generation) under TF32, keyed apart from strict cells,
reference statistics cached apart, recorded in the run's environment; strict suites keep their keys."""

from __future__ import annotations

import json
import os

import torch

import bench
from bench.cli import main
from bench.metrics.base import (
    STRICT_NUMERICS,
    TF32_NUMERICS,
    current_mode,
    fixed_shape_forward,
    numerics_flags,
    numerics_mode,
)
from bench.metrics.refcache import RefCache, material_key
from bench.store import ResultStore
from bench.suite import Suite
from tests.conftest import TOY_SUITE


def _suite(tmp_path, numerics: str | None, name="s.yaml"):
    text = TOY_SUITE.format(n=4, steps="[1]", cfg="[1.0]")
    if numerics is not None:
        text = text.replace("seed: 42\n", f"seed: 42\nnumerics: {numerics}\n")
    p = tmp_path / name
    p.write_text(text)
    os.chmod(p, 0o644)
    return p


def test_metric_forwards_follow_the_cells_mode_and_restore_the_callers_flags():
    seen = []

    def fwd(x):
        seen.append(numerics_flags())
        return x

    before = numerics_flags()
    fixed_shape_forward(fwd, torch.ones(2, 3), 2)
    with numerics_mode("tf32"):
        assert current_mode() == "tf32" and numerics_flags() == TF32_NUMERICS     # generation runs under it too
        fixed_shape_forward(fwd, torch.ones(2, 3), 2)
    with numerics_mode(None):
        fixed_shape_forward(fwd, torch.ones(2, 3), 2)
    assert seen == [STRICT_NUMERICS, TF32_NUMERICS, STRICT_NUMERICS]
    assert numerics_flags() == before and current_mode() == "strict"


def test_reference_cache_entries_are_apart_per_mode_and_strict_ones_keep_their_file(tmp_path):
    cache, material = RefCache(tmp_path), {"dataset": "abc", "extractor": "x"}
    strict = cache.path(material)
    assert strict.name == f"{material_key(material)}.safetensors"        # the file strict entries always had
    cache.save(material, {"features": torch.ones(2, 2)})
    with numerics_mode("tf32"):
        assert cache.path(material) != strict and cache.load(material) is None    # never the strict features
        cache.save(material, {"features": torch.zeros(2, 2)})
        assert cache.load(material)["features"].sum() == 0
    assert cache.load(material)["features"].sum() == 4


def test_opting_in_keys_cells_apart_and_a_strict_suite_keeps_its_keys(tmp_path):
    strict = Suite.load(_suite(tmp_path, None)).expand()
    explicit = Suite.load(_suite(tmp_path, "strict", "e.yaml")).expand()
    tf32 = Suite.load(_suite(tmp_path, "tf32", "t.yaml")).expand()
    assert [c.config() for c in strict] == [c.config() for c in explicit]
    assert all("numerics" not in c.config() for c in strict)
    assert [c.config()["numerics"] for c in tf32] == ["tf32"] * len(tf32)
    ids = dict(adapter_version="1", weights_id="w", dataset_fingerprint="f", metric_versions={})
    assert {c.key(**ids) for c in strict}.isdisjoint({c.key(**ids) for c in tf32})


def test_a_tf32_run_is_stored_apart_recorded_and_on_cpu_gives_the_strict_values(tmp_path, capsys):
    db = tmp_path / "b.duckdb"
    for numerics in (None, "tf32"):
        code = main(["run", str(_suite(tmp_path, numerics)), "--db", str(db), "--include", "tests/toy_extractor.py",
                     "-q"])
        assert code == 0, capsys.readouterr().err
    df = bench.load(db)
    assert len(df) == 2 and df["key"].nunique() == 2          # the opt-in did not overwrite or hide the strict cell
    with ResultStore(db, read_only=True) as st:
        envs = [json.loads(e)["numerics"] for e in st.frame("SELECT environment FROM runs ORDER BY started")
                ["environment"]]
        configs = [json.loads(c) for c in st.frame("SELECT config FROM cells")["config"]]
    assert [e["mode"] for e in envs] == ["strict", "tf32"]
    assert envs[0]["metrics"] == STRICT_NUMERICS and envs[1]["metrics"] == envs[1]["generation"] == TF32_NUMERICS
    assert sorted(c.get("numerics", "-") for c in configs) == ["-", "tf32"]
    assert len(list((tmp_path / "cache" / "refstats").glob("*.safetensors"))) == 2
    a, b = (df[df["key"] == k].iloc[0] for k in df["key"])
    assert a["fid"] == b["fid"] and a["kid"] == b["kid"]      # on a CPU the TF32 flags change nothing


def test_an_unknown_mode_is_one_line_naming_the_key(tmp_path, capsys):
    code = main(["validate", str(_suite(tmp_path, "fast"))])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert code == 2 and len(lines) == 1 and "numerics" in lines[0] and "tf32" in lines[0], err
