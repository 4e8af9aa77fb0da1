"""Replicates on several threads (`bench.stats.threads`): the same bits whatever the number of blocks, torch's thread
count restored, nested calls inline; the FD statistic's reference moments computed once per reference set."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.stats import paired, setstats, threads


@pytest.fixture
def world():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((120, 16))
    ref = rng.standard_normal((300, 16)) * 1.3 + 0.4
    logits = rng.standard_normal((120, 10)) * 2.0
    return x, ref, logits, paired.draws(120, 64, 2020)


@pytest.mark.parametrize("kind", ["fd", "is"])
def test_values_do_not_depend_on_the_number_of_blocks(world, monkeypatch, kind):
    x, ref, logits, idx = world
    stat = setstats.fd_statistic("fid", x, ref) if kind == "fd" else setstats.is_statistic("is", logits)
    out = {}
    for k in (1, 2, 3, 8):
        monkeypatch.setattr(threads, "workers", lambda k=k: k)
        out[k] = stat(idx)
    for k in (2, 3, 8):
        assert np.array_equal(out[k], out[1]), k                     # bit for bit, not merely close
    if kind == "is":    # a row's value does not depend on the other rows of its block: each row alone, the same bits
        alone = np.concatenate([stat(idx[i:i + 1]) for i in range(0, len(idx), 9)])
        assert np.array_equal(alone, out[1][::9])
    else:               # FD's rows are computed in chunks of setstats.CHUNK: each chunk alone gives the same bits
        c = setstats.CHUNK
        assert len(idx) > 2 * c
        alone = np.concatenate([stat(idx[i:i + c]) for i in range(0, len(idx), c)])
        assert np.array_equal(alone, out[1])


def test_blocks_start_at_multiples_of_align():
    idx = np.arange(100 * 3).reshape(100, 3)
    for k in (1, 2, 3, 5, 7):
        blocks = threads._blocks(idx, k, 16)
        starts = np.cumsum([0] + [len(b) for b in blocks])[:-1]
        assert np.array_equal(np.concatenate(blocks), idx) and all(s % 16 == 0 for s in starts), k
        assert 1 <= len(blocks) <= k
    assert [len(b) for b in threads._blocks(idx, 3, 1)] == [34, 33, 33]      # align 1: np.array_split's blocks


def test_torch_thread_count_is_restored_and_blocks_run_single_threaded():
    before = torch.get_num_threads()
    seen = []

    def fn(block):
        seen.append(torch.get_num_threads())
        return block.sum(axis=1).astype(float)

    idx = np.arange(200).reshape(40, 5)
    got = threads.map_rows(fn, idx, n_workers=4)
    assert np.array_equal(got, idx.sum(axis=1).astype(float))       # blocks concatenated in row order
    assert seen and set(seen) == {1}
    assert torch.get_num_threads() == before


def test_a_nested_call_runs_inline():
    calls = []

    def inner(block):
        return block[:, 0].astype(float)

    def outer(block):
        calls.append(len(block))
        return threads.map_rows(inner, block, n_workers=4)           # would deadlock if it took the lock again

    idx = np.arange(64 * 3).reshape(64, 3)
    assert np.array_equal(threads.map_rows(outer, idx, n_workers=2), idx[:, 0].astype(float))
    assert sorted(calls) == [32, 32]


def test_reference_moments_once_per_distinct_set(world):
    _, ref, _, _ = world
    a = setstats.reference_moments(ref)
    assert setstats.reference_moments(ref.copy()) is a               # the same content: computed once
    b = setstats.reference_moments(ref + 1.0)
    assert b is not a and np.allclose(b[0], a[0] + 1.0) and np.allclose(b[1], a[1])
    s_r = np.cov(ref, rowvar=False)
    assert np.allclose(a[1] @ a[1], s_r) and a[2] == pytest.approx(np.trace(s_r))
