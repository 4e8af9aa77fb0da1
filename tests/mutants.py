"""`make mutants`: plant one-line bugs, one at a time, in a temporary copy of the tree and show that the tests
catch each (a test suite is only as good as the bugs it fails on).

Each mutant names a file, an exact snippet and its replacement, and the test files expected to catch it. The
tests are first run on the unmutated copy (they must pass), then on each mutant (at least one must fail). Prints a
table (mutant, caught?, the first failing test) and exits 1 if a mutant survives. Add a mutant here when you
write a test for a bug class: it proves the test can fail. Not part of `make test` (about 5 minutes on 2 cores).

    python tests/mutants.py [NAME ...]      # all mutants, or the named ones
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mutant:
    name: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]


KEY = ("tests/test_cell_key.py",)
MUTANTS = (
    Mutant("key without dtype", "bench/cell.py", '"dtype": self.dtype,', "", KEY),
    Mutant("key without plan", "bench/cell.py", '"plan": asdict(self.plan), ', "", KEY),
    Mutant("key without solver", "bench/cell.py", '"solver": self.solver, ', "", KEY),
    Mutant("key without metric options", "bench/cell.py", '"metrics": self.metrics,',
           '"metrics": sorted(self.metrics),', KEY),
    Mutant("key without dataset options", "bench/cell.py", '"dataset_options": self.dataset_options,', "", KEY),
    Mutant("runner ignores keep_samples", "bench/engine.py", "keep=self.settings.keep_samples if lo == 0 else 0",
           "keep=0", ("tests/test_recording.py",)),
    Mutant("no dtype autocast", "bench/generation.py",
           'ctx = torch.autocast(device_type, dtype=DTYPES[cell.dtype]) if cell.dtype != "float32" else nullcontext()',
           "ctx = nullcontext()", ("tests/test_recording.py",)),
    Mutant("latency median -> max", "bench/latency_rule.py", '"median_s": statistics.median(seconds)',
           '"median_s": max(seconds)', ("tests/test_recording.py",)),
    Mutant("no fixed-shape padding", "bench/metrics/base.py", "        if n < batch_size:\n",
           "        if False:\n", ("tests/test_metrics_fid_extras.py", "tests/test_determinism.py")),
    Mutant("bootstrap level halved", "bench/metrics/bootstrap.py", "alpha = (1.0 - float(level)) / 2.0",
           "alpha = (1.0 - float(level))", ("tests/test_bootstrap_independent.py",)),
    Mutant("no transaction per cell", "bench/store.py", 'self.con.execute("BEGIN TRANSACTION")\n        try:\n'
           '            if self.con.execute("SELECT 1 FROM cells WHERE key = ?"',
           'pass\n        try:\n            if self.con.execute("SELECT 1 FROM cells WHERE key = ?"',
           ("tests/test_store.py",)),
    Mutant("NaN images quantised", "bench/models/base.py", "bad = ~torch.isfinite(x)",
           "bad = torch.zeros_like(x, dtype=torch.bool)", ("tests/test_runner_faults.py",)),
)


def copy_tree(dst: Path) -> None:
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.splitlines()
    for f in files:
        src = ROOT / f
        if src.is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / f)


def run_tests(tree: Path, tests: tuple[str, ...]) -> tuple[bool, str]:
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1",
           "STEPBENCH_HASH_CACHE": str(tree / "results" / "hash-cache.json")}
    r = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-m", "not slow",
                        *tests], cwd=tree, env=env, capture_output=True, text=True)
    failed = re.findall(r"^FAILED (\S+)", r.stdout, flags=re.M)
    return r.returncode == 0, (failed[0] if failed else r.stdout.strip().splitlines()[-1] if r.stdout else "")


def main(names: list[str]) -> int:
    chosen = [m for m in MUTANTS if not names or m.name in names]
    with tempfile.TemporaryDirectory(prefix="stepbench-mutants-") as tmp:
        tree = Path(tmp)
        copy_tree(tree)
        tests = tuple(sorted({t for m in chosen for t in m.tests}))
        ok, why = run_tests(tree, tests)
        if not ok:
            print(f"the unmutated tree fails its own tests ({why}); fix that first")
            return 2
        rows, survived = [], 0
        for m in chosen:
            path = tree / m.file
            original = path.read_text()
            if original.count(m.old) != 1:
                rows.append((m.name, "NOT APPLIED", f"snippet found {original.count(m.old)} times in {m.file}"))
                survived += 1
                continue
            path.write_text(original.replace(m.old, m.new))
            try:
                passed, why = run_tests(tree, m.tests)
            finally:
                path.write_text(original)
            survived += passed
            rows.append((m.name, "survived" if passed else "caught", why))
            print(f"{m.name:<32} {'SURVIVED' if passed else 'caught':<9} {why}", flush=True)
    print()
    print("| mutant | result | first failing test |\n|---|---|---|")
    for name, result, why in rows:
        print(f"| {name} | {result} | {why} |")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
