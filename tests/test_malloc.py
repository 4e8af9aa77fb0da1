"""bench.malloc: freed memory kept for reuse, set once per process, never over the user's own allocator settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bench import malloc


class FakeLibc:
    def __init__(self, answer: int = 1):
        self.calls: list[tuple[int, int]] = []
        self.answer = answer

    def mallopt(self, param: int, value: int) -> int:
        self.calls.append((param, value))
        return self.answer


@pytest.fixture(autouse=True)
def fresh_state():
    saved = malloc._state
    malloc._reset_for_tests()
    yield
    malloc._state = saved


def test_sets_both_thresholds_once_per_process():
    libc = FakeLibc()
    first = malloc.keep_freed_memory(environ={}, libc=libc)
    assert first == {"allocator": "glibc", "mmap_threshold": 32 << 20, "trim_threshold": 256 << 20}
    assert sorted(libc.calls) == sorted([(malloc.M_MMAP_THRESHOLD, 32 << 20), (malloc.M_TRIM_THRESHOLD, 256 << 20)])
    again = malloc.keep_freed_memory(environ={}, libc=libc)      # a second engine in the process: nothing new
    assert again == first and len(libc.calls) == 2
    assert malloc.state() == first


@pytest.mark.parametrize("environ, reason", [
    ({"STEPBENCH_MALLOC": "default"}, "STEPBENCH_MALLOC=default"),
    ({"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=0"}, "GLIBC_TUNABLES sets glibc.malloc"),
    ({"MALLOC_ARENA_MAX": "2"}, "MALLOC_ARENA_MAX is set"),
    ({"MALLOC_TRIM_THRESHOLD_": "0"}, "MALLOC_TRIM_THRESHOLD_ is set"),
])
def test_the_users_allocator_settings_are_left_alone(environ, reason):
    libc = FakeLibc()
    assert malloc.keep_freed_memory(environ=environ, libc=libc) == {"allocator": "default", "reason": reason}
    assert libc.calls == []


def test_unrelated_tunables_do_not_count_as_a_choice():
    libc = FakeLibc()
    out = malloc.keep_freed_memory(environ={"GLIBC_TUNABLES": "glibc.pthread.rseq=0", "STEPBENCH_MALLOC": "keep"},
                                   libc=libc)
    assert out["allocator"] == "glibc" and len(libc.calls) == 2


def test_a_refused_setting_is_recorded_not_claimed():
    out = malloc.keep_freed_memory(environ={}, libc=FakeLibc(answer=0))
    assert out == {"allocator": "default", "reason": "mallopt refused mmap_threshold, trim_threshold"}


def test_other_c_libraries_are_left_alone(monkeypatch):
    monkeypatch.setattr(malloc, "_glibc", lambda: None)
    assert malloc.keep_freed_memory(environ={}) == {"allocator": "default", "reason": "not glibc"}


def test_state_before_any_engine():
    assert malloc.state() == {"allocator": "default", "reason": "not set"}


FAULTS = """
import json, resource, sys, torch
from bench import malloc
if sys.argv[1] == "start":        # glibc's starting thresholds (128 KiB), fixed: what its heuristics begin from
    lib = malloc._glibc()
    state = [lib.mallopt(malloc.M_MMAP_THRESHOLD, 128 << 10), lib.mallopt(malloc.M_TRIM_THRESHOLD, 128 << 10)]
else:
    state = malloc.keep_freed_memory()
def rounds(k):
    for _ in range(k):
        held = [torch.ones(1 << 20) for _ in range(30)]     # 4 MiB blocks alive at once, like activations
        del held
rounds(2)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
rounds(10)
print(json.dumps([state, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before]))
"""


@pytest.mark.skipif(not malloc._glibc(), reason="glibc only")
def test_freed_activations_no_longer_come_back_as_fresh_pages():
    """The point of the setting, on the real allocator: blocks freed and allocated again are reused instead of being
    unmapped and faulted in anew (page faults counted by the kernel, in a process of their own each). Against
    glibc's starting thresholds, fixed: its own adjustments make the default vary from process to process (from
    one round's pages to every round's in this test), which is the run-to-run spread the setting removes."""
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "STEPBENCH_MALLOC",
                                                              *malloc.USER_VARIABLES)}

    def faults(arm):
        out = subprocess.run([sys.executable, "-c", FAULTS, arm], env=env, capture_output=True, text=True,
                             check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])
    (kept_state, kept), (start_state, start) = faults("keep"), faults("start")
    assert kept_state["allocator"] == "glibc" and start_state == [1, 1]
    pages = 10 * 30 * 1024                       # 10 rounds of 30 blocks of 1,024 pages
    assert start > pages // 2, start             # every block mapped and faulted in again
    assert kept < pages // 30, kept               # under a third of one round: nothing faulted in again


def test_a_runs_environment_records_what_was_done():
    import torch

    from bench import provenance
    malloc.keep_freed_memory(environ={}, libc=FakeLibc())
    env = provenance.environment(torch.device("cpu"), "float32")
    assert env["malloc"] == {"allocator": "glibc", "mmap_threshold": 32 << 20, "trim_threshold": 256 << 20}


def test_every_engine_sets_it_in_its_process(tmp_path, monkeypatch):
    """The local executor's engine and each Ray actor's are where generation runs: constructing one sets it."""
    from bench.cell import RunSettings
    from bench.engine import Engine
    libc = FakeLibc()
    monkeypatch.setattr(malloc, "_glibc", lambda: libc)
    monkeypatch.delenv("STEPBENCH_MALLOC", raising=False)
    for name in ("GLIBC_TUNABLES", *malloc.USER_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    Engine(RunSettings(device="cpu", cache_dir=str(tmp_path)))
    assert malloc.state()["allocator"] == "glibc" and len(libc.calls) == 2
