"""A short last chunk skips its padding only where its own shape gave the padded bits (bench.metrics.remainder)."""

from __future__ import annotations

import pytest
import torch

from bench.metrics import remainder
from bench.metrics.base import fixed_shape_forward, numerics_mode
from bench.mini.metric_nets import load_classifier


class Recording:
    """A network that records the batch shapes it was called with; ``batch_dependent`` adds a term that depends on
    the batch's row count (as a kernel whose blocking follows the shape would change the last bits)."""

    def __init__(self, batch_dependent: bool):
        self.batch_dependent, self.calls = batch_dependent, []

    def __call__(self, x):
        self.calls.append(len(x))
        y = x.float().sum(-1) * 0.5
        return (y + 1e-3 * len(x), y * 2) if self.batch_dependent else (y, y * 2)


def padded(fn, x, batch_size):
    """The reference: every chunk zero-padded to ``batch_size``, the padding dropped (the old behaviour)."""
    outs = []
    for c in x.split(batch_size):
        p = torch.cat([c, c.new_zeros((batch_size - len(c), *c.shape[1:]))])
        outs.append([t[:len(c)] for t in fn(p)])
    return [torch.cat(o) for o in zip(*outs)]


@pytest.fixture
def x():
    return torch.arange(7 * 3, dtype=torch.float32).reshape(7, 3)


def test_batch_independent_network_is_checked_once_then_runs_alone(x):
    net = Recording(batch_dependent=False)
    want = padded(net, x, 4)
    net.calls.clear()
    first = fixed_shape_forward(net, x, 4, same_bits_key=net)
    assert net.calls == [4, 4, 3]                   # full chunk; short one padded, then alone (the check)
    net.calls.clear()
    second = fixed_shape_forward(net, x, 4, same_bits_key=net)
    assert net.calls == [4, 3]                      # checked: the short chunk runs at its own shape
    for a, b, c in zip(first, second, want):
        assert torch.equal(a, c) and torch.equal(b, c)


def test_batch_dependent_network_stays_padded_with_the_padded_bits(x):
    net = Recording(batch_dependent=True)
    want = padded(net, x, 4)
    for round_ in range(3):
        net.calls.clear()
        got = fixed_shape_forward(net, x, 4, same_bits_key=net)
        assert all(torch.equal(a, b) for a, b in zip(got, want))   # the padded batch's rows are the result
        assert net.calls == ([4, 4, 3] if round_ == 0 else [4, 4])  # checked once, found different: padded since
    assert remainder.verdict(net, remainder.signature(x[:3], 4, "strict")) is False


def test_without_a_key_every_short_chunk_is_padded(x):
    net = Recording(batch_dependent=False)
    for _ in range(2):
        net.calls.clear()
        fixed_shape_forward(net, x, 4)
        assert net.calls == [4, 4]


def test_verdicts_are_per_shape_and_numerics_mode_and_bounded(x):
    net = Recording(batch_dependent=False)
    fixed_shape_forward(net, x, 4, same_bits_key=net)
    net.calls.clear()
    fixed_shape_forward(net, x[:6], 4, same_bits_key=net)        # another short shape (2 rows): checked anew
    assert net.calls == [4, 4, 2]
    net.calls.clear()
    with numerics_mode("tf32"):                                  # another numerics mode: checked anew
        fixed_shape_forward(net, x, 4, same_bits_key=net)
    assert net.calls == [4, 4, 3]
    remainder.forget(net)
    big = torch.ones(20 * 3, 3)
    for rows in range(1, remainder.MAX_SHAPES + 1):              # fill the per-network budget
        fixed_shape_forward(net, big[:rows], 64, same_bits_key=net)
    net.calls.clear()
    fixed_shape_forward(net, big[:remainder.MAX_SHAPES + 1], 64, same_bits_key=net)
    assert net.calls == [64]                                     # over budget: padded, not checked


def test_a_network_returning_another_structure_alone_is_not_trusted(x):
    def fn(t):
        return (t.sum(-1),) if len(t) == 4 else (t.sum(-1), t.sum(-1))

    got = fixed_shape_forward(fn, x, 4, same_bits_key=fn)
    assert len(got) == 1 and remainder.verdict(fn, remainder.signature(x[4:], 4, "strict")) is False


def test_mini_classifier_short_chunks_give_the_padded_bits():
    """The mini world's FID extractor on this machine: whichever path the short chunk takes, its rows are the
    padded batch's bits (the check proves it where it passes; where it fails the padding is kept)."""
    net = load_classifier()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(250, 3, 16, 16, generator=g)
    with torch.inference_mode():
        want = padded(lambda t: (net.embed(t),), x, 500)[0]
        for _ in range(2):                                       # the check, then the verdict's path
            got = fixed_shape_forward(net.embed, x, 500, same_bits_key=net)[0]
            assert torch.equal(got, want)
    assert remainder.verdict(net, remainder.signature(x, 500, "strict")) is not None


def test_a_new_metric_instance_of_the_same_network_reuses_the_verdict(tmp_path):
    """A fresh Runner builds new metric objects: the verdict is keyed by what the network computes (extractor,
    weights, layers, device), so it is not checked again, and the features are the same bits."""
    from bench.metrics.fid_is_kid import FidIsKid

    opts = {"feature_extractor": "mini-classifier", "batch_size": 500}
    a, b = FidIsKid(opts, torch.device("cpu"), tmp_path), FidIsKid(opts, torch.device("cpu"), tmp_path)
    assert a.forward_identity() == b.forward_identity()
    remainder.forget(a.forward_identity())
    images = torch.randint(0, 256, (250, 16, 16, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    fa = a.features(images)
    sig = remainder.signature(images.permute(0, 3, 1, 2), 500, "strict")
    assert remainder.verdict(a.forward_identity(), sig) is not None       # checked by the first instance
    calls = []
    b.extractor.register_forward_pre_hook(lambda m, args: calls.append(len(args[0])))
    fb = b.features(images)
    assert all(torch.equal(x, y) for x, y in zip(fa, fb))
    assert calls == ([250] if remainder.verdict(a.forward_identity(), sig) else [500])   # one pass: no new check
    other = FidIsKid({**opts, "feature_layer_fid": "logits_unbiased"}, torch.device("cpu"), tmp_path)
    assert other.forward_identity() != a.forward_identity()                # another layer: another function
