"""Bad generators: NaN/Inf, wrong shapes, wrong dtypes, exceptions mid-cell, out of memory.

Each bad cell is recorded failed with a clear reason and the sweep finishes (exit code 1); out-of-memory backs off
to smaller sub-batches and the cell completes with the same values an unconstrained run gives."""

import json
from typing import Literal

import pytest
import torch

import bench
from bench import registry
from bench.models.toy import ToyFlow
from bench.runner import Runner, is_out_of_memory
from bench.store import ResultStore
from bench.suite import Suite


class Faulty(ToyFlow):
    """ToyFlow with a fault chosen by the model option `fault`, injected from the second batch on
    (so the fault really is mid-cell: the first batch already went into the accumulators)."""
    version = "faulty-1"

    class Options(ToyFlow.Options):
        fault: Literal["raise", "nan", "inf", "channels", "size", "rows", "list"] | None = None

    def load(self, spec, device):
        super().load(spec, device)
        self.fault, self.calls = self.opts.fault, 0

    def generate(self, labels, sample_ids, s):
        self.calls += 1
        mid = self.calls >= 2
        if self.fault == "raise" and mid:
            raise RuntimeError("simulated crash in the middle of a cell")
        if self.fault in ("nan", "inf") and mid:
            x = torch.zeros(len(labels), 3, 16, 16)
            x[-1, 0, 3, 3] = float("nan") if self.fault == "nan" else float("inf")
            from bench.models.base import to_uint8_nhwc
            return to_uint8_nhwc(x)
        out = super().generate(labels, sample_ids, s)
        if self.fault == "channels" and mid:
            return out[..., :2]            # two colour channels
        if self.fault == "size" and mid:
            return out[:, :8]              # half the rows of each image, from the second batch on
        if self.fault == "rows" and mid:
            return out[:-1]                # one image short
        if self.fault == "list" and mid:
            return list(out)
        return out


class OOMAbove(ToyFlow):
    """Raises the allocator's out-of-memory error for any call over `max_rows` rows, after a partial forward
    (so a naive retry would over-count NFE)."""
    version = "oom-1"

    class Options(ToyFlow.Options):
        max_rows: int

    def load(self, spec, device):
        super().load(spec, device)
        self.max_rows = self.opts.max_rows

    def generate(self, labels, sample_ids, s):
        if len(labels) > self.max_rows:
            self.net(torch.zeros(len(labels), 3, 16, 16), torch.zeros(len(labels)), labels)   # counted, then fails
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated)")
        return super().generate(labels, sample_ids, s)


registry.register("model adapter", "faulty", "tests.test_runner_faults:Faulty")
registry.register("model adapter", "oom-above", "tests.test_runner_faults:OOMAbove")


def _suite(toy_suite_text, models: str, batch_size: int = 16) -> Suite:
    text = toy_suite_text(n=4, steps="[2]", cfg="[1.0]").split("models:")[0] + "models:\n" + models
    return Suite.parse(text.replace("batch_size: 16", f"batch_size: {batch_size}"), "faults.yaml")


def test_each_bad_generator_fails_its_own_cell_with_a_clear_reason(tmp_path, toy_suite_text):
    faults = ["raise", "nan", "inf", "channels", "size", "rows", "list"]
    models = "  - {id: good, adapter: toy, steps: [2], cfg: [1.0]}\n" + "".join(
        f"  - {{id: bad-{f}, adapter: faulty, steps: [2], cfg: [1.0], options: {{fault: {f}}}}}\n" for f in faults)
    db = tmp_path / "b.duckdb"
    summary = Runner(_suite(toy_suite_text, models), db=db, progress=False).run()
    assert (summary.ran, summary.failed, summary.exit_code) == (1, len(faults), 1)
    df = bench.load(db).set_index("model")
    assert df.loc["good", "status"] == "ok" and df.loc["good", "fid"] > 0
    expect = {"raise": "simulated crash in the middle of a cell",
              "nan": "NonFiniteImages: 1 of 16 images in the batch contain NaN/Inf",
              "inf": "NonFiniteImages: 1 of 16 images in the batch contain NaN/Inf",
              "channels": "returned shape (16, 16, 16, 2), expected (16, H, W, 3)",
              "size": "image size changed mid-cell from 16x16 to 8x16",
              "rows": "returned shape (15, 16, 16, 3), expected (16, H, W, 3)",
              "list": "generator returned list, expected a uint8 tensor"}
    for f, msg in expect.items():
        row = df.loc[f"bad-{f}"]
        assert row["status"] == "failed" and msg in row["error"], (f, row["error"])
        assert pd_isnan(row.get("fid")), "a failed cell stores no metric values"


def pd_isnan(v) -> bool:
    return v is None or v != v


def test_out_of_memory_backs_off_and_the_cell_completes_with_identical_values(tmp_path, toy_suite_text):
    db = tmp_path / "b.duckdb"
    models = ("  - {id: free, adapter: toy, steps: [2], cfg: [1.0]}\n"
              "  - {id: tight, adapter: oom-above, steps: [2], cfg: [1.0], options: {max_rows: 5}}\n")
    summary = Runner(_suite(toy_suite_text, models), db=db, progress=False).run()
    assert summary.exit_code == 0, summary.failures
    df = bench.load(db).set_index("model")
    for k in ("fid", "is", "kid"):
        assert df.loc["tight", k] == df.loc["free", k], k          # same images, smaller sub-batches
    assert df.loc["tight", "nfe"] == df.loc["tight", "nfe_declared"] == 2.0   # failed attempts not counted
    with ResultStore(db, read_only=True) as st:
        prov = json.loads(st.frame("SELECT provenance FROM cells WHERE model_id = 'tight'")["provenance"][0])
    assert prov["generation_batch"] == 4 and prov["out_of_memory_backoffs"] == [8, 4]


def test_out_of_memory_at_batch_one_fails_the_cell_with_the_allocator_message(tmp_path, toy_suite_text):
    models = "  - {id: hopeless, adapter: oom-above, steps: [2], cfg: [1.0], options: {max_rows: 0}}\n"
    summary = Runner(_suite(toy_suite_text, models, batch_size=4), db=tmp_path / "b.duckdb", progress=False).run()
    assert summary.failed == 1 and "OutOfMemoryError" in summary.failures[0]


@pytest.mark.parametrize("err,oom", [
    (torch.OutOfMemoryError("CUDA out of memory"), True),
    (RuntimeError("MPS backend out of memory (MPS allocated: 1 GB)"), True),
    (RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"), True),
    (RuntimeError("shape mismatch"), False),
    (ValueError("out of memory"), False),
])
def test_out_of_memory_recognised(err, oom):
    assert is_out_of_memory(err) is oom
