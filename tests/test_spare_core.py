"""`bench.runner.spare_core`: a cell's statistics go on a worker thread only where they have a core of their own."""

from __future__ import annotations

import torch

from bench import cores, runner
from bench.runner import spare_core


def test_a_gpu_always_leaves_the_cpu_to_the_statistics(monkeypatch):
    monkeypatch.setattr(cores.os, "sched_getaffinity", lambda pid: {0}, raising=False)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert spare_core(torch.device("cuda", 0)) is True


def test_a_cpu_needs_more_cores_than_torch_threads(monkeypatch):
    monkeypatch.setattr(cores.os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert spare_core(torch.device("cpu")) is False          # make perf's machine: torch already on both cores
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert spare_core(torch.device("cpu")) is True


def test_without_an_affinity_call_the_cpu_count_is_used(monkeypatch):
    monkeypatch.delattr(cores.os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(cores.os, "cpu_count", lambda: 8)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    assert spare_core(torch.device("cpu")) is True
    monkeypatch.setattr(cores.os, "cpu_count", lambda: None)
    assert spare_core(torch.device("cpu")) is False


def test_the_runner_follows_the_rule_unless_told(tmp_path, monkeypatch):
    from bench.suite import Suite
    suite = Suite.parse("suite: s\nseed: 1\nsamples: {plan: per_reference, n: 4}\n"
                        "datasets: [{id: mini-val, options: {size: 8}}]\n"
                        "metrics: {clip_score: {backend: mini, model: clip}}\n"
                        "models: [{id: m, adapter: mini-sit, steps: [1], cfg: [1.0]}]\n", "s.yaml")
    monkeypatch.setattr(runner, "spare_core", lambda device: False)
    assert runner.Runner(suite, db=tmp_path / "a.duckdb", progress=False).overlap_statistics is False
    monkeypatch.setattr(runner, "spare_core", lambda device: True)
    assert runner.Runner(suite, db=tmp_path / "b.duckdb", progress=False).overlap_statistics is True
    assert runner.Runner(suite, db=tmp_path / "c.duckdb", progress=False,
                         overlap_statistics=False).overlap_statistics is False
