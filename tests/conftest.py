import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("STEPBENCH_HASH_CACHE", str(ROOT / "results" / "test-hash-cache.json"))
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

import tests.toy_extractor  # noqa: E402,F401  (registers 'toy-extractor' with torch-fidelity)

TOY_SUITE = """
suite: toy
seed: 42
batch_size: 16
samples: {{plan: per_class, n: {n}}}
keep_samples: 2
timing: {{warmup: 0, repeats: 2, throughput_repeats: 1}}
datasets:
  - id: mini-val
    options: {{size: 60}}
metrics:
  fid_is_kid: {{feature_extractor: toy-extractor, kid_subset_size: 20, kid_subsets: 10}}
models:
  - id: toy
    adapter: toy
    steps: {steps}
    cfg: {cfg}
"""


@pytest.fixture
def toy_suite_text():
    def make(n=4, steps="[1, 2]", cfg="[1.0, 2.0]"):
        return TOY_SUITE.format(n=n, steps=steps, cfg=cfg)
    return make
