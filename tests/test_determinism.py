"""Sample i depends only on (seed, i): images and metrics do not change with batch size or shard split."""

import torch

from bench import noise
from bench.data.base import plan_labels, prompts_for
from bench.models.base import ModelSpec
from bench.models.toy import ToyFlow
from bench.runner import Runner, stream_cell
from bench.suite import Suite


def test_noise_rows_depend_only_on_seed_and_id():
    a = noise.gaussian(42, torch.tensor([0, 1, 2, 3]), (3, 4, 4))
    b = noise.gaussian(42, torch.tensor([3, 1]), (3, 4, 4))
    assert torch.equal(a[3], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(noise.gaussian(43, torch.tensor([1]), (3, 4, 4))[0], a[1])
    assert not torch.equal(noise.gaussian(42, torch.tensor([1]), (3, 4, 4), stream="renoise")[0], a[1])


def _toy(n_per_class=4, steps="[3]", cfg="[2.0]"):
    from tests.conftest import TOY_SUITE
    suite = Suite.parse(TOY_SUITE.format(n=n_per_class, steps=steps, cfg=cfg), "toy.yaml")
    cell = suite.expand()[0]
    gen = ToyFlow()
    gen.load(ModelSpec(id="toy", adapter="toy"), torch.device("cpu"))
    return suite, cell, gen


def test_images_bit_identical_across_batch_sizes():
    _, cell, gen = _toy()
    from bench.data.mini import MiniDataset
    labels, ids = plan_labels(MiniDataset("mini-val", 60), cell.plan, cell.seed)
    outs = []
    for bs in (1, 7, 32):
        outs.append(torch.cat([gen.generate(labels[i:i + bs], ids[i:i + bs], cell.settings())
                               for i in range(0, len(ids), bs)]))
    assert outs[0].dtype == torch.uint8 and outs[0].shape == (40, 16, 16, 3)
    assert torch.equal(outs[0], outs[1]) and torch.equal(outs[0], outs[2])
    assert len(torch.unique(outs[0].reshape(40, -1), dim=0)) == 40, "samples must differ from each other"


def test_shard_split_gives_identical_metric_values(tmp_path):
    from dataclasses import replace
    suite, cell, gen = _toy()
    runner = Runner(suite, db=tmp_path / "b.duckdb", progress=False)
    dataset = runner.dataset(cell)
    metric = runner.metrics(cell)["fid_is_kid"]
    labels, ids = plan_labels(dataset, cell.plan, cell.seed)

    def evaluate(sel, batch_size):
        acc = metric.accumulator(dataset)
        stream_cell(gen, replace(cell, batch_size=batch_size), dataset, [acc], labels[sel], ids[sel],
                    torch.device("cpu"))
        return acc

    whole = evaluate(slice(None), 8).result()
    # three uneven shards, processed in reverse order, merged
    a, b, c = evaluate(slice(24, 40), 8), evaluate(slice(8, 24), 8), evaluate(slice(0, 8), 8)
    merged = a.merge(b).merge(c).result()
    assert merged == whole
    assert whole["fid"] > 0 and whole["is"] >= 1.0


def test_prompts_follow_the_dataset_template():
    from bench.data.mini import MiniDataset
    ds = MiniDataset("mini-val", 10)
    assert prompts_for(ds, torch.tensor([0, 3])) == ["a photo of a circle", "a photo of a star"]
