"""What a process reads once and keeps: installed package versions and the checkout's commit (`bench.provenance`),
the OpenBLAS libraries loaded (`bench.metrics.blas`). Each is read once, gives what a fresh read gives, and is read
again when what it depends on can have changed (OpenBLAS: after more imports)."""

from __future__ import annotations

import importlib.metadata
import sys
import types

from bench import provenance
from bench.metrics import blas, refcache


def test_package_versions_are_read_once_and_match_the_metadata(monkeypatch):
    provenance.package_version.cache_clear()
    calls = []
    real = importlib.metadata.version

    def counting(name):
        calls.append(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "version", counting)
    def fresh(name):
        try:
            return real(name)
        except importlib.metadata.PackageNotFoundError:
            return None

    first = provenance.versions()
    assert first == {p: fresh(p) for p in provenance.PACKAGES}
    first["torch"] = "changed by a caller"                   # a new dict each time: the cache is not exposed
    again = provenance.versions()
    assert again["torch"] == real("torch")
    assert refcache.library_versions("torch-fidelity") == {"torch": real("torch"),
                                                           "torch-fidelity": real("torch-fidelity")}
    assert sorted(calls) == sorted(set(calls))               # every name looked up once, however often asked
    assert set(provenance.PACKAGES) <= set(calls)
    assert provenance.package_version("no-such-distribution-stepbench") is None
    provenance.package_version.cache_clear()


def test_git_sha_is_read_once_per_process(monkeypatch):
    provenance.git_sha.cache_clear()
    runs = []
    real_run = provenance.subprocess.run

    def counting(cmd, **kw):
        runs.append(cmd)
        return real_run(cmd, **kw)

    monkeypatch.setattr(provenance.subprocess, "run", counting)
    first = provenance.git_sha()
    n = len(runs)
    assert n >= 1 and provenance.git_sha() == first and len(runs) == n
    provenance.git_sha.cache_clear()


def test_openblas_scan_repeats_only_after_new_imports(monkeypatch):
    scans = []
    real = blas._scan

    def counting():
        scans.append(1)
        return real()

    monkeypatch.setattr(blas, "_scan", counting)
    monkeypatch.setattr(blas, "_found", None)
    found = blas._libraries()
    assert len(scans) == 1 and len(found) == len(real())     # what a fresh scan finds
    blas.thread_counts()
    with blas.single_threaded():
        pass
    assert len(scans) == 1                                    # nothing imported since: no new scan
    monkeypatch.setitem(sys.modules, "stepbench_test_new_module", types.ModuleType("stepbench_test_new_module"))
    blas._libraries()
    assert len(scans) == 2                                    # an import may have loaded another OpenBLAS
