"""What a cell records besides its metrics: exactly ``keep_samples`` PNGs that decode to the generated images,
generation under the suite's dtype (autocast), and latency statistics that equal a hand computation with warm-up
calls untimed."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from bench import timing
from bench.cell import ModelSpec
from bench.models.toy import ToyFlow
from bench.runner import Runner
from bench.store import ResultStore
from bench.suite import Suite


def test_keep_samples_stores_exactly_k_pngs_of_the_generated_images(tmp_path, toy_suite_text):
    text = toy_suite_text(n=3, steps="[2]", cfg="[1.0, 2.0]").replace("keep_samples: 2", "keep_samples: 3")
    db = tmp_path / "k.duckdb"
    s = Runner(Suite.parse(text, "t.yaml"), db=db, progress=False).run()
    assert s.ran == 2
    gen = ToyFlow()
    gen.load(ModelSpec("toy", "toy", options=ToyFlow.validate_options({})), torch.device("cpu"))
    with ResultStore(db, read_only=True) as st:
        rows = st.frame("SELECT c.cfg, s.sample_id, s.label, s.png FROM samples s JOIN cells c USING (key) "
                        "ORDER BY c.cfg, s.sample_id")
        cells = st.frame("SELECT key FROM cells WHERE status = 'ok'")
    assert len(cells) == 2 and len(rows) == 6
    for cfg, g in rows.groupby("cfg"):
        assert g.sample_id.tolist() == [0, 1, 2] and g.label.tolist() == [0, 0, 0]    # per_class: class 0 first
        cell = next(c for c in Suite.parse(text, "t.yaml").expand() if c.cfg == cfg)
        want = gen.generate(torch.tensor([0, 0, 0]), torch.arange(3), cell.settings()).numpy()
        got = np.stack([np.array(Image.open(io.BytesIO(p))) for p in g.png])
        assert np.array_equal(got, want)


def test_generation_runs_under_the_suite_dtype(tmp_path, toy_suite_text, monkeypatch):
    seen = []
    real = ToyFlow.generate

    def spy(self, labels, sample_ids, s):
        seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
        return real(self, labels, sample_ids, s)

    monkeypatch.setattr(ToyFlow, "generate", spy)
    text = toy_suite_text(n=2, steps="[1]", cfg="[1.0]")
    Runner(Suite.parse(text, "a.yaml"), db=tmp_path / "a.duckdb", progress=False).run()
    assert seen and not any(on for on, _ in seen)
    seen.clear()
    bf16 = text.replace("seed: 42", "seed: 42\ndtype: bfloat16")
    s = Runner(Suite.parse(bf16, "b.yaml"), db=tmp_path / "b.duckdb", progress=False).run()
    assert s.ran == 1 and seen and all(on and dt == torch.bfloat16 for on, dt in seen)   # bulk pass and latency
    a, b = (Suite.parse(t, "x.yaml").expand()[0] for t in (text, bf16))
    args = dict(adapter_version="v", weights_id="w", dataset_fingerprint="d", metric_versions={})
    assert a.key(**args) != b.key(**args)


def test_latency_median_and_iqr_equal_a_hand_computation(monkeypatch):
    durations = iter([100.0, 100.0, 0.4, 0.1, 0.3, 0.9, 0.2])     # two warm-up calls (never timed), five timed
    clock = [0.0]
    calls = []

    def fn(batch):
        calls.append(batch)
        clock[0] += next(durations)

    monkeypatch.setattr(timing.time, "perf_counter", lambda: clock[0])
    got = timing.measure(fn, 2, warmup=2, repeats=5, device=torch.device("cpu"))
    per_image = sorted(d / 2 for d in (0.4, 0.1, 0.3, 0.9, 0.2))      # 0.05 0.1 0.15 0.2 0.45
    assert calls == [2] * 7
    assert got["median_s"] == pytest.approx(per_image[2])
    # inclusive quartiles of 5 values: positions 1 and 3 (0-based) -> 0.1 and 0.2
    assert got["iqr_s"] == pytest.approx(per_image[3] - per_image[1])
    assert timing.summarize([0.3]) == {"median_s": 0.3, "iqr_s": 0.0}
